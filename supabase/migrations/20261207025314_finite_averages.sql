-- User scores and rewards whose sum overflows a double (3 x 1e308) are kept and averaged exactly.
--
-- The mean of finite doubles is a finite double, their sum may not be: sum(double precision) raised
-- "value out of range: overflow" (22003) in the round summary's statement trigger, so the write of such
-- a round was refused for good and its rows went to the writer's quarantine; var_pop did the same for a
-- GRPO step with rewards past 1e154. The summaries now add in numeric (exact; a jsonb number is one
-- already) and turn the result into the nearest double (training_numeric_double), a variance past the
-- largest double into null (its square root, the dashboard's standard deviation, is then not shown:
-- SQLite's summary does the same). Each function is re-created from its latest definition
-- (training_rounds_scores: 20261126110000; predictions_trends and predictions_group_trends:
-- 20261206203202; training_rollout_steps_refresh: 20261206202027).

-- The double nearest a numeric, never raising: the cast raises past the largest double (float8 to numeric
-- keeps 15 digits, so the largest double itself comes back a little larger) and below half the smallest.
create or replace function public.training_numeric_double(p_value numeric)
returns double precision
language sql
immutable
set search_path = ''
as $$
    select case when p_value is null then null  -- greatest() and least() skip a null
                when abs(p_value) < 2.4703282292062328e-324 then 0::double precision
                else least(greatest(p_value, -1.7976931348623157e308), 1.7976931348623157e308)::double precision
           end
$$;

-- A variance as a double, or null past the largest double: not a number a double can hold.
create or replace function public.training_numeric_variance(p_value numeric)
returns double precision
language sql
immutable
set search_path = ''
as $$
    select case when p_value <= 1.7976931348623157e308 then public.training_numeric_double(p_value) end
$$;

-- The double is called by the dashboard's reads as their caller (security invoker), as
-- training_predictions_number; the variance only by the rollout summary's trigger.
revoke execute on function public.training_numeric_double(numeric), public.training_numeric_variance(numeric)
from public, anon, authenticated, service_role;
grant execute on function public.training_numeric_double(numeric) to authenticated, service_role;

create or replace function public.training_rounds_scores(p_user_id uuid, p_job_id text, p_step integer)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_object_agg(t.key, t.summary), '{}'::jsonb)
    from (
        select s.key, jsonb_build_object(
                   'sum', sum(case when jsonb_typeof(s.value) = 'number' then s.value::numeric end),
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
        select step, jsonb_object_agg(key, jsonb_build_object(
                         'avg', public.training_numeric_double(total / nullif(n, 0)), 'min', low, 'max', high))
                     as scores
        from (
            select o.step, c.key, sum((c.value ->> 'sum')::numeric) as total,
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
            select o.step, o.grp, s.key, public.training_numeric_double(
                       avg(case when jsonb_typeof(s.value) = 'number' then s.value::numeric end)
                   ) as average
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

create or replace function public.training_rollout_steps_refresh(p_keys jsonb, p_lock boolean default true)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
    if p_lock then
        perform pg_advisory_xact_lock(hashtextextended(jobs.job_id, 20261206))
        from (select distinct k ->> 'job_id' as job_id from jsonb_array_elements(p_keys) as k order by 1) as jobs;
    end if;
    delete from public.training_rollout_steps as s
    using public.training_rounds_keys(p_keys) as t
    where s.user_id = t.user_id and s.job_id = t.job_id and s.step = t.step;
    insert into public.training_rollout_steps
    select r.user_id, r.job_id, r.step, count(*),
           (select count(*) from (select 1 from public.training_rollouts as g
                                  where g.user_id = r.user_id and g.job_id = r.job_id and g.step = r.step
                                  group by g.generation, g.group_index) as groups),
           (select count(*) from (select 1 from public.training_rollouts as g
                                  where g.user_id = r.user_id and g.job_id = r.job_id and g.step = r.step
                                  group by g.generation, g.group_index
                                  having min(g.reward) = max(g.reward)) as flat),
           public.training_numeric_double(avg(r.reward::numeric)),
           public.training_numeric_variance(var_pop(r.reward::numeric)),
           min(r.reward), max(r.reward),
           avg(r.completion_tokens), var_pop(r.completion_tokens), min(r.completion_tokens),
           max(r.completion_tokens), count(*) filter (where r.truncated), count(r.char_error_rate),
           avg(r.exact_match), avg(r.char_error_rate), avg(r.length_ratio), avg(r.word_overlap),
           coalesce((
               select jsonb_object_agg(f.key, jsonb_build_object(
                   'count', f.n, 'avg', f.a, 'var', f.v, 'min', f.low, 'max', f.high))
               from (
                   select e.key, count(e.value::double precision) as n,
                          public.training_numeric_double(avg(e.value::numeric)) as a,
                          public.training_numeric_variance(var_pop(e.value::numeric)) as v,
                          min(e.value::double precision) as low,
                          max(e.value::double precision) as high
                   from public.training_rollouts as g, jsonb_each_text(g.rewards) as e
                   where g.user_id = r.user_id and g.job_id = r.job_id and g.step = r.step
                   group by e.key
               ) as f
           ), '{}'::jsonb),
           min(r.created_at), max(r.created_at)
    from public.training_rollouts as r
    join public.training_rounds_keys(p_keys) as t
        on r.user_id = t.user_id and r.job_id = t.job_id and r.step = t.step
    group by r.user_id, r.job_id, r.step;
end
$$;
revoke execute on function public.training_rollout_steps_refresh(jsonb, boolean) from public, anon, authenticated;
