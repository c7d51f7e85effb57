-- Hardening, from checking the migrations with the Supabase CLI and its advisors (docs/supabase.md,
-- "What the advisors say"):
--
-- 1. Ingest keys die with their user: a foreign key to auth.users with `on delete cascade` (keys of
--    users deleted before this migration are dropped first: nobody can use them any more).
-- 2. Internal helpers are executable by no API role. Until now they were closed to anon and
--    authenticated only; under Supabase's older default grants service_role kept EXECUTE, and through
--    ingest_upsert (security definer, any table) it could write where it has no right of its own.
--    ingest_upsert also refuses tables outside public now.
-- 3. ingest_update_job, which no trainer calls, goes.
-- 4. The round and rollout-step summaries' keys start with the owner, like the others, and the four
--    indexes on user_id alone, each the front of a primary or natural key, go.
-- 5. Owner filters can use those keys: `user_id = coalesce(p_user_id, auth.uid(), user_id)` compares
--    the column with itself, so no index serves it. Now `user_id between low and high`: one owner's
--    id twice (the one named, else the caller), or every id for the service role naming no one.
-- 6. The summary's timestamps may be null: the seed's table has created_at without a default and
--    without not null, and its rows' round had no time to take. (20261125100000 creates them
--    nullable since this migration, so that `db push` over such rows no longer stops there.)
-- 7. training_predictions_duplicates (only created when old rows broke the natural key) is closed to
--    every API role, whatever the project's default grants: read it in the SQL editor.
--
-- Written to work under the old and the new default grants (tables granted or not to the API roles),
-- and, like every migration here, to run again harmlessly after the ones before it.

-- 1. keys die with their user
delete from public.ingest_keys as k where not exists (select 1 from auth.users as u where u.id = k.user_id);
do $$
begin
    if not exists (
        select 1 from pg_constraint
        where conname = 'ingest_keys_user_id_fkey' and conrelid = 'public.ingest_keys'::regclass
    ) then
        alter table public.ingest_keys add constraint ingest_keys_user_id_fkey
            foreign key (user_id) references auth.users (id) on delete cascade;
    end if;
end
$$;
-- What the cascade looks a deleted user's keys up by (the unique label index holds active keys only).
create index if not exists ingest_keys_user_id on public.ingest_keys (user_id);

-- 2. ingest_upsert of 20261126090100, refusing tables outside public (auth.*, storage.*, ...).
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
    if (select c.relnamespace from pg_catalog.pg_class as c where c.oid = p_table)
       is distinct from 'public'::regnamespace then
        raise exception using errcode = '42501', message = format('%s is not a table of this project', p_table);
    end if;
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

-- 3. the dead function
drop function if exists public.ingest_update_job(text, text, jsonb);

-- 4. the summary keyed by owner first; the indexes the keys make redundant
do $$
declare
    primary_key text;
    definition text;
begin
    select conname, pg_get_constraintdef(oid) into primary_key, definition
    from pg_constraint
    where conrelid = 'public.training_rounds'::regclass and contype = 'p';
    if definition is distinct from 'PRIMARY KEY (user_id, job_id, step)' then
        execute format('alter table public.training_rounds drop constraint %I', primary_key);
        alter table public.training_rounds add constraint training_rounds_pkey primary key (user_id, job_id, step);
    end if;
end
$$;
do $$
declare
    primary_key text;
    definition text;
begin
    select conname, pg_get_constraintdef(oid) into primary_key, definition
    from pg_constraint
    where conrelid = 'public.training_rollout_steps'::regclass and contype = 'p';
    if definition is distinct from 'PRIMARY KEY (user_id, job_id, step)' then
        execute format('alter table public.training_rollout_steps drop constraint %I', primary_key);
        alter table public.training_rollout_steps add constraint training_rollout_steps_pkey
            primary key (user_id, job_id, step);
    end if;
end
$$;
drop index if exists public.idx_training_predictions_user;  -- front of training_predictions_natural_key
drop index if exists public.idx_training_jobs_user;  -- front of training_jobs_pkey
drop index if exists public.training_rounds_user_id;  -- front of training_rounds_pkey
drop index if exists public.training_rollout_steps_user_id;  -- front of training_rollout_steps_pkey

-- 5. owner filters an index can serve. The bounds of the owners a read covers: the owner named, else
-- the caller (auth.uid()), else (the service role naming no one) every owner.
create or replace function public.training_owner_low(p_user_id uuid)
returns uuid
language sql
stable
set search_path = ''
as $$
    select coalesce(p_user_id, auth.uid(), '00000000-0000-0000-0000-000000000000'::uuid)
$$;

create or replace function public.training_owner_high(p_user_id uuid)
returns uuid
language sql
stable
set search_path = ''
as $$
    select coalesce(p_user_id, auth.uid(), 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)
