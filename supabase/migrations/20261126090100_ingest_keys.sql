-- Ingest keys: a write key per user for training machines, the way experiment trackers give each
-- user an API key, so that no GPU box needs the service-role key (which bypasses row-level security
-- for every user).
--
-- A signed-in user creates a named key (ingest_key_create), lists (ingest_key_list) and revokes
-- (ingest_key_revoke) their own keys. Only a SHA-256 hash of each secret is stored: the secrets are
-- 256 random bits, so a plain hash is enough, and Postgres computes it without pgcrypto. A trainer
-- holding only the anon (publishable) key and an ingest key writes jobs and rows owned by the key's
-- user through the ingest_* functions: security definer, they check the key first and touch that
-- user's jobs and rows only. The table itself is closed to the API roles.

create table if not exists public.ingest_keys (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null,
    label text not null check (length(label) between 1 and 100),
    key_hash text not null unique,
    key_prefix text not null,
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
create unique index if not exists ingest_keys_active_label on public.ingest_keys (user_id, label)
    where revoked_at is null;

alter table public.ingest_keys enable row level security;
revoke all on public.ingest_keys from public, anon, authenticated;
grant all on public.ingest_keys to service_role;

create or replace function public.ingest_key_hash(p_secret text)
returns text
language sql
immutable
strict
set search_path = ''
as $$
    select encode(sha256(convert_to(p_secret, 'UTF8')), 'hex')
$$;

-- The signed-in caller, or a permission error: key management is for users, never for anon.
create or replace function public.ingest_key_caller()
returns uuid
language plpgsql
stable
set search_path = ''
as $$
begin
    if auth.uid() is null then
        raise exception using errcode = '42501', message = 'sign in to manage ingest keys';
    end if;
    return auth.uid();
end
$$;

create or replace function public.ingest_key_create(p_label text, p_secret text)
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    owner uuid := public.ingest_key_caller();
    created public.ingest_keys;
begin
    if p_secret is null or length(p_secret) < 32 then
        raise exception using errcode = '22023', message = 'the ingest key secret is too short',
            hint = 'at least 32 characters of randomness';
    end if;
    insert into public.ingest_keys (user_id, label, key_hash, key_prefix)
    values (owner, btrim(p_label), public.ingest_key_hash(p_secret), left(p_secret, 12))
    returning * into created;
    return jsonb_build_object('id', created.id, 'label', created.label, 'prefix', created.key_prefix,
                              'created_at', created.created_at);
exception
    when unique_violation then
        raise exception using errcode = '23505',
            message = format('an active ingest key is labelled %L already', btrim(p_label)),
            hint = 'revoke it or pick another label';
end
$$;

create or replace function public.ingest_key_list()
returns jsonb
language sql
stable
security definer
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
        'id', k.id, 'label', k.label, 'prefix', k.key_prefix, 'created_at', k.created_at,
        'last_used_at', k.last_used_at, 'revoked_at', k.revoked_at
    ) order by k.created_at, k.id), '[]'::jsonb)
    from public.ingest_keys as k
    where k.user_id = public.ingest_key_caller()
$$;

-- Revoke one of the caller's active keys, named by its id or its label.
create or replace function public.ingest_key_revoke(p_key text)
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    revoked public.ingest_keys;
begin
    update public.ingest_keys set revoked_at = now()
    where user_id = public.ingest_key_caller() and revoked_at is null and (id::text = p_key or label = p_key)
    returning * into revoked;
    if revoked.id is null then
        raise exception using errcode = 'P0002', message = format('no active ingest key %L of yours', p_key),
            hint = 'give the id or the label of a key that is not revoked';
    end if;
    return jsonb_build_object('id', revoked.id, 'label', revoked.label, 'revoked_at', revoked.revoked_at);
end
$$;

-- The owner of an active key, or a permission error. Marks the key used (at most once a minute, so
-- that writers sharing a key do not queue on its row).
create or replace function public.ingest_key_owner(p_key text)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    found public.ingest_keys;
begin
    select * into found from public.ingest_keys
    where key_hash = public.ingest_key_hash(p_key) and revoked_at is null;
    if found.id is null then
        raise exception using errcode = '42501', message = 'the ingest key is not valid or was revoked',
            hint = 'create a key on the dashboard''s Keys page and set PREDICTIONS_INGEST_KEY to it';
    end if;
    if found.last_used_at is null or found.last_used_at < now() - interval '1 minute' then
        update public.ingest_keys set last_used_at = now() where id = found.id;
    end if;
    return found.user_id;
end
$$;

