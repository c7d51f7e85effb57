-- The job list also returns each job's last activity (its latest round write or job update), so the
-- dashboard can say how long a running job has been silent: a run that crashed in a notebook never
-- reaches train end and stays 'running' in training_jobs.

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
               count(distinct step) as round_count, max(last_write) as last_write
        from public.training_rounds
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
    select coalesce(jsonb_agg(to_jsonb(listed) order by listed.last_active desc nulls last, listed.id), '[]'::jsonb)
    from listed
$$;
