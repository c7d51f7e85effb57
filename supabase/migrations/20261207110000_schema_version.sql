-- Which migrations this database has, in one cheap call: a package newer than the database's
-- migrations (upgraded with `pip install -U`, the new migrations not yet pushed) fails at train begin
-- naming the fix, instead of every row being refused while it trains (docs/supabase.md, "Upgrading").
--
-- predictions_schema_version() returns the version of the newest migration. EVERY later migration
-- redefines it to return its own version (the timestamp its file name starts with), and
-- predictions/store/supabase_schema.py's SCHEMA_MIGRATION names that newest file:
-- tests/test_schema_version.py fails until both are done. A database without the function is older
-- than this migration.
--
-- Security invoker and granted to every API role: it reads nothing, and the dashboard asks it before
-- anyone signs in.

create or replace function public.predictions_schema_version()
returns text
language sql
stable
security invoker
set search_path = ''
as $$ select '20261207110000'::text $$;

revoke execute on function public.predictions_schema_version() from public;
grant execute on function public.predictions_schema_version() to anon, authenticated, service_role;
