-- Rows missing (issue 20): rows a run could keep nowhere (the store did not take them and the local
-- outbox could not be written: a read-only folder, a full disk) are counted on their job, so the
-- dashboard says the job's charts lack them instead of showing a gap nobody explains.
--
-- A writer sends its own run's count, {"<run id>": n}, in rows_missing_runs; the trigger merges it into
-- the job's counts by run (a run's later count replaces its earlier one, so a retried or replayed call
-- never counts twice) and sums them into rows_missing. Row-level security covers the columns as it
-- covers the rest of the job's row; an ingest key writes them through ingest_start_job.

alter table public.training_jobs add column if not exists rows_missing bigint not null default 0;
alter table public.training_jobs add column if not exists rows_missing_runs jsonb;

create or replace function public.training_jobs_rows_missing()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    if new.rows_missing_runs is not null and jsonb_typeof(new.rows_missing_runs) <> 'object' then
        raise exception using errcode = '22023',
            message = 'rows_missing_runs must be a JSON object: the count of missing rows by run id';
    end if;
    if tg_op = 'UPDATE' then
        new.rows_missing_runs := coalesce(old.rows_missing_runs, '{}'::jsonb)
                                 || coalesce(new.rows_missing_runs, '{}'::jsonb);
    end if;
    new.rows_missing := coalesce((
        select sum(greatest(floor((counted.value #>> '{}')::numeric), 0))::bigint
        from jsonb_each(coalesce(new.rows_missing_runs, '{}'::jsonb)) as counted
        where jsonb_typeof(counted.value) = 'number'
    ), 0);
    return new;
end
$$;

drop trigger if exists training_jobs_rows_missing on public.training_jobs;
create trigger training_jobs_rows_missing
    before insert or update on public.training_jobs
    for each row execute function public.training_jobs_rows_missing();

-- Trigger only: no API role calls it.
revoke execute on function public.training_jobs_rows_missing() from public, anon, authenticated, service_role;

-- predictions_list_jobs of 20261206212010_job_stopped.sql, now with each job's rows_missing.
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
               j.started_at, j.updated_at, j.finished_at, j.stop_reason, coalesce(j.rows_missing, 0) as rows_missing,
               a.latest_epoch, a.latest_step, coalesce(a.round_count, 0) as round_count,
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
