-- training_jobs: what the job picker shows (a name, the model, running/finished/failed).
-- Jobs that only have prediction rows are still listed by predictions_list_jobs().

create table if not exists public.training_jobs (
    id text primary key,
    user_id uuid not null default auth.uid(),
    name text,
    model text,
    status text not null default 'running',
    config jsonb,
    started_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    finished_at timestamptz
);

do $$
begin
    if not exists (
        select 1 from pg_constraint
        where conname = 'training_jobs_status_check' and conrelid = 'public.training_jobs'::regclass
    ) then
        alter table public.training_jobs add constraint training_jobs_status_check
            check (status in ('running', 'finished', 'failed'));
    end if;
end
$$;

create index if not exists idx_training_jobs_user on public.training_jobs (user_id);

-- The timestamps are the database's, not the writers': training machines' clocks differ, and a
-- plain upsert through PostgREST cannot say "keep the first start time". So a restart keeps
-- started_at, every write moves updated_at, and finished_at follows the status. A job also keeps
-- the owner it was started by (as in the embedded store): a service-role machine configured for
-- another user cannot move it out of its owner's dashboard by restarting it.
create or replace function public.training_jobs_stamp()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    new.updated_at := now();
    if tg_op = 'INSERT' then
        new.started_at := coalesce(new.started_at, now());
    else
        new.started_at := old.started_at;
        new.user_id := old.user_id;
    end if;
    if new.status = 'running' then
        new.finished_at := null;
    elsif tg_op = 'INSERT' or old.status is distinct from new.status or new.finished_at is null then
        new.finished_at := now();
    end if;
    return new;
end
$$;

drop trigger if exists training_jobs_stamp on public.training_jobs;
create trigger training_jobs_stamp
    before insert or update on public.training_jobs
    for each row execute function public.training_jobs_stamp();
