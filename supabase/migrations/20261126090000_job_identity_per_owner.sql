-- Job ids are scoped per owner: users A and B may each have a job "run-1", and nobody's write can
-- change what another owner sees (shared DESIGN.md).
--
-- Before this migration a job id was global: the natural key was (job_id, step, sample_index) and the
-- job's primary key its id, so a row written under an id someone else would use later captured their
-- rows. Now both keys start with user_id. Every existing row stays where it is, with its owner: the
-- old keys were stricter than the new ones, so no row can collide. Rows one user wrote under another
-- user's job id simply become a job of their own.
--
-- Every read function takes an optional p_user_id: a signed-in user reads their own rows (row-level
-- security, and p_user_id defaults to auth.uid()); the service role reads the owner it names, or every
-- owner when it names none (an admin's dashboard). A job is deleted by its owner only.

-- training_jobs: one job per (user_id, id).
do $$
declare
    primary_key text;
    definition text;
begin
    select conname, pg_get_constraintdef(oid) into primary_key, definition
    from pg_constraint
    where conrelid = 'public.training_jobs'::regclass and contype = 'p';
    if definition is distinct from 'PRIMARY KEY (user_id, id)' then
        if primary_key is not null then
            execute format('alter table public.training_jobs drop constraint %I', primary_key);
        end if;
        alter table public.training_jobs add constraint training_jobs_pkey primary key (user_id, id);
    end if;
end
$$;

-- training_predictions: the natural key (user_id, job_id, step, sample_index), under the old index's
-- name, so that re-running the first migration finds it and leaves it alone.
do $$
begin
    if pg_get_indexdef('public.training_predictions_natural_key'::regclass)
       not like '%(user_id, job_id, step, sample_index)' then
        create unique index training_predictions_owner_key
            on public.training_predictions (user_id, job_id, step, sample_index);
        drop index public.training_predictions_natural_key;
        alter index public.training_predictions_owner_key rename to training_predictions_natural_key;
    end if;
end
$$;

-- The read functions gain p_user_id; the old signatures go (create or replace cannot add a parameter).
drop function if exists public.predictions_list_jobs(integer);
drop function if exists public.predictions_trends(text);
drop function if exists public.predictions_rounds(text);
drop function if exists public.predictions_sample_history(text, integer);
drop function if exists public.predictions_sample_matrix(text, text);
drop function if exists public.predictions_page(text, integer, boolean, text, boolean, integer, integer);

-- `user_id = coalesce(p_user_id, auth.uid(), user_id)`: the named owner, else the caller, else (the
-- service role naming nobody) every owner. Row-level security still filters a signed-in user's rows.

create or replace function public.predictions_list_jobs(p_limit integer default 1000, p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    with jobs as (
        select * from public.training_jobs where user_id = coalesce(p_user_id, auth.uid(), user_id)
    ), activity as (
        select user_id, job_id, max(epoch) as latest_epoch, max(step) as latest_step,
               count(distinct step) as round_count, max(last_write) as last_write
        from public.training_rounds
        where user_id = coalesce(p_user_id, auth.uid(), user_id)
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
    with rounds as (
        select max(epoch) as epoch, step, sum(sample_count)::integer as sample_count,
               sum(scored_count)::integer as scored_count,
               sum(sum_exact_match) / nullif(sum(count_exact_match), 0) as avg_exact_match,
               sum(sum_char_error_rate) / nullif(sum(count_char_error_rate), 0) as avg_char_error_rate,
               sum(sum_length_ratio) / nullif(sum(count_length_ratio), 0) as avg_length_ratio,
               sum(sum_word_overlap) / nullif(sum(count_word_overlap), 0) as avg_word_overlap,
               min(min_char_error_rate) as min_char_error_rate, max(max_char_error_rate) as max_char_error_rate
        from public.training_rounds
        where job_id = p_job_id and user_id = coalesce(p_user_id, auth.uid(), user_id)
        group by step
        order by step
        limit 10000
    ), scored as (
        select count(*) as round_count,
               (array_agg(avg_char_error_rate order by step))[1] as first_cer,
               (array_agg(avg_char_error_rate order by step desc))[1] as last_cer
        from rounds
        where avg_char_error_rate is not null
    )
    select jsonb_build_object(
        'rounds', coalesce((select jsonb_agg(to_jsonb(rounds) order by rounds.step) from rounds), '[]'::jsonb),
        'overall_improvement', (
            select case when round_count < 2 or first_cer = 0 then null
                        else (first_cer - last_cer) / first_cer * 100 end
            from scored
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
        where job_id = p_job_id and user_id = coalesce(p_user_id, auth.uid(), user_id)
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
    select coalesce(jsonb_agg(to_jsonb(h) order by h.step), '[]'::jsonb)
    from (
        select job_id, epoch, step, sample_index, prompt, ground_truth, prediction,
               exact_match, char_error_rate, length_ratio, word_overlap, created_at
        from public.training_predictions
        where job_id = p_job_id and sample_index = p_sample_index
          and user_id = coalesce(p_user_id, auth.uid(), user_id)
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
    if p_metric is null
        or p_metric not in ('exact_match', 'char_error_rate', 'length_ratio', 'word_overlap') then
        raise exception using
            errcode = '22023',
            message = format('metric=%L is not a metric', p_metric),
            hint = 'valid: exact_match, char_error_rate, length_ratio, word_overlap';
    end if;
    select jsonb_build_object(
        'sample_index', coalesce(jsonb_agg(cells.sample_index order by cells.sample_index, cells.step), '[]'),
        'epoch', coalesce(jsonb_agg(cells.epoch order by cells.sample_index, cells.step), '[]'),
        'step', coalesce(jsonb_agg(cells.step order by cells.sample_index, cells.step), '[]'),
        'value', coalesce(jsonb_agg(cells.value order by cells.sample_index, cells.step), '[]')
    )
    into result
    from (
        select sample_index, epoch, step,
               case p_metric
                   when 'exact_match' then exact_match
                   when 'char_error_rate' then char_error_rate
                   when 'length_ratio' then length_ratio
                   when 'word_overlap' then word_overlap
               end as value
        from public.training_predictions
        where job_id = p_job_id and user_id = coalesce(p_user_id, auth.uid(), user_id)
        order by sample_index, step
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
    p_user_id uuid default null
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
    if p_sort_by is null or p_sort_by not in (
        'sample_index', 'step', 'epoch', 'exact_match', 'char_error_rate', 'length_ratio', 'word_overlap'
    ) then
        raise exception using
            errcode = '22023',
            message = format('sort_by=%L is not sortable', p_sort_by),
            hint = 'valid: sample_index, step, epoch, exact_match, char_error_rate, length_ratio, word_overlap';
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
        select job_id, epoch, step, sample_index, prompt, ground_truth, prediction,
               exact_match, char_error_rate, length_ratio, word_overlap, created_at,
               case p_sort_by
                   when 'sample_index' then sample_index::double precision
                   when 'step' then step::double precision
                   when 'epoch' then epoch::double precision
                   when 'exact_match' then exact_match
                   when 'char_error_rate' then char_error_rate
                   when 'length_ratio' then length_ratio
                   when 'word_overlap' then word_overlap
               end as sort_key
        from public.training_predictions
        where job_id = p_job_id
          and user_id = coalesce(p_user_id, auth.uid(), user_id)
          and (p_step is null or step = p_step)
          and (not coalesce(p_wrong_only, false) or exact_match < 1)
    ), page as (
        select matching.*, row_number() over (
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
            (select jsonb_agg(to_jsonb(page) - 'sort_key' - 'position' order by page.position) from page),
            '[]'::jsonb
        )
    )
    into result;
    return result;
end
$$;

-- Delete a job and its rows, the owner's only: row-level security limits a signed-in user to their
-- own rows, and the service role must name the owner. Nothing deleted is an error (P0002), so a
-- delete of another owner's job is refused rather than silently doing nothing. Returns the counts.
create or replace function public.predictions_delete_job(p_job_id text, p_user_id uuid default null)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    owner uuid := coalesce(p_user_id, auth.uid());
    predictions integer;
    jobs integer;
begin
    if owner is null then
        raise exception using errcode = '22023', message = 'p_user_id is not set',
            hint = 'the service role deletes a job of the user it names';
    end if;
    delete from public.training_predictions where user_id = owner and job_id = p_job_id;
    get diagnostics predictions = row_count;
    delete from public.training_jobs where user_id = owner and id = p_job_id;
    get diagnostics jobs = row_count;
    if predictions = 0 and jobs = 0 then
        raise exception using errcode = 'P0002', message = format('no job %L of yours to delete', p_job_id);
    end if;
    return jsonb_build_object('predictions', predictions, 'jobs', jobs);
end
$$;

revoke execute on function
    public.predictions_list_jobs(integer, uuid),
    public.predictions_trends(text, uuid),
    public.predictions_rounds(text, uuid),
    public.predictions_sample_history(text, integer, uuid),
    public.predictions_sample_matrix(text, text, uuid),
    public.predictions_page(text, integer, boolean, text, boolean, integer, integer, uuid),
    public.predictions_delete_job(text, uuid)
from public, anon;
grant execute on function
    public.predictions_list_jobs(integer, uuid),
    public.predictions_trends(text, uuid),
    public.predictions_rounds(text, uuid),
    public.predictions_sample_history(text, integer, uuid),
    public.predictions_sample_matrix(text, text, uuid),
    public.predictions_page(text, integer, boolean, text, boolean, integer, integer, uuid),
    public.predictions_delete_job(text, uuid)
to authenticated, service_role;
