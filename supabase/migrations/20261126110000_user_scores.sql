-- User scorers' values and sample metadata (README, "Your own metrics"), aggregated per round in SQL.
--
-- training_predictions.scores holds a row's user-defined metrics by name ({"answer": 1.0, ...}) and
-- metadata the sample fields kept with it ({"category": "math"}). The round summary gains a scores
-- column, {name: {sum, count, min, max}} per owner and round, kept by the same statement triggers as
-- the built-in sums, so trends stays a read of one summary row per round whatever the user scores.
--
-- The row readers return every column of a row but its id and owner (to_jsonb(row) - ...), so a
-- column a later migration adds (a new built-in metric, say) reaches the dashboard without touching
-- them. Names of user metrics and metadata fields are only ever used as jsonb keys, never as SQL.

alter table public.training_predictions add column if not exists scores jsonb;
alter table public.training_predictions add column if not exists metadata jsonb;
alter table public.training_rounds add column if not exists scores jsonb not null default '{}'::jsonb;

-- A number in a jsonb value, or null (json null, text, booleans): what a user metric may average.
-- This helper and training_predictions_metric name every object in full and set no search_path, so
-- the planner can inline them into the queries that call them once per row.
create or replace function public.training_predictions_number(p_value jsonb)
returns double precision
language sql
immutable
as $$
    select case when jsonb_typeof(p_value) = 'number' then p_value::double precision end
$$;

-- {name: {sum, count, min, max}} over the user scores of one owner's round.
create or replace function public.training_rounds_scores(p_user_id uuid, p_job_id text, p_step integer)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_object_agg(t.key, t.summary), '{}'::jsonb)
    from (
        select s.key, jsonb_build_object(
                   'sum', sum(public.training_predictions_number(s.value)),
                   'count', count(public.training_predictions_number(s.value)),
                   'min', min(public.training_predictions_number(s.value)),
                   'max', max(public.training_predictions_number(s.value))
               ) as summary
        from public.training_predictions as p
        cross join lateral jsonb_each(coalesce(p.scores, '{}'::jsonb)) as s
        where p.user_id = p_user_id and p.job_id = p_job_id and p.step = p_step
        group by s.key
    ) as t
$$;
revoke execute on function public.training_rounds_scores(uuid, text, integer) from public, anon, authenticated;

-- The summary refresh of 20261125100000, now with the user scores.
create or replace function public.training_rounds_refresh(p_keys jsonb, p_lock boolean default true)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
    if p_lock then
        perform pg_advisory_xact_lock(hashtextextended(jobs.job_id, 20261125))
        from (select distinct k ->> 'job_id' as job_id from jsonb_array_elements(p_keys) as k order by 1) as jobs;
    end if;
    delete from public.training_rounds as r
    using public.training_rounds_keys(p_keys) as t
    where r.user_id = t.user_id and r.job_id = t.job_id and r.step = t.step;
    insert into public.training_rounds (
        user_id, job_id, step, epoch, sample_count, scored_count,
        sum_exact_match, count_exact_match, sum_char_error_rate, count_char_error_rate,
        sum_length_ratio, count_length_ratio, sum_word_overlap, count_word_overlap,
        min_char_error_rate, max_char_error_rate, created_at, last_write, scores
    )
    select p.user_id, p.job_id, p.step, max(p.epoch), count(*), count(p.char_error_rate),
           sum(p.exact_match), count(p.exact_match), sum(p.char_error_rate), count(p.char_error_rate),
           sum(p.length_ratio), count(p.length_ratio), sum(p.word_overlap), count(p.word_overlap),
           min(p.char_error_rate), max(p.char_error_rate), min(p.created_at), max(p.created_at),
           public.training_rounds_scores(p.user_id, p.job_id, p.step)
    from public.training_predictions as p
    join public.training_rounds_keys(p_keys) as t
        on p.user_id = t.user_id and p.job_id = t.job_id and p.step = t.step
    group by p.user_id, p.job_id, p.step;
end
$$;
revoke execute on function public.training_rounds_refresh(jsonb, boolean) from public, anon, authenticated;

