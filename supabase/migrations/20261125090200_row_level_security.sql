-- Row-level security: a signed-in user (role authenticated) reads and writes only rows whose user_id
-- is theirs; anon gets nothing at all; service_role (the training machines' key) has BYPASSRLS and
-- writes for any user. `(select auth.uid())` is evaluated once per statement, not once per row.

alter table public.training_predictions enable row level security;
alter table public.training_jobs enable row level security;

-- Supabase grants every new table to anon by default; nothing here is public.
revoke all on public.training_predictions, public.training_jobs from anon;
grant select, insert, update, delete on public.training_predictions, public.training_jobs
    to authenticated, service_role;

drop policy if exists "own predictions are readable" on public.training_predictions;
create policy "own predictions are readable" on public.training_predictions
    for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "own predictions are insertable" on public.training_predictions;
create policy "own predictions are insertable" on public.training_predictions
    for insert to authenticated with check (user_id = (select auth.uid()));

drop policy if exists "own predictions are updatable" on public.training_predictions;
create policy "own predictions are updatable" on public.training_predictions
    for update to authenticated
    using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

drop policy if exists "own predictions are deletable" on public.training_predictions;
create policy "own predictions are deletable" on public.training_predictions
    for delete to authenticated using (user_id = (select auth.uid()));

drop policy if exists "own jobs are readable" on public.training_jobs;
create policy "own jobs are readable" on public.training_jobs
    for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "own jobs are insertable" on public.training_jobs;
create policy "own jobs are insertable" on public.training_jobs
    for insert to authenticated with check (user_id = (select auth.uid()));

drop policy if exists "own jobs are updatable" on public.training_jobs;
create policy "own jobs are updatable" on public.training_jobs
    for update to authenticated
    using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

drop policy if exists "own jobs are deletable" on public.training_jobs;
create policy "own jobs are deletable" on public.training_jobs
    for delete to authenticated using (user_id = (select auth.uid()));
