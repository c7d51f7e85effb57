-- The job list without each job's config (issue 23): the dashboard re-reads the list whenever any job
-- changes, and at 10,000 jobs the configs (with their rendered model inputs) were 12.8 MB a read. A
-- job's config comes with its trends (predictions_trends). predictions_jobs_version is what the
-- dashboard polls instead of the list: three index reads that change whenever the list would.
-- Starts from predictions_list_jobs of 20261206203202_advisors_and_owners.sql (its owner bounds).

create index if not exists training_rounds_owner_last_write on public.training_rounds (user_id, last_write);
create index if not exists training_jobs_owner_updated_at on public.training_jobs (user_id, updated_at);

create or replace function public.predictions_list_jobs(p_limit integer default 1000, p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    with jobs as (
        select * from public.training_jobs
        where user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
    ), activity as (
        select user_id, job_id, max(epoch) as latest_epoch, max(step) as latest_step,
               count(distinct step) as round_count, max(last_write) as last_write
        from public.training_rounds
        where user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
        group by user_id, job_id
    ), ids as (
        select user_id, id from jobs
        union
        select user_id, job_id from activity
    ), listed as (
        select ids.id, coalesce(j.status, 'unknown') as status, j.name, j.model, ids.user_id,
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

create or replace function public.predictions_jobs_version(p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    with owners as (
        select public.training_owner_low(p_user_id) as low, public.training_owner_high(p_user_id) as high
    )
    select jsonb_build_array(
        (select max(updated_at) from public.training_jobs, owners where user_id between low and high),
        (select count(*) from public.training_jobs, owners where user_id between low and high),
        (select max(last_write) from public.training_rounds, owners where user_id between low and high)
    )
$$;
revoke execute on function public.predictions_jobs_version(uuid) from public, anon;
grant execute on function public.predictions_jobs_version(uuid) to authenticated, service_role;

-- A job's rows in (step, sample_index) order after a key: the CSV export's pages (issue 23). Keyset,
-- not offset: each page starts at the unique index's position instead of sorting and skipping every
-- earlier row (a 200k-row job took 51 s through offset pages).
create or replace function public.predictions_rows_after(
    p_job_id text,
    p_after_step integer default null,
    p_after_sample integer default null,
    p_limit integer default 1000,
    p_user_id uuid default null
)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(to_jsonb(r) - 'id' - 'user_id' order by r.step, r.sample_index), '[]'::jsonb)
    from (
        select *
        from public.training_predictions
        where job_id = p_job_id
          and user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
          and (p_after_step is null or (step, sample_index) > (p_after_step, coalesce(p_after_sample, -1)))
        order by step, sample_index
        limit least(greatest(coalesce(p_limit, 1000), 1), 1000)
    ) as r
$$;
revoke execute on function public.predictions_rows_after(text, integer, integer, integer, uuid) from public, anon;
grant execute on function public.predictions_rows_after(text, integer, integer, integer, uuid)
    to authenticated, service_role;
