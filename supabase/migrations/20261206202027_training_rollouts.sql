-- training_rollouts: one row per completion an RL trainer (TRL's GRPOTrainer) generated and rewarded,
-- written by predictions.RolloutRecorder (see shared DESIGN.md, "Table training_rollouts").
--
-- Owner and job as for training_predictions; the natural key (user_id, job_id, generation,
-- group_index, completion_index) makes a replayed write an update. training_rollout_steps keeps each
-- step's aggregates, recomputed by statement-level triggers for every step a statement touched
-- (whoever writes), so the dashboard reads one row per step. Variances are population variances,
-- as in the embedded store; the reader takes the roots. Idempotent: safe on a database that already
-- has every earlier migration, and on a second run.

create table if not exists public.training_rollouts (
    id uuid primary key default gen_random_uuid(),
    job_id text not null,
    user_id uuid not null,
    step integer not null,
    generation integer not null,
    group_index integer not null,
    completion_index integer not null,
    prompt_id text not null,
    prompt text not null,
    completion text not null,
    rewards jsonb,
    reward double precision,
    completion_tokens integer not null,
    truncated boolean not null default false,
    ground_truth text,
    exact_match double precision,
    char_error_rate double precision,
    length_ratio double precision,
    word_overlap double precision,
    scores jsonb,
    text_replacements integer not null default 0,
    created_at timestamptz not null default now(),
    constraint training_rollouts_natural_key unique (user_id, job_id, generation, group_index, completion_index)
);
create index if not exists training_rollouts_job_step on public.training_rollouts (job_id, step);
create index if not exists training_rollouts_job_prompt on public.training_rollouts (job_id, prompt_id);

alter table public.training_rollouts enable row level security;
revoke all on public.training_rollouts from public, anon;
grant select, insert, update, delete on public.training_rollouts to authenticated, service_role;
drop policy if exists "own rollouts are readable" on public.training_rollouts;
create policy "own rollouts are readable" on public.training_rollouts
    for select to authenticated using (user_id = (select auth.uid()));
drop policy if exists "own rollouts are insertable" on public.training_rollouts;
create policy "own rollouts are insertable" on public.training_rollouts
    for insert to authenticated with check (user_id = (select auth.uid()));
drop policy if exists "own rollouts are updatable" on public.training_rollouts;
create policy "own rollouts are updatable" on public.training_rollouts
    for update to authenticated
    using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
drop policy if exists "own rollouts are deletable" on public.training_rollouts;
create policy "own rollouts are deletable" on public.training_rollouts
    for delete to authenticated using (user_id = (select auth.uid()));

create table if not exists public.training_rollout_steps (
    user_id uuid not null,
    job_id text not null,
    step integer not null,
    rollout_count integer not null,
    group_count integer not null,
    zero_std_groups integer not null,
    avg_reward double precision,
    var_reward double precision,
    min_reward double precision,
    max_reward double precision,
    avg_completion_tokens double precision,
    var_completion_tokens double precision,
    min_completion_tokens double precision,
    max_completion_tokens double precision,
    truncated_count integer not null,
    scored_count integer not null,
    avg_exact_match double precision,
    avg_char_error_rate double precision,
    avg_length_ratio double precision,
    avg_word_overlap double precision,
    rewards jsonb not null,
    created_at timestamptz not null,
    last_write timestamptz not null,
    primary key (job_id, step, user_id)
);
create index if not exists training_rollout_steps_user_id on public.training_rollout_steps (user_id);

alter table public.training_rollout_steps enable row level security;
revoke all on public.training_rollout_steps from public, anon, authenticated;
grant select on public.training_rollout_steps to authenticated;
grant all on public.training_rollout_steps to service_role;
drop policy if exists "own rollout steps are readable" on public.training_rollout_steps;
create policy "own rollout steps are readable" on public.training_rollout_steps
    for select to authenticated using (user_id = (select auth.uid()));

-- Recompute the given steps (a jsonb array of {user_id, job_id, step}, the shape training_rounds_keys
-- reads) from their rollouts; a step with no rollouts left disappears. Security definer: the summary
-- is written by these triggers alone.
create or replace function public.training_rollout_steps_refresh(p_keys jsonb, p_lock boolean default true)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
    if p_lock then
        perform pg_advisory_xact_lock(hashtextextended(jobs.job_id, 20261206))
        from (select distinct k ->> 'job_id' as job_id from jsonb_array_elements(p_keys) as k order by 1) as jobs;
    end if;
    delete from public.training_rollout_steps as s
    using public.training_rounds_keys(p_keys) as t
    where s.user_id = t.user_id and s.job_id = t.job_id and s.step = t.step;
    insert into public.training_rollout_steps
    select r.user_id, r.job_id, r.step, count(*),
           (select count(*) from (select 1 from public.training_rollouts as g
                                  where g.user_id = r.user_id and g.job_id = r.job_id and g.step = r.step
                                  group by g.generation, g.group_index) as groups),
           (select count(*) from (select 1 from public.training_rollouts as g
                                  where g.user_id = r.user_id and g.job_id = r.job_id and g.step = r.step
                                  group by g.generation, g.group_index
                                  having min(g.reward) = max(g.reward)) as flat),
           avg(r.reward), var_pop(r.reward), min(r.reward), max(r.reward),
           avg(r.completion_tokens), var_pop(r.completion_tokens), min(r.completion_tokens),
           max(r.completion_tokens), count(*) filter (where r.truncated), count(r.char_error_rate),
           avg(r.exact_match), avg(r.char_error_rate), avg(r.length_ratio), avg(r.word_overlap),
           coalesce((
               select jsonb_object_agg(f.key, jsonb_build_object(
                   'count', f.n, 'avg', f.a, 'var', f.v, 'min', f.low, 'max', f.high))
               from (
                   select e.key, count(e.value::double precision) as n, avg(e.value::double precision) as a,
                          var_pop(e.value::double precision) as v, min(e.value::double precision) as low,
                          max(e.value::double precision) as high
                   from public.training_rollouts as g, jsonb_each_text(g.rewards) as e
                   where g.user_id = r.user_id and g.job_id = r.job_id and g.step = r.step
                   group by e.key
               ) as f
           ), '{}'::jsonb),
           min(r.created_at), max(r.created_at)
    from public.training_rollouts as r
    join public.training_rounds_keys(p_keys) as t
        on r.user_id = t.user_id and r.job_id = t.job_id and r.step = t.step
    group by r.user_id, r.job_id, r.step;
end
$$;
revoke execute on function public.training_rollout_steps_refresh(jsonb, boolean) from public, anon, authenticated;

create or replace function public.training_rollout_steps_after_write()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    keys jsonb := '[]'::jsonb;
begin
    if tg_op in ('INSERT', 'UPDATE') then
        keys := keys || (select coalesce(jsonb_agg(distinct jsonb_build_object(
            'user_id', user_id, 'job_id', job_id, 'step', step)), '[]') from new_rows);
    end if;
    if tg_op in ('UPDATE', 'DELETE') then
        keys := keys || (select coalesce(jsonb_agg(distinct jsonb_build_object(
            'user_id', user_id, 'job_id', job_id, 'step', step)), '[]') from old_rows);
    end if;
    perform public.training_rollout_steps_refresh(keys);
    return null;
end
$$;
revoke execute on function public.training_rollout_steps_after_write() from public, anon, authenticated;

drop trigger if exists training_rollout_steps_on_insert on public.training_rollouts;
create trigger training_rollout_steps_on_insert after insert on public.training_rollouts
    referencing new table as new_rows for each statement execute function public.training_rollout_steps_after_write();
drop trigger if exists training_rollout_steps_on_update on public.training_rollouts;
create trigger training_rollout_steps_on_update after update on public.training_rollouts
    referencing old table as old_rows new table as new_rows
    for each statement execute function public.training_rollout_steps_after_write();
drop trigger if exists training_rollout_steps_on_delete on public.training_rollouts;
create trigger training_rollout_steps_on_delete after delete on public.training_rollouts
    referencing old table as old_rows for each statement execute function public.training_rollout_steps_after_write();

create or replace function public.training_rollout_steps_after_truncate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    truncate public.training_rollout_steps;
    return null;
end
$$;
revoke execute on function public.training_rollout_steps_after_truncate() from public, anon, authenticated;
drop trigger if exists training_rollout_steps_on_truncate on public.training_rollouts;
create trigger training_rollout_steps_on_truncate after truncate on public.training_rollouts
    for each statement execute function public.training_rollout_steps_after_truncate();

-- Deleting a job deletes its rollouts (as the owner: row-level security applies), so
-- predictions_delete_job needs no change.
create or replace function public.training_rollouts_with_their_job()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    delete from public.training_rollouts where user_id = old.user_id and job_id = old.id;
    return null;
end
$$;
revoke execute on function public.training_rollouts_with_their_job() from public, anon;
drop trigger if exists training_rollouts_with_their_job on public.training_jobs;
create trigger training_rollouts_with_their_job after delete on public.training_jobs
    for each row execute function public.training_rollouts_with_their_job();

-- The reads. `user_id = coalesce(p_user_id, auth.uid(), user_id)` as in the other dashboard functions.

create or replace function public.predictions_rollout_trends(p_job_id text, p_user_id uuid default null)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    select coalesce(jsonb_agg(to_jsonb(s) - 'user_id' - 'job_id' - 'created_at' - 'last_write'
                              order by s.step), '[]'::jsonb)
    from public.training_rollout_steps as s
    where s.job_id = p_job_id and s.user_id = coalesce(p_user_id, auth.uid(), s.user_id)
$$;

create or replace function public.predictions_rollout_prompts(
    p_job_id text, p_limit integer default 500, p_user_id uuid default null
)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    select coalesce(jsonb_agg(to_jsonb(p) order by p.first_step, p.prompt_id), '[]'::jsonb)
    from (
        select r.prompt_id, min(r.prompt) as prompt, min(r.ground_truth) as ground_truth,
               count(*) as rollout_count, min(r.step) as first_step, max(r.step) as last_step
        from public.training_rollouts as r
        where r.job_id = p_job_id and r.user_id = coalesce(p_user_id, auth.uid(), r.user_id)
        group by r.prompt_id
        order by min(r.step), r.prompt_id
        limit least(greatest(coalesce(p_limit, 500), 1), 1000)
    ) as p
$$;

create or replace function public.predictions_prompt_rollouts(
    p_job_id text, p_prompt_id text, p_limit integer default 1000, p_user_id uuid default null
)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(to_jsonb(r) - 'id' - 'user_id'
                              order by r.step, r.generation, r.group_index, r.completion_index), '[]'::jsonb)
    from (
        select * from public.training_rollouts as q
        where q.job_id = p_job_id and q.prompt_id = p_prompt_id
          and q.user_id = coalesce(p_user_id, auth.uid(), q.user_id)
        order by q.step, q.generation, q.group_index, q.completion_index
        limit least(greatest(coalesce(p_limit, 1000), 1), 1000)
    ) as r
