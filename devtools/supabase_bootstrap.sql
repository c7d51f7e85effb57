-- What a Supabase project's database has before any migration of ours runs, for tests on plain
-- PostgreSQL: the `auth` schema (owned by Supabase Auth's role) with `auth.users` and
-- auth.uid()/auth.role()/auth.jwt() defined the way Supabase Auth defines them (from the claims
-- PostgREST puts in request.jwt.claims), and the schema grants. Run by the superuser in each new
-- database after supabase_roles.sql; the default grants on new objects are set apart
-- (local_postgres.DEFAULT_GRANTS), since Supabase changed them in 2026. Idempotent, and harmless on a
-- real Supabase database, where all of it already exists.

create schema if not exists auth authorization supabase_auth_admin;
grant usage on schema auth to anon, authenticated, service_role, postgres;

-- Supabase Auth's users, with the columns a test needs (the real table has many more). Deleting a
-- user deletes this row; what references it with `on delete cascade` goes with it.
create table if not exists auth.users (
    id uuid primary key,
    email text,
    created_at timestamptz not null default now()
);
-- Its sessions' refresh tokens: a table no API role may write.
create table if not exists auth.refresh_tokens (
    id bigserial primary key,
    token text,
    user_id text,
    revoked boolean,
    created_at timestamptz not null default now()
);
alter table auth.users owner to supabase_auth_admin;
alter table auth.refresh_tokens owner to supabase_auth_admin;
grant select, references on auth.users to postgres;

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
        alter function auth.uid() owner to supabase_auth_admin;
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
        alter function auth.role() owner to supabase_auth_admin;
    end if;
    if to_regprocedure('auth.jwt()') is null then
        create function auth.jwt() returns jsonb language sql stable as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')
            )::jsonb
        $f$;
        alter function auth.jwt() owner to supabase_auth_admin;
    end if;
end
$$;

-- Supabase exposes public to the API roles; `postgres` creates the project's objects in it.
grant usage, create on schema public to postgres;
grant usage on schema public to anon, authenticated, service_role;
