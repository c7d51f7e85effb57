-- One function per dashboard read, called with supabase-py's .rpc().
--
-- They run as the caller (security invoker), so row-level security filters every row they touch: a
-- signed-in user aggregates only their own rows. Each returns one jsonb value rather than a set of
-- rows, so PostgREST's row cap (max-rows, 1000 on Supabase) never truncates a result, and each is
-- bounded on its own: at most 1000 jobs, 10000 rounds (or history rows), 250000 matrix cells and 1000
-- rows a page. Timestamps come out as ISO-8601 UTC text, like the embedded SQLite store's.

create or replace function public.predictions_list_jobs(p_limit integer default 1000)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    with activity as (
        select job_id, max(epoch) as latest_epoch, max(step) as latest_step,
               count(distinct step) as round_count, max(created_at) as last_write
        from public.training_predictions
        group by job_id
    ), ids as (
        select id from public.training_jobs
        union
        select job_id from activity
    ), listed as (
        select ids.id, coalesce(j.status, 'unknown') as status, j.name, j.model, j.user_id, j.config,
               j.started_at, j.updated_at, j.finished_at, a.latest_epoch, a.latest_step,
               coalesce(a.round_count, 0) as round_count,
               greatest(j.updated_at, a.last_write) as last_active
        from ids
        left join public.training_jobs as j on j.id = ids.id
        left join activity as a on a.job_id = ids.id
        order by last_active desc nulls last, ids.id
        limit least(greatest(coalesce(p_limit, 1000), 1), 1000)
    )
    select coalesce(
        jsonb_agg(to_jsonb(listed) - 'last_active' order by listed.last_active desc nulls last, listed.id),
        '[]'::jsonb
    )
    from listed
$$;

-- Per-round aggregates (averages ignore nulls) and the overall CER improvement in %: first scored
-- round's average CER against the last one's, null with fewer than two scored rounds or a first of 0.
create or replace function public.predictions_trends(p_job_id text)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    with rounds as (
        select max(epoch) as epoch, step, count(*) as sample_count,
               count(char_error_rate) as scored_count,
               avg(exact_match) as avg_exact_match, avg(char_error_rate) as avg_char_error_rate,
               avg(length_ratio) as avg_length_ratio, avg(word_overlap) as avg_word_overlap,
               min(char_error_rate) as min_char_error_rate, max(char_error_rate) as max_char_error_rate
        from public.training_predictions
        where job_id = p_job_id
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

create or replace function public.predictions_rounds(p_job_id text)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(to_jsonb(r) order by r.step), '[]'::jsonb)
    from (
        select max(epoch) as epoch, step, count(*) as sample_count, min(created_at) as created_at
        from public.training_predictions
        where job_id = p_job_id
        group by step
        order by step
        limit 10000
    ) as r
$$;

create or replace function public.predictions_sample_history(p_job_id text, p_sample_index integer)
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
        order by step
        limit 10000
    ) as h
$$;

-- One metric for every sample and round, in long form for a heatmap, as parallel arrays: a 500 x 500
-- matrix is one compact JSON value instead of 250000 objects. The metric name is checked here too,
-- and never spliced into SQL.
create or replace function public.predictions_sample_matrix(
    p_job_id text,
    p_metric text default 'char_error_rate'
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
        where job_id = p_job_id
        order by sample_index, step
        limit 250000
    ) as cells;
    return result;
end
$$;

-- A page of rows, optionally one round's (p_step) and only wrong answers (exact_match < 1), sorted
-- by a whitelisted column with nulls last (then by step and sample_index), and the total count of
-- rows that match the filter.
create or replace function public.predictions_page(
    p_job_id text,
    p_step integer default null,
    p_wrong_only boolean default false,
    p_sort_by text default 'sample_index',
    p_descending boolean default false,
    p_limit integer default 50,
    p_offset integer default 0
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

-- Only signed-in users and the service role may call them; anon gets a permission error.
revoke execute on function
    public.predictions_list_jobs(integer),
    public.predictions_trends(text),
    public.predictions_rounds(text),
    public.predictions_sample_history(text, integer),
    public.predictions_sample_matrix(text, text),
    public.predictions_page(text, integer, boolean, text, boolean, integer, integer)
from public, anon;
grant execute on function
    public.predictions_list_jobs(integer),
    public.predictions_trends(text),
    public.predictions_rounds(text),
    public.predictions_sample_history(text, integer),
    public.predictions_sample_matrix(text, text),
    public.predictions_page(text, integer, boolean, text, boolean, integer, integer)
to authenticated, service_role;