$$;

create or replace function public.predictions_step_rollouts(
    p_job_id text, p_step integer, p_best boolean default true, p_limit integer default 5,
    p_user_id uuid default null
)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(to_jsonb(r) - 'id' - 'user_id' - 'rank' order by r.rank), '[]'::jsonb)
    from (
        select q.*, row_number() over (
                   order by q.reward is null,
                            case when p_best then q.reward end desc,
                            case when not p_best then q.reward end asc,
                            q.generation, q.group_index, q.completion_index) as rank
        from public.training_rollouts as q
        where q.job_id = p_job_id and q.step = p_step and q.user_id = coalesce(p_user_id, auth.uid(), q.user_id)
        order by rank
        limit least(greatest(coalesce(p_limit, 5), 1), 1000)
    ) as r
$$;

-- A trainer with an ingest key writes its rollouts through this, as its predictions.
create or replace function public.ingest_write_rollouts(p_key text, p_rows jsonb)
returns integer
language sql
volatile
security definer
set search_path = ''
as $$
    select public.ingest_upsert(
        'public.training_rollouts', '{user_id,job_id,generation,group_index,completion_index}',
        public.ingest_key_owner(p_key), p_rows
    )
$$;

revoke execute on function
    public.predictions_rollout_trends(text, uuid),
    public.predictions_rollout_prompts(text, integer, uuid),
    public.predictions_prompt_rollouts(text, text, integer, uuid),
    public.predictions_step_rollouts(text, integer, boolean, integer, uuid),
    public.ingest_write_rollouts(text, jsonb)
from public, anon;
grant execute on function
    public.predictions_rollout_trends(text, uuid),
    public.predictions_rollout_prompts(text, integer, uuid),
    public.predictions_prompt_rollouts(text, text, integer, uuid),
    public.predictions_step_rollouts(text, integer, boolean, integer, uuid)
to authenticated, service_role;
grant execute on function public.ingest_write_rollouts(text, jsonb) to anon, authenticated, service_role;
