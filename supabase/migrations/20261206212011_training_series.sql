-- training_series: what the Trainer logged beside the answers (training loss, eval loss, learning
-- rate), one row per job, step and name, so the dashboard can draw the loss on the same step axis as
-- the CER and warn when the loss keeps falling while the answers get worse.
--
-- Keyed like the prediction rows, per owner: (user_id, job_id, step, name), so a replayed write is an
-- update. Row-level security as on the other tables; a trainer with an ingest key writes through
-- ingest_write_series; the dashboard reads through predictions_training_series (one jsonb value, so
-- PostgREST's row cap never cuts it; at most 30000 points).

create table if not exists public.training_series (
    user_id uuid not null default auth.uid(),
    job_id text not null,
    step integer not null,
    name text not null,
    value double precision not null,
    created_at timestamptz not null default now(),
    primary key (user_id, job_id, step, name)
);

alter table public.training_series enable row level security;
revoke all on public.training_series from public, anon;
grant select, insert, update, delete on public.training_series to authenticated, service_role;

drop policy if exists "own series are readable" on public.training_series;
create policy "own series are readable" on public.training_series
    for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "own series are insertable" on public.training_series;
create policy "own series are insertable" on public.training_series
    for insert to authenticated with check (user_id = (select auth.uid()));

drop policy if exists "own series are updatable" on public.training_series;
create policy "own series are updatable" on public.training_series
    for update to authenticated
    using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

drop policy if exists "own series are deletable" on public.training_series;
create policy "own series are deletable" on public.training_series
    for delete to authenticated using (user_id = (select auth.uid()));

-- A trainer with an ingest key: the rows are the key owner's whatever user_id they carry.
create or replace function public.ingest_write_series(p_key text, p_rows jsonb)
returns integer
language sql
volatile
security definer
set search_path = ''
as $$
    select public.ingest_upsert(
        'public.training_series', '{user_id,job_id,step,name}', public.ingest_key_owner(p_key), p_rows
    )
$$;
-- For the trainer's publishable key (anon) alone, like the other ingest calls (20261206203202).
revoke execute on function public.ingest_write_series(text, jsonb) from public, authenticated, service_role;
grant execute on function public.ingest_write_series(text, jsonb) to anon;

create or replace function public.predictions_training_series(p_job_id text, p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object('step', s.step, 'name', s.name, 'value', s.value)
                              order by s.step, s.name), '[]'::jsonb)
    from (
        select step, name, value from public.training_series
        where job_id = p_job_id
          and user_id between public.training_owner_low(p_user_id) and public.training_owner_high(p_user_id)
        order by step, name
        limit 30000
    ) as s
$$;
revoke execute on function public.predictions_training_series(text, uuid) from public, anon;
grant execute on function public.predictions_training_series(text, uuid) to authenticated, service_role;

-- predictions_delete_job of 20261126090000, now deleting the job's series too.
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
