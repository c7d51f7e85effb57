-- training_predictions: one row per tracked sample per prediction round (see shared DESIGN.md).
--
-- Idempotent and append-only: it creates the table on an empty database, and on a database that
-- already holds the seed's table (no score columns, no natural key) it adds what is missing and keeps
-- every row; old rows keep null scores.

create table if not exists public.training_predictions (
    id uuid primary key default gen_random_uuid(),
    job_id text not null,
    user_id uuid not null,
    epoch integer not null,
    step integer not null,
    sample_index integer not null,
    prompt text not null,
    ground_truth text,
    prediction text not null,
    exact_match double precision,
    char_error_rate double precision,
    length_ratio double precision,
    word_overlap double precision,
    created_at timestamptz default now()
);

-- The seed's table predates the scores.
alter table public.training_predictions
    add column if not exists exact_match double precision,
    add column if not exists char_error_rate double precision,
    add column if not exists length_ratio double precision,
    add column if not exists word_overlap double precision,
    add column if not exists created_at timestamptz default now();

-- The seed's table may have been created without defaults: writers send neither id nor created_at.
alter table public.training_predictions alter column id set default gen_random_uuid();
alter table public.training_predictions alter column created_at set default now();

-- The natural key (job_id, step, sample_index) makes a retried or replayed write an update, never a
-- second row. Old data may already hold such duplicates (the seed's writer retried with plain
-- inserts), which would make the unique index fail. Nothing is deleted: every duplicate except the
-- newest of its key (latest created_at, then greatest id; the newest is what an upsert would have
-- kept) is moved to training_predictions_duplicates (created only then, readable by the service role
-- only), where it can be inspected or dropped by hand.
do $$
begin
    if not exists (
        select 1 from pg_indexes
        where schemaname = 'public' and indexname = 'training_predictions_natural_key'
    ) then
        if exists (
            select 1 from public.training_predictions
            group by job_id, step, sample_index having count(*) > 1
        ) then
            create table if not exists public.training_predictions_duplicates
                (like public.training_predictions including defaults);
            alter table public.training_predictions_duplicates enable row level security;
            revoke all on public.training_predictions_duplicates from anon, authenticated;
            with ranked as (
                select id, row_number() over (
                    partition by job_id, step, sample_index
                    order by created_at desc nulls last, id desc
                ) as position
                from public.training_predictions
            ), moved as (
                delete from public.training_predictions as p
                using ranked
                where p.id = ranked.id and ranked.position > 1
                returning p.*
            )
            insert into public.training_predictions_duplicates select * from moved;
        end if;
        create unique index training_predictions_natural_key
            on public.training_predictions (job_id, step, sample_index);
    end if;
end
$$;

-- What the dashboard filters and groups on; user_id is what row-level security filters on.
create index if not exists idx_training_predictions_job_epoch on public.training_predictions (job_id, epoch);
create index if not exists idx_training_predictions_job_step on public.training_predictions (job_id, step);
create index if not exists idx_training_predictions_user on public.training_predictions (user_id);

-- A rewritten row (a replayed or retried round) keeps its first owner, as in the embedded store: an
-- upsert from a service-role machine configured for another user updates the answer, not the owner.
create or replace function public.training_predictions_keep_owner()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    new.user_id := old.user_id;
    return new;
end
$$;

drop trigger if exists training_predictions_keep_owner on public.training_predictions;
create trigger training_predictions_keep_owner
    before update of user_id on public.training_predictions
    for each row when (new.user_id is distinct from old.user_id)
    execute function public.training_predictions_keep_owner();
