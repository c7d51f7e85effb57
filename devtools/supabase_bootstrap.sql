-- What a Supabase project has before any migration of ours runs, for tests on plain PostgreSQL:
-- the API roles, the auth schema and auth.uid()/auth.role()/auth.jwt() defined the way Supabase Auth
-- defines them (from the claims PostgREST puts in request.jwt.claims), and Supabase's default grants.
-- Idempotent, and harmless on a real Supabase database, where all of it already exists.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
end
$$;

grant anon, authenticated, service_role to authenticator;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

do $$
begin
    if to_regprocedure('auth.uid()') is null then
        create function auth.uid() returns uuid language sql stable as $f$
            select nullif(
                coalesce(
                    current_setting('request.jwt.claim.sub', true),
                    (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')
                ),
                ''
            )::uuid
        $f$;
    end if;
    if to_regprocedure('auth.role()') is null then
        create function auth.role() returns text language sql stable as $f$
            select nullif(
                coalesce(
                    current_setting('request.jwt.claim.role', true),
                    (current_setting('request.jwt.claims', true)::jsonb ->> 'role')
                ),
                ''
            )::text
        $f$;
    end if;
    if to_regprocedure('auth.jwt()') is null then
        create function auth.jwt() returns jsonb language sql stable as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')
            )::jsonb
        $f$;
    end if;
end
$$;

-- Supabase exposes public to the API roles and grants them every new object by default.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
