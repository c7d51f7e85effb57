-- The roles of a Supabase project, cluster-wide, for tests on plain PostgreSQL. Run once per server by
-- its superuser (supabase_admin, as on Supabase). Idempotent, and harmless on a real Supabase database,
-- where all of it exists already.
--
-- As on Supabase, `postgres` (the role the CLI and the SQL editor use, and so the owner of everything
-- our migrations create) is not a superuser: it may create roles and databases, bypasses row-level
-- security and may act as each API role, nothing more.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'postgres') then
        create role postgres login createrole createdb replication bypassrls;
    elsif (select rolsuper from pg_roles where rolname = 'postgres') and current_user <> 'postgres' then
        alter role postgres nosuperuser createrole createdb replication bypassrls;
    end if;
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
    if not exists (select 1 from pg_roles where rolname = 'supabase_auth_admin') then
        create role supabase_auth_admin login noinherit createrole;
    end if;
end
$$;

grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role, supabase_auth_admin to postgres;
