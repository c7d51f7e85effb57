-- A per-round summary, so the dashboard's trends, rounds and job list read one row per round
-- instead of aggregating every prediction row on each refresh (10,000 rows a job at 100 rounds x 100
-- samples). Statement-level triggers on training_predictions recompute each round a statement
-- touched, whoever writes, so the summary can never drift from the rows.
--
-- The summary keeps sums and counts per metric rather than averages, and is keyed per owner: the
-- functions combine an owner's rows exactly, and row-level security filters them like the rows.

create table if not exists public.training_rounds (
    user_id uuid not null,
    job_id text not null,
    step integer not null,
    epoch integer not null,
    sample_count integer not null,
    scored_count integer not null,
    sum_exact_match double precision,
    count_exact_match integer not null,
    sum_char_error_rate double precision,
    count_char_error_rate integer not null,
    sum_length_ratio double precision,
    count_length_ratio integer not null,
    sum_word_overlap double precision,
    count_word_overlap integer not null,
    min_char_error_rate double precision,
    max_char_error_rate double precision,
    created_at timestamptz,  -- null for a round of seed rows without created_at (20261206203202)
    last_write timestamptz,
    primary key (job_id, step, user_id)
);
create index if not exists training_rounds_user_id on public.training_rounds (user_id);

alter table public.training_rounds enable row level security;
revoke all on public.training_rounds from public, anon, authenticated;
grant select on public.training_rounds to authenticated;
grant all on public.training_rounds to service_role;
drop policy if exists "own rounds are readable" on public.training_rounds;
create policy "own rounds are readable" on public.training_rounds
    for select to authenticated using (user_id = (select auth.uid()));

-- The distinct rounds named in a jsonb array of {user_id, job_id, step}.
create or replace function public.training_rounds_keys(p_keys jsonb)
returns table (user_id uuid, job_id text, step integer)
language sql
immutable
set search_path = ''
as $$
    select distinct (k ->> 'user_id')::uuid, k ->> 'job_id', (k ->> 'step')::integer
    from jsonb_array_elements(p_keys) as k
$$;
revoke execute on function public.training_rounds_keys(jsonb) from public, anon, authenticated;

-- Recompute the summary of the given rounds from their rows; a round with no rows left disappears.
-- Security definer: the summary is written by this trigger alone, never by a user directly.
create or replace function public.training_rounds_refresh(p_keys jsonb, p_lock boolean default true)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
    -- Writers of the same job wait for each other, so each recomputes from the other's commit.
    if p_lock then
        perform pg_advisory_xact_lock(hashtextextended(jobs.job_id, 20261125))
        from (select distinct k ->> 'job_id' as job_id from jsonb_array_elements(p_keys) as k order by 1) as jobs;
    end if;
    delete from public.training_rounds as r
    using public.training_rounds_keys(p_keys) as t
    where r.user_id = t.user_id and r.job_id = t.job_id and r.step = t.step;
    insert into public.training_rounds
    select p.user_id, p.job_id, p.step, max(p.epoch), count(*), count(p.char_error_rate),
           sum(p.exact_match), count(p.exact_match), sum(p.char_error_rate), count(p.char_error_rate),
           sum(p.length_ratio), count(p.length_ratio), sum(p.word_overlap), count(p.word_overlap),
           min(p.char_error_rate), max(p.char_error_rate), min(p.created_at), max(p.created_at)
    from public.training_predictions as p
    join public.training_rounds_keys(p_keys) as t
        on p.user_id = t.user_id and p.job_id = t.job_id and p.step = t.step
    group by p.user_id, p.job_id, p.step;
end
$$;
revoke execute on function public.training_rounds_refresh(jsonb, boolean) from public, anon, authenticated;

create or replace function public.training_rounds_after_write()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    keys jsonb := '[]'::jsonb;
begin
    -- Transition tables exist per operation; plpgsql plans each branch only when it runs.
    if tg_op in ('INSERT', 'UPDATE') then
        keys := keys || (select coalesce(jsonb_agg(distinct jsonb_build_object(
            'user_id', user_id, 'job_id', job_id, 'step', step)), '[]') from new_rows);
    end if;
    if tg_op in ('UPDATE', 'DELETE') then
        keys := keys || (select coalesce(jsonb_agg(distinct jsonb_build_object(
            'user_id', user_id, 'job_id', job_id, 'step', step)), '[]') from old_rows);
    end if;
    perform public.training_rounds_refresh(keys);
    return null;
end
$$;
revoke execute on function public.training_rounds_after_write() from public, anon, authenticated;

