-- A job deleted on the dashboard stays deleted (docs/reliability.md, problem 16). Calls of its run that
-- still waited in a training machine's outbox (the store was down, a key refused) used to bring it
-- back when replayed: upserts re-created it with part of its rows.
--
-- Every write now names the writer's process run: the rows in `run`, the status calls in status_run
-- (20261206215523), a missing-row count by its key in rows_missing_runs. Deleting a job records each run
-- the store heard from for it in training_deleted_runs; a write of one of those runs is refused with
-- SQLSTATE P0410 ("gone"), which the writer and `spool replay` take as done with, not as a failure.
-- A new run under the same job id (a fresh run, or one resumed from the deleted job's checkpoint) has
-- a new run id: it is stored, as a new job. No clock is compared.
--
-- Row-level security: a user reads and records the deletions of their own jobs only, so nobody's
-- deletion can drop another owner's writes; the checks run as the writer (an ingest key's functions
-- as their owner, for the key's user).

alter table public.training_predictions add column if not exists run text;
alter table public.training_rollouts add column if not exists run text;
alter table public.training_series add column if not exists run text;

create table if not exists public.training_deleted_runs (
    user_id uuid not null default auth.uid(),
    job_id text not null,
    run text not null,
    deleted_at timestamptz not null default now(),
    primary key (user_id, job_id, run)
);

alter table public.training_deleted_runs enable row level security;
revoke all on public.training_deleted_runs from public, anon;
grant select, insert on public.training_deleted_runs to authenticated, service_role;

drop policy if exists "own deleted runs are readable" on public.training_deleted_runs;
create policy "own deleted runs are readable" on public.training_deleted_runs
    for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "own deleted runs are insertable" on public.training_deleted_runs;
create policy "own deleted runs are insertable" on public.training_deleted_runs
    for insert to authenticated with check (user_id = (select auth.uid()));

-- Rows (predictions, rollouts, series): a row of a deleted run stops the whole write.
create or replace function public.training_rows_of_deleted_runs()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    if exists (
        select 1 from public.training_deleted_runs as d
        where d.user_id = new.user_id and d.job_id = new.job_id and d.run = new.run
    ) then
        raise exception using errcode = 'P0410',
            message = format('job %L was deleted on the dashboard: every write of its run %s is dropped',
                             new.job_id, new.run),
            hint = 'a new run with the same job id is stored as a new job';
    end if;
    return new;
end
$$;

-- A job's start, finish or missing-row count from one of its deleted runs.
create or replace function public.training_jobs_of_deleted_runs()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
declare
    deleted text;
begin
    select d.run into deleted
    from public.training_deleted_runs as d
    where d.user_id = new.user_id and d.job_id = new.id
      and (d.run = new.status_run
           or (jsonb_typeof(new.rows_missing_runs) = 'object' and new.rows_missing_runs ? d.run))
    limit 1;
    if deleted is not null then
        raise exception using errcode = 'P0410',
            message = format('job %L was deleted on the dashboard: every write of its run %s is dropped',
                             new.id, deleted),
            hint = 'a new run with the same job id is stored as a new job';
    end if;
    return new;
end
$$;

drop trigger if exists training_predictions_of_deleted_runs on public.training_predictions;
create trigger training_predictions_of_deleted_runs before insert on public.training_predictions
    for each row when (new.run is not null) execute function public.training_rows_of_deleted_runs();
drop trigger if exists training_rollouts_of_deleted_runs on public.training_rollouts;
create trigger training_rollouts_of_deleted_runs before insert on public.training_rollouts
    for each row when (new.run is not null) execute function public.training_rows_of_deleted_runs();
drop trigger if exists training_series_of_deleted_runs on public.training_series;
create trigger training_series_of_deleted_runs before insert on public.training_series
    for each row when (new.run is not null) execute function public.training_rows_of_deleted_runs();
drop trigger if exists training_jobs_of_deleted_runs on public.training_jobs;
create trigger training_jobs_of_deleted_runs before insert on public.training_jobs
    for each row when (new.status_run is not null or new.rows_missing_runs is not null)
    execute function public.training_jobs_of_deleted_runs();

-- Triggers only: no API role calls them.
revoke execute on function public.training_rows_of_deleted_runs() from public, anon, authenticated, service_role;
revoke execute on function public.training_jobs_of_deleted_runs() from public, anon, authenticated, service_role;

-- predictions_delete_job of 20261206212011_training_series.sql, now recording the job's runs first.
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
    insert into public.training_deleted_runs (user_id, job_id, run)
    select owner, p_job_id, runs.run from (
        select distinct p.run from public.training_predictions as p
        where p.user_id = owner and p.job_id = p_job_id and p.run is not null
        union select r.run from public.training_rollouts as r
        where r.user_id = owner and r.job_id = p_job_id and r.run is not null
        union select s.run from public.training_series as s
        where s.user_id = owner and s.job_id = p_job_id and s.run is not null
        union select seen.run from public.training_jobs as j,
            jsonb_array_elements_text(case when jsonb_typeof(j.status_runs) = 'array' then j.status_runs
                                           else '[]'::jsonb end) as seen (run)
        where j.user_id = owner and j.id = p_job_id
        union select counted.run from public.training_jobs as j,
            jsonb_object_keys(case when jsonb_typeof(j.rows_missing_runs) = 'object' then j.rows_missing_runs
                                   else '{}'::jsonb end) as counted (run)
        where j.user_id = owner and j.id = p_job_id
    ) as runs
    on conflict do nothing;
    delete from public.training_predictions where user_id = owner and job_id = p_job_id;
    get diagnostics predictions = row_count;
    delete from public.training_jobs where user_id = owner and id = p_job_id;
    get diagnostics jobs = row_count;
    delete from public.training_series where user_id = owner and job_id = p_job_id;
    if predictions = 0 and jobs = 0 then
        raise exception using errcode = 'P0002', message = format('no job %L of yours to delete', p_job_id);
    end if;
    return jsonb_build_object('predictions', predictions, 'jobs', jobs);
end
$$;