$$;

-- The reads of 20261126090000, 20261126110000 and 20261206202027, unchanged but for their owner filter.
create or replace function public.predictions_list_jobs(p_limit integer default 1000, p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    with jobs as (
        select * from public.training_jobs where user_id between public.training_owner_low(p_user_id)
            and public.training_owner_high(p_user_id)
    ), activity as (
        select user_id, job_id, max(epoch) as latest_epoch, max(step) as latest_step,
               count(distinct step) as round_count, max(last_write) as last_write
        from public.training_rounds
        where user_id between public.training_owner_low(p_user_id)
            and public.training_owner_high(p_user_id)
        group by user_id, job_id
    ), ids as (
        select user_id, id from jobs
        union
        select user_id, job_id from activity
    ), listed as (
        select ids.id, coalesce(j.status, 'unknown') as status, j.name, j.model, ids.user_id, j.config,
               j.started_at, j.updated_at, j.finished_at, a.latest_epoch, a.latest_step,
               coalesce(a.round_count, 0) as round_count,
               greatest(j.updated_at, a.last_write) as last_active
        from ids
        left join jobs as j on j.user_id = ids.user_id and j.id = ids.id
        left join activity as a on a.user_id = ids.user_id and a.job_id = ids.id
        order by last_active desc nulls last, ids.id, ids.user_id
        limit least(greatest(coalesce(p_limit, 1000), 1), 1000)
    )
    select coalesce(
        jsonb_agg(to_jsonb(listed) order by listed.last_active desc nulls last, listed.id, listed.user_id),
        '[]'::jsonb
    )
    from listed
$$;

create or replace function public.predictions_trends(p_job_id text, p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    with owned as (
        select * from public.training_rounds
        where job_id = p_job_id
          and user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
    ), rounds as (
        select max(epoch) as epoch, step, sum(sample_count)::integer as sample_count,
               sum(scored_count)::integer as scored_count,
               sum(sum_exact_match) / nullif(sum(count_exact_match), 0) as avg_exact_match,
               sum(sum_char_error_rate) / nullif(sum(count_char_error_rate), 0) as avg_char_error_rate,
               sum(sum_length_ratio) / nullif(sum(count_length_ratio), 0) as avg_length_ratio,
               sum(sum_word_overlap) / nullif(sum(count_word_overlap), 0) as avg_word_overlap,
               min(min_char_error_rate) as min_char_error_rate, max(max_char_error_rate) as max_char_error_rate
        from owned
        group by step
        order by step
        limit 10000
    ), custom as (
        select step, jsonb_object_agg(key, jsonb_build_object('avg', total / nullif(n, 0), 'min', low, 'max', high))
                     as scores
        from (
            select o.step, c.key, sum((c.value ->> 'sum')::double precision) as total,
                   sum((c.value ->> 'count')::bigint) as n, min((c.value ->> 'min')::double precision) as low,
                   max((c.value ->> 'max')::double precision) as high
            from owned as o
            cross join lateral jsonb_each(o.scores) as c
            group by o.step, c.key
        ) as per_metric
        group by step
    ), scored as (
        select count(*) as round_count,
               (array_agg(avg_char_error_rate order by step))[1] as first_cer,
               (array_agg(avg_char_error_rate order by step desc))[1] as last_cer
        from rounds
        where avg_char_error_rate is not null
    )
    select jsonb_build_object(
        'rounds', coalesce(
            (select jsonb_agg(to_jsonb(r) || jsonb_build_object('scores', coalesce(c.scores, '{}'::jsonb))
                              order by r.step)
             from rounds as r left join custom as c on c.step = r.step),
            '[]'::jsonb
        ),
        'overall_improvement', (
            select case when round_count < 2 or first_cer = 0 then null
                        else (first_cer - last_cer) / first_cer * 100 end
            from scored
        ),
        'config', (
            select j.config from public.training_jobs as j
            where j.id = p_job_id
              and j.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
            order by j.updated_at desc
            limit 1
        )
    )
$$;

create or replace function public.predictions_rounds(p_job_id text, p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(to_jsonb(r) order by r.step), '[]'::jsonb)
    from (
        select max(epoch) as epoch, step, sum(sample_count)::integer as sample_count, min(created_at) as created_at
        from public.training_rounds
        where job_id = p_job_id
          and user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
        group by step
        order by step
        limit 10000
    ) as r
$$;

create or replace function public.predictions_sample_history(
    p_job_id text,
    p_sample_index integer,
    p_user_id uuid default null
)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(to_jsonb(h) - 'id' - 'user_id' order by h.step), '[]'::jsonb)
    from (
        select *
        from public.training_predictions
        where job_id = p_job_id and sample_index = p_sample_index
          and user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
        order by step
        limit 10000
    ) as h
$$;

create or replace function public.predictions_sample_matrix(
    p_job_id text,
    p_metric text default 'char_error_rate',
    p_user_id uuid default null
)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
    result jsonb;
begin
    perform public.training_predictions_check_metric(p_metric, 'metric');
    select jsonb_build_object(
        'sample_index', coalesce(jsonb_agg(cells.sample_index order by cells.sample_index, cells.step), '[]'),
        'epoch', coalesce(jsonb_agg(cells.epoch order by cells.sample_index, cells.step), '[]'),
        'step', coalesce(jsonb_agg(cells.step order by cells.sample_index, cells.step), '[]'),
        'value', coalesce(jsonb_agg(cells.value order by cells.sample_index, cells.step), '[]')
    )
    into result
    from (
        select p.sample_index, p.epoch, p.step, public.training_predictions_metric(p, p_metric) as value
        from public.training_predictions as p
        where p.job_id = p_job_id
          and p.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
        order by p.sample_index, p.step
        limit 250000
    ) as cells;
    return result;
end
$$;

create or replace function public.predictions_page(
    p_job_id text,
    p_step integer default null,
    p_wrong_only boolean default false,
    p_sort_by text default 'sample_index',
    p_descending boolean default false,
    p_limit integer default 50,
    p_offset integer default 0,
    p_user_id uuid default null,
    p_metric text default null,
    p_low double precision default null,
    p_high double precision default null
)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
declare
    result jsonb;
begin
    if p_sort_by is null or p_sort_by not in ('sample_index', 'step', 'epoch') then
        perform public.training_predictions_check_metric(p_sort_by, 'sort_by');
    end if;
    if p_metric is not null then
        perform public.training_predictions_check_metric(p_metric, 'metric_range');
    end if;
    if p_limit is null or p_limit not between 1 and 1000 then
        raise exception using errcode = '22023', message = format('limit=%s is out of range', p_limit),
            hint = 'valid: 1 to 1000 rows a page';
    end if;
    if p_offset is null or p_offset < 0 then
        raise exception using errcode = '22023', message = format('offset=%s is negative', p_offset),
            hint = 'valid: 0 or more';
    end if;

    with matching as (
        select p.id, p.step, p.sample_index,
               case p_sort_by
                   when 'sample_index' then p.sample_index::double precision
                   when 'step' then p.step::double precision
                   when 'epoch' then p.epoch::double precision
                   else public.training_predictions_metric(p, p_sort_by)
               end as sort_key
        from public.training_predictions as p
        where p.job_id = p_job_id
          and p.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
          and (p_step is null or p.step = p_step)
          and (not coalesce(p_wrong_only, false) or p.exact_match < 1)
          and (p_metric is null or public.training_predictions_metric(p, p_metric)
               between coalesce(p_low, '-infinity') and coalesce(p_high, 'infinity'))
    ), page as (
        select matching.id, row_number() over (
            order by sort_key is null,
                     case when not coalesce(p_descending, false) then sort_key end asc,
                     case when coalesce(p_descending, false) then sort_key end desc,
                     step, sample_index
        ) as position
        from matching
        order by position
        limit p_limit offset p_offset
    )
    select jsonb_build_object(
        'total_count', (select count(*) from matching),
        'rows', coalesce(
            (select jsonb_agg(to_jsonb(p) - 'id' - 'user_id' order by page.position)
             from page join public.training_predictions as p on p.id = page.id),
            '[]'::jsonb
        )
    )
    into result;
    return result;
end
$$;

create or replace function public.predictions_group_trends(
    p_job_id text,
    p_field text,
    p_user_id uuid default null
)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
    result jsonb;
begin
    if p_field is null or p_field !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' then
        raise exception using errcode = '22023', message = format('field=%L is not a metadata field', p_field),
            hint = 'valid: letters, digits and _';
    end if;
    with owned as (
        select p.*, p.metadata ->> p_field as grp
        from public.training_predictions as p
        where p.job_id = p_job_id
          and p.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
    ), grouped as (
        select max(epoch) as epoch, step, grp as "group", count(*) as sample_count,
               avg(exact_match) as avg_exact_match, avg(char_error_rate) as avg_char_error_rate,
               avg(length_ratio) as avg_length_ratio, avg(word_overlap) as avg_word_overlap
        from owned
        group by step, grp
    ), custom as (
        select step, grp, jsonb_object_agg(key, average) as scores
        from (
            select o.step, o.grp, s.key, avg(public.training_predictions_number(s.value)) as average
            from owned as o
            cross join lateral jsonb_each(coalesce(o.scores, '{}'::jsonb)) as s
            group by o.step, o.grp, s.key
        ) as per_metric
        group by step, grp
    )
    select coalesce(
        jsonb_agg(
            to_jsonb(g) || jsonb_build_object('scores', coalesce(c.scores, '{}'::jsonb))
            order by g.step, g."group" nulls last
        ),
        '[]'::jsonb
    )
    into result
    from grouped as g
    left join custom as c on c.step = g.step and c.grp is not distinct from g."group";
    return result;
end
$$;

create or replace function public.predictions_rollout_trends(p_job_id text, p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    select coalesce(jsonb_agg(to_jsonb(s) - 'user_id' - 'job_id' - 'created_at' - 'last_write'
                              order by s.step), '[]'::jsonb)
    from public.training_rollout_steps as s
    where s.job_id = p_job_id
      and s.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
$$;

create or replace function public.predictions_rollout_prompts(
    p_job_id text, p_limit integer default 500, p_user_id uuid default null
)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    select coalesce(jsonb_agg(to_jsonb(p) order by p.first_step, p.prompt_id), '[]'::jsonb)
    from (
        select r.prompt_id, min(r.prompt) as prompt, min(r.ground_truth) as ground_truth,
               count(*) as rollout_count, min(r.step) as first_step, max(r.step) as last_step
        from public.training_rollouts as r
        where r.job_id = p_job_id
          and r.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
        group by r.prompt_id
        order by min(r.step), r.prompt_id
        limit least(greatest(coalesce(p_limit, 500), 1), 1000)
    ) as p
$$;

create or replace function public.predictions_prompt_rollouts(
    p_job_id text, p_prompt_id text, p_limit integer default 1000, p_user_id uuid default null
)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(to_jsonb(r) - 'id' - 'user_id'
                              order by r.step, r.generation, r.group_index, r.completion_index), '[]'::jsonb)
    from (
        select * from public.training_rollouts as q
        where q.job_id = p_job_id and q.prompt_id = p_prompt_id
          and q.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
        order by q.step, q.generation, q.group_index, q.completion_index
        limit least(greatest(coalesce(p_limit, 1000), 1), 1000)
    ) as r
$$;

create or replace function public.predictions_step_rollouts(
    p_job_id text, p_step integer, p_best boolean default true, p_limit integer default 5,
    p_user_id uuid default null
)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(to_jsonb(r) - 'id' - 'user_id' - 'rank' order by r.rank), '[]'::jsonb)
    from (
        select q.*, row_number() over (
                   order by q.reward is null,
                            case when p_best then q.reward end desc,
                            case when not p_best then q.reward end asc,
                            q.generation, q.group_index, q.completion_index) as rank
        from public.training_rollouts as q
        where q.job_id = p_job_id and q.step = p_step
          and q.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
        order by rank
        limit least(greatest(coalesce(p_limit, 5), 1), 1000)
    ) as r
