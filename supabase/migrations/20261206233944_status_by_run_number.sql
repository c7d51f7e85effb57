-- Status by order, the one order the first-arrival rule could not know (docs/reliability.md, problem
-- 10): a run whose every call waited in an outbox until a later run had reached the store was taken
-- for the newer one when finally replayed. Each run now also sends its run number: 1 for a fresh run,
-- one more than the run whose checkpoint it resumed (the number travels in the checkpoint with the job
-- id). Between two runs the higher number is the newer, whenever its calls arrive; equal or unknown
-- numbers (an explicit job id reused without a checkpoint, a writer of an earlier version) keep the
-- first-arrival rule.

alter table public.training_jobs add column if not exists status_run_number bigint;

-- training_jobs_status_order of 20261206215523_status_by_order.sql, now comparing run numbers between runs.
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
    if new.status_run is not null and not coalesce(old.status_runs, '[]'::jsonb) ? new.status_run then
        new.status_runs := coalesce(old.status_runs, '[]'::jsonb) || jsonb_build_array(new.status_run);
    end if;
    if new.status_run is null then
        newer := old.status_at is null or (new.status_at is not null and new.status_at >= old.status_at);
    elsif new.status_run is not distinct from old.status_run then
        newer := coalesce(new.status_seq, 0) >= coalesce(old.status_seq, 0);
    elsif new.status_run_number is not null and old.status_run_number is not null
          and new.status_run_number <> old.status_run_number then
        newer := new.status_run_number > old.status_run_number;
    else
        newer := not coalesce(old.status_runs, '[]'::jsonb) ? new.status_run;
    end if;
    if not newer then
        new.status := old.status;
        new.finished_at := old.finished_at;
        new.status_at := old.status_at;
        new.stop_reason := old.stop_reason;
        new.status_run := old.status_run;
        new.status_seq := old.status_seq;
        new.status_run_number := old.status_run_number;
    end if;
    if new.status is distinct from 'stopped' then
        new.stop_reason := null;
    end if;
    return new;
end
$$;

-- Trigger only: no API role calls it.
revoke execute on function public.training_jobs_status_order() from public, anon, authenticated, service_role;
