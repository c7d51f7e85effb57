-- Tags and a note per job (issue 23): short labels to find a run by, and its owner's words about it.
-- Set from training (the callback's `tags` and `note`, through the job's start) and edited on the
-- dashboard by the job's owner (predictions_set_job_details). Row-level security already lets only
-- the owner update a job ("own jobs are updatable"); the service role reads everyone's.
--
-- A start fills tags and a note only where the job has none (null): a resumed run, or a start replayed
-- from a trainer's outbox, never overwrites what the owner edited since. Only the edit function
-- replaces them; it marks its own update with a transaction-local setting the trigger reads.

alter table public.training_jobs add column if not exists tags text[];
alter table public.training_jobs add column if not exists note text;

-- The limits of predictions/store/job_details.py, for every way in (a trigger runs for whoever writes,
-- without an EXECUTE grant, so no helper is opened to the API roles).
create or replace function public.training_jobs_details()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    if tg_op = 'UPDATE' and coalesce(current_setting('predictions.editing_job_details', true), '') <> 'on' then
        new.tags := coalesce(old.tags, new.tags);
        new.note := coalesce(old.note, new.note);
    end if;
    if cardinality(new.tags) > 20
       or exists (select 1 from unnest(new.tags) as tag where tag is null or char_length(tag) not between 1 and 40) then
        raise exception using errcode = '22023', message = 'tags are invalid',
            hint = 'at most 20 tags of 1 to 40 characters each';
    end if;
    if char_length(new.note) > 2000 then
        raise exception using errcode = '22023', message = 'the note is too long',
            hint = 'a note has at most 2000 characters';
    end if;
    return new;
end
$$;

drop trigger if exists training_jobs_details on public.training_jobs;
create trigger training_jobs_details
    before insert or update on public.training_jobs
    for each row execute function public.training_jobs_details();

revoke execute on function public.training_jobs_details() from public, anon, authenticated, service_role;

-- Replace one of the caller's jobs' tags and/or note; null leaves one as it is. Runs as the caller, so
-- row-level security refuses anyone but the owner; the service role names the owner in p_user_id.
create or replace function public.predictions_set_job_details(
    p_job_id text,
    p_tags text[] default null,
    p_note text default null,
    p_user_id uuid default null
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    owner uuid := coalesce(p_user_id, auth.uid());
    updated integer;
begin
    if owner is null then
        raise exception using errcode = '22023', message = 'p_user_id is not set',
            hint = 'the service role changes a job of the user it names';
    end if;
    perform set_config('predictions.editing_job_details', 'on', true);
    update public.training_jobs
    set tags = coalesce(p_tags, tags), note = coalesce(p_note, note)
    where user_id = owner and id = p_job_id;
    get diagnostics updated = row_count;
    perform set_config('predictions.editing_job_details', '', true);
    if updated = 0 then
        raise exception using errcode = 'P0002', message = format('no job %L of yours to tag', p_job_id);
    end if;
    return jsonb_build_object('jobs', updated);
end
$$;
revoke execute on function public.predictions_set_job_details(text, text[], text, uuid) from public, anon;
grant execute on function public.predictions_set_job_details(text, text[], text, uuid) to authenticated, service_role;

-- predictions_list_jobs of 20261206233010_job_summary.sql (the job summary, p_search, p_job_id), now
-- with each job's tags and note, and p_search matching a tag too.
create or replace function public.predictions_list_jobs(
    p_limit integer default 1000,
    p_user_id uuid default null,
    p_search text default null,
    p_job_id text default null
)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    with listed as (
        select s.job_id as id, coalesce(j.status, 'unknown') as status, j.name, j.model, s.user_id,
               j.started_at, j.updated_at, j.finished_at, j.stop_reason, coalesce(j.rows_missing, 0) as rows_missing,
               j.tags, j.note, s.latest_epoch, s.latest_step, s.round_count, s.last_active
        from public.training_job_summary as s
        left join public.training_jobs as j on j.user_id = s.user_id and j.id = s.job_id
            and j.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
        where s.user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
          and (p_job_id is null or s.job_id = p_job_id)
          and (coalesce(p_search, '') = ''
               or strpos(lower(s.job_id), lower(p_search)) > 0
               or strpos(lower(j.name), lower(p_search)) > 0
               or strpos(lower(j.model), lower(p_search)) > 0
               or exists (select 1 from unnest(j.tags) as tag where strpos(lower(tag), lower(p_search)) > 0))
        order by s.last_active desc nulls last, s.job_id, s.user_id
        limit least(greatest(coalesce(p_limit, 1000), 1), 1000)
    )
    select coalesce(
        jsonb_agg(to_jsonb(listed) order by listed.last_active desc nulls last, listed.id, listed.user_id),
        '[]'::jsonb
    )
    from listed
$$;
