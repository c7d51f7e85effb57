"""The storage interface every backend implements, and the sign-in a store serving many users adds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from predictions.errors import StoreError
from predictions.store.records import (
    DEFAULT_PAGE,
    Job,
    PageQuery,
    PredictionPage,
    PredictionRow,
    RolloutRow,
    RolloutTrends,
    SeriesPoint,
    Trends,
)


@runtime_checkable
class Store(Protocol):
    """Where prediction rounds are kept. Every read is aggregated or paged by the backend itself."""

    description: str
    """Which store this is, for people: 'SQLite at .predictions/predictions.db'."""

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        """Upsert rows on (user_id, job_id, step, sample_index): a replayed write never duplicates a row."""

    def write_rollouts(self, rows: Sequence[RolloutRow]) -> None:
        """Upsert rollouts on (user_id, job_id, generation, group_index, completion_index): a replay never
        duplicates one; the per-step summary follows in the same transaction."""

    def write_series(self, points: Sequence[SeriesPoint]) -> None:
        """Upsert values the Trainer logged (loss, eval loss, learning rate), keyed (user_id, job_id, step,
        name): a replayed write never duplicates a point."""

    def start_job(
        self,
        job_id: str,
        *,
        name: str | None = None,
        model: str | None = None,
        config: dict[str, Any] | None = None,
        user_id: str | None = None,
        at: str | None = None,
        run: str | None = None,
        seq: int | None = None,
        run_number: int | None = None,
        tags: Sequence[str] | None = None,
        note: str | None = None,
    ) -> None:
        """Register a job as running (again, if it existed), keeping its first start time.

        `tags` and `note` are set only where the job has none yet: a resumed run (or a replayed start)
        never overwrites what its owner edited on the dashboard since.

        The job's status is the newest one set, by order rather than clock (docs/reliability.md,
        problem 10): `run` names the writer's process run, `seq` numbers its status calls and
        `run_number` places the run among the job's runs (1 fresh, one more than the run whose
        checkpoint it resumed). Within the current run the higher `seq` wins; between runs the higher
        `run_number`; where that cannot tell, a run the store has not heard from yet is the newest and
        any other run's call is older (a replayed start never undoes a later finish). A call without
        a run is ordered by `at` (ISO-8601 UTC, default now), the writer's clock."""

    def finish_job(
        self,
        job_id: str,
        *,
        status: str = "finished",
        at: str | None = None,
        stop_reason: dict | None = None,
        run: str | None = None,
        seq: int | None = None,
        run_number: int | None = None,
        user_id: str | None = None,
    ) -> None:
        """Mark a job finished, stopped or failed, unless a newer status is recorded (`start_job`).

        `stop_reason` (JSON: the early-stop rule's `StopReason.as_dict()`, {"metric", "rounds", "step"}, or
        another callback's `TrainerStop.as_dict()`, which adds `by`) is kept with a `stopped` status, and
        dropped when a later status replaces it. `user_id` names the job's owner, as
        `start_job`'s does; without it, the owner this store started the job for, else its own user."""

    def record_missing(self, job_id: str, rows: int, *, run: str, user_id: str | None = None) -> None:
        """Record that the writer's run `run` could keep `rows` of the job's rows nowhere (the store
        did not take them and the local outbox could not be written). Set per run, not added, so a
        retried or repeated call never counts twice; the job's `rows_missing` is the sum over its runs.
        Creates the job when it does not exist yet (its start may be among what was lost)."""

    def delete_job(self, job_id: str, *, user_id: str | None = None) -> None:
        """Delete one of the caller's jobs and all its rows; StoreError when the caller has no such job.

        `user_id` names the owner where a store shows many (`Job.user_id`, for an admin's store);
        row-level security still refuses anyone but the owner.
        """

    def set_job_details(
        self,
        job_id: str,
        *,
        tags: Sequence[str] | None = None,
        note: str | None = None,
        user_id: str | None = None,
    ) -> None:
        """Replace one of the caller's jobs' tags and/or note (None leaves one as it is, [] and "" clear
        it), checked by `predictions.store.job_details` (ConfigError) and made storable. StoreError when
        the caller has no such job: only its owner may change them (row-level security on Supabase).
        `user_id` names the owner where a store shows many, as in `delete_job`."""

    def owns(self, job: Job) -> bool:
        """Whether the caller is the job's owner, who may change its tags and note: the signed-in or
        configured user; on the embedded store the local user, who owns everything."""

    def list_jobs(self, *, limit: int = 1000, search: str | None = None) -> list[Job]:
        """The `limit` (1 to 1000) most recently active visible jobs, including jobs with prediction rows
        only; with `search`, only those whose id, name, model or a tag holds that text, in any case. An
        indexed read of a job-level summary kept with every write: the picker asks for what it shows."""

    def find_job(self, job_id: str) -> Job | None:
        """One visible job as `list_jobs` gives it, however long ago it was active; None if there is none."""

    def jobs_version(self) -> tuple:
        """A few values that change whenever the job list would: a job started, finished or deleted, a
        round written. Cheap (index reads), so the dashboard polls it and re-reads the list on a change."""

    def trends(self, job_id: str) -> Trends:
        """Aggregates per round (`TREND_COLUMNS`), ordered by step, and the overall improvement."""

    def rounds(self, job_id: str) -> pd.DataFrame:
        """The prediction rounds of a job (`ROUND_COLUMNS`), ordered by step."""

    def training_series(self, job_id: str) -> pd.DataFrame:
        """The values the Trainer logged for a job (`SERIES_COLUMNS`, long form), ordered by step; at most
        `MAX_SERIES_POINTS`."""

    def sample_history(self, job_id: str, sample_index: int) -> pd.DataFrame:
        """One sample's rows (`PREDICTION_COLUMNS`) in every round, ordered by step."""

    def rows_after(
        self, job_id: str, after: tuple[int, int] | None = None, *, limit: int = 1000
    ) -> pd.DataFrame:
        """Up to `limit` (at most 1,000) of a job's rows (`PREDICTION_COLUMNS`) in (step, sample_index)
        order, after the row keyed `after`: keyset pages, so reading a whole job stays linear."""

    def row_values_after(
        self,
        job_id: str,
        after: tuple[int, int] | None = None,
        *,
        limit: int = 1000,
        scores: Sequence[str] = (),
    ) -> list[tuple]:
        """The rows `rows_after` reads as plain tuples: each row's `PREDICTION_COLUMNS` values (metadata
        as JSON text with sorted keys, or None: the same text from every store), then the values of the
        user scores named in `scores`, in that order (None where a row has none). For a reader that
        writes rows out one by one (the CSV export): no frame, and no JSON parsed for scores it does
        not name."""

    def sample_matrix(
        self,
        job_id: str,
        metric: str = "char_error_rate",
        *,
        samples: Sequence[int] | None = None,
        steps: Sequence[int] | None = None,
    ) -> pd.DataFrame:
        """One metric for every sample and round (`MATRIX_COLUMNS`), in long form for a heatmap, ordered
        by sample then step; only the given `samples` and `steps` (rounds) when named: what one page of
        the heatmap draws."""

    def sample_summary(self, job_id: str, metric: str = "char_error_rate") -> pd.DataFrame:
        """One row per sample of the job (`SAMPLE_SUMMARY_COLUMNS`), by sample index, aggregated by the
        store: what the Samples page lists and orders its samples by, without reading every value."""

    def predictions_page(self, job_id: str, query: PageQuery = DEFAULT_PAGE) -> PredictionPage:
        """A page of a job's rows (`PREDICTION_COLUMNS`): the round, filters, order and slice that
        `query` names (see `PageQuery`), with how many rows match in all."""

    def group_trends(self, job_id: str, field: str) -> pd.DataFrame:
        """Per round and per value of the rows' metadata `field` (`GROUP_COLUMNS` and a user scorer's
        `avg_<name>`), ordered by step then group; rows without the field form the group None."""

    def rollout_trends(self, job_id: str) -> RolloutTrends:
        """The job's rollouts aggregated per step, and per step and reward function, from the summary."""

    def rollout_prompts(self, job_id: str, *, limit: int = 500) -> pd.DataFrame:
        """The job's prompts (`ROLLOUT_PROMPT_COLUMNS`), first seen first, at most `limit` (1 to 1000)."""

    def prompt_rollouts(self, job_id: str, prompt_id: str, *, limit: int = 1000) -> pd.DataFrame:
        """One prompt's rollouts (`ROLLOUT_COLUMNS`) at every step, by step, group and completion."""

    def step_rollouts(self, job_id: str, step: int, *, best: bool = True, limit: int = 5) -> pd.DataFrame:
        """A step's `limit` rollouts with the highest (`best`) or lowest total reward (nulls last)."""

    def outbox_key(self, user_id: str | None = None) -> tuple[str, str]:
        """(store, owner) keying this store's calls in the local outbox: which store, written as whom
        (`user_id`: a run's own owner, where the store writes for several)."""

    def outbox_aliases(self) -> tuple[str, ...]:
        """Other owner names of the same owner (an ingest key's, before its user was known)."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class SignIn(Protocol):
    """What a store serving many users adds for the dashboard: who is signed in, and signing in.

    Supabase with an anon key needs it (row-level security shows a signed-out user nothing); the
    embedded store has one local user and does not implement it.
    """

    signed_in_email: str | None
    """The signed-in user's email, None while nobody is."""

    @property
    def requires_sign_in(self) -> bool:
        """True while nobody is signed in and the store would show nothing."""

    def sign_in(self, email: str, password: str) -> None:
        """Sign in; raises `AuthError` with a message fit to show when refused or unreachable."""

    def resume(self, access_token: str, refresh_token: str) -> None:
        """Resume a session a browser kept (`session_tokens`); `AuthError` when it has ended."""

    def session_tokens(self) -> tuple[str, str] | None:
        """The signed-in session's current (access, refresh) tokens, for the browser to keep."""

    def still_signed_in(self) -> bool:
        """False once the session ended, here or in another tab or browser."""

    def sign_out(self) -> None:
        """End the session everywhere it is used; `AuthError` when only this store could forget it."""


def sign_in_of(store: Store) -> SignIn | None:
    """The store's sign-in, or None for a store without users (the embedded SQLite store)."""
    return store if isinstance(store, SignIn) else None


def signed_in_email(store: Store) -> str | None:
    """Who is signed in to the store; None for a store without users or while nobody is."""
    account = sign_in_of(store)
    return account.signed_in_email if account is not None else None


@runtime_checkable
class Migrated(Protocol):
    """A store whose schema someone else upgrades (Supabase: `supabase db push`), so it can be older than
    this package; the embedded store upgrades its own file and does not implement it."""

    def schema_problem(self) -> str | None:
        """What the database lacks that this package needs, and the fix; None when it has it all.
        Raises `StoreError` when the database cannot be asked."""


def schema_problem_of(store: Store) -> str | None:
    """The store's missing migrations and their fix; None when current, for a store that upgrades
    itself, or when the database cannot be asked now (its reads then say why)."""
    if not isinstance(store, Migrated):
        return None
    try:
        return store.schema_problem()
    except StoreError:
        return None