drop trigger if exists training_rounds_on_insert on public.training_predictions;
create trigger training_rounds_on_insert after insert on public.training_predictions
    referencing new table as new_rows for each statement execute function public.training_rounds_after_write();
drop trigger if exists training_rounds_on_update on public.training_predictions;
create trigger training_rounds_on_update after update on public.training_predictions
    referencing old table as old_rows new table as new_rows
    for each statement execute function public.training_rounds_after_write();
drop trigger if exists training_rounds_on_delete on public.training_predictions;
create trigger training_rounds_on_delete after delete on public.training_predictions
    referencing old table as old_rows for each statement execute function public.training_rounds_after_write();

create or replace function public.training_rounds_after_truncate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    truncate public.training_rounds;
    return null;
end
$$;
revoke execute on function public.training_rounds_after_truncate() from public, anon, authenticated;
drop trigger if exists training_rounds_on_truncate on public.training_predictions;
create trigger training_rounds_on_truncate after truncate on public.training_predictions
    for each statement execute function public.training_rounds_after_truncate();

-- Rows stored before this migration (the seed's table, earlier runs) get their summary now.
select public.training_rounds_refresh(
    (select coalesce(jsonb_agg(jsonb_build_object('user_id', user_id, 'job_id', job_id, 'step', step)), '[]')
     from (select distinct user_id, job_id, step from public.training_predictions) as rounds),
    p_lock => false
);

-- The same reads as before, from the summary. Averages are exact: sums over counts, nulls ignored.
create or replace function public.predictions_trends(p_job_id text)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    with rounds as (
        select max(epoch) as epoch, step, sum(sample_count)::integer as sample_count,
               sum(scored_count)::integer as scored_count,
               sum(sum_exact_match) / nullif(sum(count_exact_match), 0) as avg_exact_match,
               sum(sum_char_error_rate) / nullif(sum(count_char_error_rate), 0) as avg_char_error_rate,
               sum(sum_length_ratio) / nullif(sum(count_length_ratio), 0) as avg_length_ratio,
               sum(sum_word_overlap) / nullif(sum(count_word_overlap), 0) as avg_word_overlap,
               min(min_char_error_rate) as min_char_error_rate, max(max_char_error_rate) as max_char_error_rate
        from public.training_rounds
        where job_id = p_job_id
        group by step
        order by step
        limit 10000
    ), scored as (
        select count(*) as round_count,
               (array_agg(avg_char_error_rate order by step))[1] as first_cer,
               (array_agg(avg_char_error_rate order by step desc))[1] as last_cer
        from rounds
        where avg_char_error_rate is not null
    )
    select jsonb_build_object(
        'rounds', coalesce((select jsonb_agg(to_jsonb(rounds) order by rounds.step) from rounds), '[]'::jsonb),
        'overall_improvement', (
            select case when round_count < 2 or first_cer = 0 then null
                        else (first_cer - last_cer) / first_cer * 100 end
            from scored
        )
    )
$$;

create or replace function public.predictions_rounds(p_job_id text)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    select coalesce(jsonb_agg(to_jsonb(r) order by r.step), '[]'::jsonb)
    from (
        select max(epoch) as epoch, step, sum(sample_count)::integer as sample_count, min(created_at) as created_at
        from public.training_rounds
        where job_id = p_job_id
        group by step
        order by step
        limit 10000
    ) as r
$$;

create or replace function public.predictions_list_jobs(p_limit integer default 1000)
returns jsonb
language sql
stable
security invoker
set search_path = ''
set timezone = 'UTC'
as $$
    with activity as (
        select job_id, max(epoch) as latest_epoch, max(step) as latest_step,
               count(distinct step) as round_count, max(last_write) as last_write
        from public.training_rounds
        group by job_id
    ), ids as (
        select id from public.training_jobs
        union
        select job_id from activity
    ), listed as (
        select ids.id, coalesce(j.status, 'unknown') as status, j.name, j.model, j.user_id, j.config,
               j.started_at, j.updated_at, j.finished_at, a.latest_epoch, a.latest_step,
               coalesce(a.round_count, 0) as round_count,
               greatest(j.updated_at, a.last_write) as last_active
        from ids
        left join public.training_jobs as j on j.id = ids.id
        left join activity as a on a.job_id = ids.id
        order by last_active desc nulls last, ids.id
        limit least(greatest(coalesce(p_limit, 1000), 1), 1000)
    )
    select coalesce(
        jsonb_agg(to_jsonb(listed) - 'last_active' order by listed.last_active desc nulls last, listed.id),
        '[]'::jsonb
    )
    from listed
$$;
