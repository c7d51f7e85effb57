-- Nothing lost (docs/reliability.md): text every store can hold, marked; a job status that follows time.
--
-- training_predictions.text_replacements counts the characters no store can hold (NUL, lone
-- surrogates) that the writer replaced with U+FFFD, so the dashboard can show the replacement.
-- training_jobs.status_at is when the writer set the job's status: a replayed call that set a status
-- earlier than the current one (a start replayed after the finish) leaves the status as it is.

alter table public.training_predictions
    add column if not exists text_replacements integer not null default 0;
alter table public.training_jobs add column if not exists status_at timestamptz;

-- Runs after training_jobs_stamp (triggers fire in name order), so it also restores finished_at.
create or replace function public.training_jobs_status_order()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    if old.status_at is not null and (new.status_at is null or new.status_at < old.status_at) then
        new.status := old.status;
        new.finished_at := old.finished_at;
        new.status_at := old.status_at;
    end if;
    return new;
end
$$;

drop trigger if exists training_jobs_status_order on public.training_jobs;
create trigger training_jobs_status_order
    before update on public.training_jobs
    for each row execute function public.training_jobs_status_order();

-- The row readers (predictions_sample_history, predictions_page) return whole rows from
-- 20261126110000 on, text_replacements included.