-- Upsert JSON rows into a table as `p_owner`, on a conflict key that starts with user_id, setting the
-- columns the first row names (as PostgREST's `columns`), so columns added by later migrations flow
-- through. A user_id in the rows is ignored: the owner is the key's.
create or replace function public.ingest_upsert(p_table regclass, p_conflict text[], p_owner uuid, p_rows jsonb)
returns integer
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    names text;
    updates text;
    unknown text;
    written integer;
begin
    if jsonb_typeof(p_rows) is distinct from 'array' or jsonb_array_length(p_rows) = 0
       or jsonb_typeof(p_rows -> 0) <> 'object' then
        raise exception using errcode = '22023', message = 'expected a non-empty JSON array of objects';
    end if;
    select string_agg(key, ', ') into unknown
    from jsonb_object_keys(p_rows -> 0) as key
    where key not in (select attname from pg_catalog.pg_attribute
                      where attrelid = p_table and attnum > 0 and not attisdropped);
    if unknown is not null then
        raise exception using errcode = '42703', message = format('%s has no column %s', p_table, unknown);
    end if;
    select string_agg(format('%I', attname), ', ' order by attnum),
           string_agg(format('%1$I = excluded.%1$I', attname), ', ' order by attnum)
               filter (where attname <> all (p_conflict))
    into names, updates
    from pg_catalog.pg_attribute
    where attrelid = p_table and attnum > 0 and not attisdropped and attname <> 'user_id'
      and (p_rows -> 0) ? attname;
    execute format(
        'insert into %s (user_id, %s) select $1, %s from jsonb_populate_recordset(null::%s, $2)'
        ' on conflict (%s) do %s',
        p_table, names, names, p_table,
        (select string_agg(format('%I', c), ', ') from unnest(p_conflict) as c),
        coalesce('update set ' || updates, 'nothing')
    ) using p_owner, p_rows;
    get diagnostics written = row_count;
    return written;
end
$$;

-- What a trainer calls, with its ingest key: who am I, start a job, write rows, update a job.

create or replace function public.ingest_whoami(p_key text)
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    owner uuid := public.ingest_key_owner(p_key);
begin
    return (select jsonb_build_object('user_id', k.user_id, 'label', k.label)
            from public.ingest_keys as k
            where k.user_id = owner and k.key_hash = public.ingest_key_hash(p_key));
end
$$;

create or replace function public.ingest_write_predictions(p_key text, p_rows jsonb)
returns integer
language sql
volatile
security definer
set search_path = ''
as $$
    select public.ingest_upsert(
        'public.training_predictions', '{user_id,job_id,step,sample_index}', public.ingest_key_owner(p_key), p_rows
    )
$$;

-- p_rows: the jobs to start, as an array like the rows (a trainer starts one).
create or replace function public.ingest_start_job(p_key text, p_rows jsonb)
returns integer
language sql
volatile
security definer
set search_path = ''
as $$
    select public.ingest_upsert('public.training_jobs', '{user_id,id}', public.ingest_key_owner(p_key), p_rows)
$$;

-- Set the given columns of one of the key owner's jobs (a job that does not exist stays absent).
create or replace function public.ingest_update_job(p_key text, p_job_id text, p_values jsonb)
returns integer
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    owner uuid := public.ingest_key_owner(p_key);
    sets text;
    updated integer;
begin
    if jsonb_typeof(p_values) is distinct from 'object' or p_values = '{}' or exists (
        select 1 from jsonb_object_keys(p_values) as key
        where key in ('user_id', 'id') or key not in (
            select attname from pg_catalog.pg_attribute
            where attrelid = 'public.training_jobs'::regclass and attnum > 0 and not attisdropped
        )
    ) then
        raise exception using errcode = '22023', message = 'p_values must name columns of training_jobs',
            hint = 'any column but user_id and id';
    end if;
    select string_agg(format('%1$I = given.%1$I', key), ', ') into sets from jsonb_object_keys(p_values) as key;
    execute format(
        'update public.training_jobs as t set %s from jsonb_populate_record(null::public.training_jobs, $1)'
        ' as given where t.user_id = $2 and t.id = $3',
        sets
    ) using p_values, owner, p_job_id;
    get diagnostics updated = row_count;
    return updated;
end
$$;

revoke execute on function
    public.ingest_key_hash(text),
    public.ingest_key_caller(),
    public.ingest_key_owner(text),
    public.ingest_upsert(regclass, text[], uuid, jsonb)
from public, anon, authenticated;
revoke execute on function
    public.ingest_key_create(text, text),
    public.ingest_key_list(),
    public.ingest_key_revoke(text),
    public.ingest_whoami(text),
    public.ingest_write_predictions(text, jsonb),
    public.ingest_start_job(text, jsonb),
    public.ingest_update_job(text, text, jsonb)
from public, anon;
grant execute on function
    public.ingest_key_create(text, text),
    public.ingest_key_list(),
    public.ingest_key_revoke(text)
to authenticated;
grant execute on function
    public.ingest_whoami(text),
    public.ingest_write_predictions(text, jsonb),
    public.ingest_start_job(text, jsonb),
    public.ingest_update_job(text, text, jsonb)
to anon, authenticated, service_role;