$$;

-- 6. a round of seed rows without created_at has no time either
alter table public.training_rounds alter column created_at drop not null, alter column last_write drop not null;

-- 7. old duplicates are for the SQL editor only
do $$
begin
    if to_regclass('public.training_predictions_duplicates') is not null then
        revoke all on public.training_predictions_duplicates from anon, authenticated, service_role;
    end if;
end
$$;

-- Who may call what. The owner bounds run inside the reads, as their caller.
revoke execute on function public.training_owner_low(uuid), public.training_owner_high(uuid)
    from public, anon;
grant execute on function public.training_owner_low(uuid), public.training_owner_high(uuid)
    to authenticated, service_role;
-- Key management is for signed-in users; the trainer's calls for the publishable key (anon) alone: a
-- dashboard session or the service role has no use for them (and the advisors flag each grant).
revoke execute on function public.ingest_key_create(text, text), public.ingest_key_list(), public.ingest_key_revoke(text)
    from public, anon, service_role;
revoke execute on function
    public.ingest_whoami(text), public.ingest_write_predictions(text, jsonb), public.ingest_start_job(text, jsonb),
    public.ingest_write_rollouts(text, jsonb)
from public, authenticated, service_role;
-- Internal helpers, triggers and the summary's upkeep: no API role, whatever the default grants gave.
revoke execute on function
    public.ingest_key_hash(text),
    public.ingest_key_caller(),
    public.ingest_key_owner(text),
    public.ingest_upsert(regclass, text[], uuid, jsonb),
    public.training_rounds_keys(jsonb),
    public.training_rounds_scores(uuid, text, integer),
    public.training_rounds_refresh(jsonb, boolean),
    public.training_rounds_after_write(),
    public.training_rounds_after_truncate(),
    public.training_predictions_keep_owner(),
    public.training_jobs_stamp(),
    public.training_jobs_status_order(),
    public.training_rollout_steps_refresh(jsonb, boolean),
    public.training_rollout_steps_after_write(),
    public.training_rollout_steps_after_truncate(),
    public.training_rollouts_with_their_job()
from public, anon, authenticated, service_role;