-- Rounds whose rows already carry user scores (written between two migrations) get them summarised.
select public.training_rounds_refresh(
    (select coalesce(jsonb_agg(jsonb_build_object('user_id', user_id, 'job_id', job_id, 'step', step)), '[]')
     from (select distinct user_id, job_id, step from public.training_predictions where scores is not null) as r),
    p_lock => false
);

-- Trends: the built-in averages as before, each round's user scores as {name: {avg, min, max}}, and
-- the job's config (its scorers' titles and directions, its metadata fields) to describe them.
create or replace function public.predictions_trends(p_job_id text, p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    with owned as (
        select * from public.training_rounds
        where job_id = p_job_id and user_id = coalesce(p_user_id, auth.uid(), user_id)
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
            where j.id = p_job_id and j.user_id = coalesce(p_user_id, auth.uid(), j.user_id)
            order by j.updated_at desc
            limit 1
        )
    )
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
          and user_id = coalesce(p_user_id, auth.uid(), user_id)
        order by step
        limit 10000
    ) as h
$$;

-- A metric's value in a row: a built-in column, else the user score of that name.
create or replace function public.training_predictions_metric(p_row public.training_predictions, p_metric text)
returns double precision
language sql
immutable
as $$
    select case p_metric
        when 'exact_match' then p_row.exact_match
        when 'char_error_rate' then p_row.char_error_rate
        when 'length_ratio' then p_row.length_ratio
        when 'word_overlap' then p_row.word_overlap
        else public.training_predictions_number(p_row.scores -> p_metric)
    end
$$;

-- A metric name is a built-in column or a user scorer's name: an identifier (it is only a jsonb key).
create or replace function public.training_predictions_check_metric(p_metric text, p_option text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
    if p_metric is null or p_metric !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' or p_metric in (
        'id', 'job_id', 'user_id', 'epoch', 'step', 'sample_index', 'prompt', 'ground_truth', 'prediction',
        'scores', 'metadata', 'created_at', 'updated_at', 'value', 'group', 'round', 'job',
        'sample_count', 'scored_count'
    ) then
        raise exception using
            errcode = '22023',
            message = format('%s=%L is not a metric', p_option, p_metric),
            hint = 'valid: exact_match, char_error_rate, length_ratio, word_overlap or a user scorer''s name';
    end if;
end
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
        where p.job_id = p_job_id and p.user_id = coalesce(p_user_id, auth.uid(), p.user_id)
        order by p.sample_index, p.step
        limit 250000
    ) as cells;
    return result;
end
$$;

-- A page of rows: the filters of before, plus p_metric between p_low and p_high (inclusive, null
-- open), sorted by a row column or any metric, built-in or user (nulls last).
drop function if exists public.predictions_page(text, integer, boolean, text, boolean, integer, integer, uuid);
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
          and p.user_id = coalesce(p_user_id, auth.uid(), p.user_id)
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

-- Per round and per value of the rows' metadata field p_field (rows without it form the group null):
-- the built-in averages and, in `scores`, each user score's average. Equal to a pandas groupby.
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
        where p.job_id = p_job_id and p.user_id = coalesce(p_user_id, auth.uid(), p.user_id)
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

revoke execute on function
    public.training_predictions_number(jsonb),
    public.training_predictions_metric(public.training_predictions, text),
    public.training_predictions_check_metric(text, text)
from public, anon;
grant execute on function
    public.training_predictions_number(jsonb),
    public.training_predictions_metric(public.training_predictions, text),
    public.training_predictions_check_metric(text, text)
to authenticated, service_role;
revoke execute on function
    public.predictions_trends(text, uuid),
    public.predictions_sample_history(text, integer, uuid),
    public.predictions_sample_matrix(text, text, uuid),
    public.predictions_page(text, integer, boolean, text, boolean, integer, integer, uuid, text, double precision, double precision),
    public.predictions_group_trends(text, text, uuid)
from public, anon;
grant execute on function
    public.predictions_trends(text, uuid),
    public.predictions_sample_history(text, integer, uuid),
    public.predictions_sample_matrix(text, text, uuid),
    public.predictions_page(text, integer, boolean, text, boolean, integer, integer, uuid, text, double precision, double precision),
    public.predictions_group_trends(text, text, uuid)
to authenticated, service_role;
