-- The Samples page reads what it draws (issue 23): it read the whole job's matrix (200k values at
-- 1,000 samples x 200 rounds) to draw 50 samples x 50 rounds. Now:
--   * predictions_sample_summary: one row per sample (first, latest, lowest and lowest-before-latest
--     value of a metric, its latest scored step, the last step it was 0), aggregated here, for the
--     page's lists and the order of its samples;
--   * predictions_sample_matrix takes the page's samples and the rounds it draws (p_samples,
--     p_steps), read through the natural key (user_id, job_id, step, sample_index).
-- Starts from predictions_sample_matrix of 20261206203202_advisors_and_owners.sql (its owner bounds).

drop function if exists public.predictions_sample_matrix(text, text, uuid);
create or replace function public.predictions_sample_matrix(
    p_job_id text,
    p_metric text default 'char_error_rate',
    p_user_id uuid default null,
    p_samples integer[] default null,
    p_steps integer[] default null
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
          and (p_samples is null or p.sample_index = any(p_samples))
          and (p_steps is null or p.step = any(p_steps))
        order by p.sample_index, p.step
        limit 250000
    ) as cells;
    return result;
end
$$;

create or replace function public.predictions_sample_summary(
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
    select coalesce(jsonb_agg(to_jsonb(s) order by s.sample_index), '[]'::jsonb)
    into result
    from (
        select a.sample_index, a.scored[1] as first_value, a.scored[cardinality(a.scored)] as latest_value,
               a.latest_step, (select min(v) from unnest(a.scored) as v) as min_value,
               (select min(v) from unnest(a.scored[1:cardinality(a.scored) - 1]) as v) as min_earlier,
               a.last_zero_step
        from (
            select c.sample_index,
                   array_agg(c.value order by c.step) filter (where c.value is not null) as scored,
                   max(c.step) filter (where c.value is not null) as latest_step,
                   max(c.step) filter (where c.value = 0) as last_zero_step
            from (
                select p.sample_index, p.step, public.training_predictions_metric(p, p_metric) as value
                from public.training_predictions as p
                where p.job_id = p_job_id
                  and p.user_id between public.training_owner_low(p_user_id)
                      and public.training_owner_high(p_user_id)
            ) as c
            group by c.sample_index
        ) as a
    ) as s;
    return result;
end
$$;

revoke execute on function
    public.predictions_sample_matrix(text, text, uuid, integer[], integer[]),
    public.predictions_sample_summary(text, text, uuid)
from public, anon;
grant execute on function
    public.predictions_sample_matrix(text, text, uuid, integer[], integer[]),
    public.predictions_sample_summary(text, text, uuid)
to authenticated, service_role;
