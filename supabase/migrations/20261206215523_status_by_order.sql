-- Status by order, not clock (docs/reliability.md, problem 10): a job's status was ordered by the
-- writer's `status_at`, so a failed job resumed on a machine an hour behind stayed `failed` while it ran
-- and after it finished. Each writer (one per process run) now sends its run id and a sequence number
-- with every status call:
--   * a run this job has not heard from yet is the newest (its first call reached the store last);
--   * within the current run, the higher (or equal: a retried duplicate) sequence wins;
--   * any other run's call is older: a late replayed `running` of an earlier run changes nothing.
-- status_runs lists the runs heard from, in the order their first call arrived. A call without a run
-- (an older writer, an old outbox entry) is still ordered by status_at.

alter table public.training_jobs add column if not exists status_run text;
alter table public.training_jobs add column if not exists status_seq bigint;
alter table public.training_jobs add column if not exists status_runs jsonb;

-- training_jobs_status_order of 20261206212010 (with the stop reason), now ordered by run and sequence;
-- it runs on inserts too, to start the list of runs.
create or replace function public.training_jobs_status_order()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
declare
    newer boolean;
begin
    if tg_op = 'INSERT' then
        new.status_runs := case when new.status_run is null then null else jsonb_build_array(new.status_run) end;
        return new;
    end if;
    new.status_runs := old.status_runs;
    if new.status_run is null then
        newer := old.status_at is null or (new.status_at is not null and new.status_at >= old.status_at);
    elsif coalesce(old.status_runs, '[]'::jsonb) ? new.status_run then
        newer := new.status_run is not distinct from old.status_run
                 and coalesce(new.status_seq, 0) >= coalesce(old.status_seq, 0);
    else
        newer := true;
        new.status_runs := coalesce(old.status_runs, '[]'::jsonb) || jsonb_build_array(new.status_run);
    end if;
    if not newer then
        new.status := old.status;
        new.finished_at := old.finished_at;
        new.status_at := old.status_at;
        new.stop_reason := old.stop_reason;
        new.status_run := old.status_run;
        new.status_seq := old.status_seq;
    end if;
    if new.status is distinct from 'stopped' then
        new.stop_reason := null;
    end if;
    return new;
end
$$;

drop trigger if exists training_jobs_status_order on public.training_jobs;
create trigger training_jobs_status_order
    before insert or update on public.training_jobs
    for each row execute function public.training_jobs_status_order();

-- Trigger only: no API role calls it.
revoke execute on function public.training_jobs_status_order() from public, anon, authenticated, service_role;
