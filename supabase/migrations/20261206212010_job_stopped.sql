-- Early stop made visible: a job ended by the early-stop rule (`stop_after_regressions`) has its own
-- status, `stopped`, and keeps why in `stop_reason` ({"metric", "rounds", "step"}), which the
-- dashboard shows instead of its "consider stopping" advice.
--
-- The reason belongs to the status that set it: a replayed, older status call restores the reason with
-- the status (training_jobs_status_order), and any status but `stopped` clears it, so a resumed job
-- runs again without one.

alter table public.training_jobs add column if not exists stop_reason jsonb;

alter table public.training_jobs drop constraint if exists training_jobs_status_check;
alter table public.training_jobs add constraint training_jobs_status_check
    check (status in ('running', 'finished', 'stopped', 'failed'));

-- training_jobs_status_order of 20261126100000, now with the reason.
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
        new.stop_reason := old.stop_reason;
    end if;
    if new.status is distinct from 'stopped' then
        new.stop_reason := null;
    end if;
    return new;
end
$$;

-- A new job that is not stopped has no reason either (the trigger above runs on updates only).
create or replace function public.training_jobs_clear_reason()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    if new.status is distinct from 'stopped' then
        new.stop_reason := null;
    end if;
    return new;
end
$$;

drop trigger if exists training_jobs_clear_reason on public.training_jobs;
create trigger training_jobs_clear_reason
    before insert on public.training_jobs
    for each row execute function public.training_jobs_clear_reason();

-- predictions_list_jobs of 20261206204601 (light: no config), now with each job's stop_reason.
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
               j.started_at, j.updated_at, j.finished_at, j.stop_reason, a.latest_epoch, a.latest_step,
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

-- Triggers only: no API role calls them.
revoke execute on function public.training_jobs_status_order(), public.training_jobs_clear_reason()
from public, anon, authenticated, service_role;
