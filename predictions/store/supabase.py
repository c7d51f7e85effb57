"""The Supabase backend: bulk upserts through PostgREST, and every read one SQL function via `.rpc()`.

Row-level security decides what a caller sees. A training machine writes with the anon key and an
ingest key (PREDICTIONS_INGEST_KEY), as the key's user; an admin's machine may use the service-role
key, which sees and writes every row, owned by the user named in PREDICTIONS_USER_ID. The anon key
on the dashboard sees nothing until a user signs in with Supabase Auth, then that user's rows only;
the session is refreshed before it expires. The SQL functions live in `supabase/migrations/`; they
aggregate in Postgres and return one JSON value each, so PostgREST's row cap never truncates a read.

This module is the store (what to write and read, and whose rows they are); `supabase_rest` sends
requests and names their errors, `supabase_session` keeps the signed-in user's session fresh.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from predictions.errors import AuthError, ConfigError, StoreError
from predictions.scoring.metrics import METRICS
from predictions.store import ingest_keys
from predictions.store.checks import (
    check_count,
    check_group_field,
    check_limit,
    check_metric,
    check_status,
)
from predictions.store.frames import (
    GROUP_COLUMNS,
    MATRIX_COLUMNS,
    PREDICTION_COLUMNS,
    ROLLOUT_PROMPT_COLUMNS,
    ROUND_COLUMNS,
    SAMPLE_SUMMARY_COLUMNS,
    SERIES_COLUMNS,
    TREND_COLUMNS,
    clean_scores,
    group_frame,
    records_values,
    reward_trends_frame,
    rollout_frame,
    rollout_steps_frame,
    to_frame,
    with_custom_aggregates,
    with_score_columns,
)
from predictions.store.identity import ingest_key_owner, supabase_identity
from predictions.store.ingest_keys import IngestKey
from predictions.store.job_details import check_note, check_tags, job_tags
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
    make_trends,
    stop_reason_from_dict,
)
from predictions.store.settings import StoreSettings
from predictions.store.storable import storable_details
from predictions.store.supabase_rest import Rest, check_url, key_role, rest_client
from predictions.store.supabase_schema import database_version, schema_problem
from predictions.store.supabase_session import USER_ID_ENV, Session, check_user_id

logger = logging.getLogger(__name__)

NATURAL_KEY = "user_id,job_id,step,sample_index"
JOB_KEY = "user_id,id"
ROLLOUT_KEY = "user_id,job_id,generation,group_index,completion_index"
SERIES_KEY = "user_id,job_id,step,name"
"""Job ids are scoped per owner: both keys start with the owner (shared DESIGN.md)."""
CHUNK_ROWS = 1000
"""Rows per upsert request: one round is one request; a huge write is split to keep bodies small."""

INGEST_UPSERTS = {
    "training_predictions": "ingest_write_predictions",
    "training_jobs": "ingest_start_job",
    "training_rollouts": "ingest_write_rollouts",
    "training_series": "ingest_write_series",
}
"""The function that does a table's upsert for an ingest key (a trainer holds no table rights)."""

JOB_FIELDS = (
    "id",
    "status",
    "name",
    "model",
    "user_id",
    "started_at",
    "updated_at",
    "finished_at",
    "latest_epoch",
    "latest_step",
    "round_count",
    "last_active",
    "stop_reason",
    "rows_missing",
    "note",
)


def json_number(value: Any) -> Any:
    """A metric as JSON can carry it: NaN and infinities become null, numpy scalars plain floats."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def prediction_record(row: PredictionRow, owner: str) -> dict[str, Any]:
    record = {
        "job_id": row.job_id,
        "user_id": owner,
        "epoch": int(row.epoch),
        "step": int(row.step),
        "sample_index": int(row.sample_index),
        "prompt": row.prompt,
        "ground_truth": row.ground_truth,
        "prediction": row.prediction,
        "text_replacements": int(row.text_replacements),
        "run": row.run,
    }
    record.update({metric: json_number(getattr(row, metric)) for metric in METRICS})
    record["scores"] = clean_scores(row.scores)
    record["metadata"] = json.loads(json.dumps(row.metadata, default=str)) if row.metadata else None
    return record


def rollout_record(row: RolloutRow, owner: str) -> dict[str, Any]:
    record = {
        name: getattr(row, name) for name in ("job_id", "prompt_id", "prompt", "completion", "ground_truth")
    }
    for name in ("step", "generation", "group_index", "completion_index", "completion_tokens"):
        record[name] = int(getattr(row, name))
    record.update(user_id=owner, truncated=bool(row.truncated), text_replacements=int(row.text_replacements))
    record["run"] = row.run
    record.update({metric: json_number(getattr(row, metric)) for metric in (*METRICS, "reward")})
    record["rewards"] = clean_scores(row.rewards) or {}
    record["scores"] = clean_scores(row.scores)
    return record


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


class SupabaseStore:
    """A Supabase project through its REST and Auth APIs: the team store, shared by many machines and users.

    `key` is the project's anon (publishable) key, with `ingest_key` on a training machine (rows
    are written as the key's user) or on the dashboard, where a user signs in with `sign_in()` (or
    gives a session's `access_token`, with its `refresh_token` so it can be renewed) and then sees
    only their own jobs. An admin may use the service-role key (rows written for `user_id`, default
    PREDICTIONS_USER_ID): it bypasses row-level security and is a secret.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        user_id: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        ingest_key: str | None = None,
        timeout_s: float = 30.0,
        chunk_rows: int = CHUNK_ROWS,
    ):
        self.url = check_url(url)
        self.description = f"Supabase at {self.url}"
        self.key_role = key_role(key)
        if ingest_key and self.key_role != "anon":
            raise ConfigError(
                f"{ingest_keys.INGEST_KEY_ENV} goes with the project's publishable (anon) key, and "
                f"SUPABASE_KEY is a {self.key_role} key: set SUPABASE_KEY to the publishable key "
                "(Project Settings > API Keys), or drop the ingest key to write as an admin with "
                f"{USER_ID_ENV}"
            )
        self.chunk_rows = chunk_rows
        self._schema_current = False
        self._user_id = check_user_id(user_id or StoreSettings.from_env().user_id or None)
        self._job_owners: dict[str, str] = {}
        self._ingest_key = ingest_key or None
        self._ingest_owner: str | None = None
        self._session = Session(self.url, key, self.description, self.key_role)
        if access_token and refresh_token:
            self._session.restore(access_token, refresh_token)
        elif access_token:
            self._session.adopt(access_token)
        self._rest = Rest(
            rest_client(self.url, key, timeout_s=timeout_s),
            key,
            self.description,
            session_token=self._session.token,
            needs_sign_in=lambda: self.requires_sign_in and not self._ingest_key,
            refused_key=lambda: ingest_keys.INGEST_KEY_ENV if self._ingest_key else None,
        )
        if self._ingest_key:
            self._check_ingest_key()

    # sign-in (dashboard, anon key)

    @property
    def requires_sign_in(self) -> bool:
        """True with an anon key while nobody is signed in: row-level security then shows nothing."""
        return self._session.requires_sign_in

    @property
    def signed_in_email(self) -> str | None:
        """The signed-in user's email address, when a session names one."""
        return self._session.email

    def sign_in(self, email: str, password: str) -> None:
        """Sign in with Supabase Auth (email and password); later calls see that user's rows only.

        Raises AuthError with a message fit to show when the credentials are refused or Supabase Auth
        cannot be reached.
        """
        self._session.sign_in(email, password)

    def resume(self, access_token: str, refresh_token: str) -> None:
        """Resume a signed-in session a browser kept (see `session_tokens`); AuthError when it ended."""
        self._session.restore(access_token, refresh_token)

    def session_tokens(self) -> tuple[str, str] | None:
        """The signed-in session's (access, refresh) tokens, current, for a browser to keep."""
        return self._session.tokens()

    def still_signed_in(self) -> bool:
        """False once the session was ended, here or elsewhere (a sign-out in another tab)."""
        return self._session.alive()

    def sign_out(self) -> None:
        """End the signed-in session in every browser and tab, not only this store's."""
        self._session.sign_out()

    # ingest keys (a signed-in user manages them; a trainer writes with one)

    def create_ingest_key(self, label: str) -> str:
        """A new write key for training machines, owned by the signed-in user. The secret is returned
        now and never again: only its hash is stored."""
        secret = ingest_keys.new_secret()
        self._function("ingest_key_create", p_label=ingest_keys.check_label(label), p_secret=secret)
        return secret

    def list_ingest_keys(self) -> list[IngestKey]:
        """The signed-in user's keys, oldest first, revoked ones included; never a secret."""
        return [IngestKey(**record) for record in self._function("ingest_key_list")]

    def revoke_ingest_key(self, key_id_or_label: str) -> None:
        """Revoke an active key by its id or label: writes with it are refused from the next request."""
        self._function("ingest_key_revoke", p_key=str(key_id_or_label))

    def _check_ingest_key(self) -> None:
        """Ask whose key this is before any training step: a wrong or revoked key is an AuthError now."""
        try:
            whoami = self._function("ingest_whoami", p_key=self._ingest_key)
        except AuthError as error:  # its text ends with the server's hint: where a valid key comes from
            raise AuthError(
                f"{ingest_keys.INGEST_KEY_ENV} is refused by {self.description}: {error}"
            ) from error
        self._ingest_owner = whoami["user_id"]
        self.ingest_key_label: str = whoami["label"]

    # writes

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        """One bulk upsert on the natural key (the last of duplicate keys wins, as in SQLite)."""
        records = {}
        for row in rows:
            owner = self._owner(row.user_id)
            records[owner, row.job_id, row.step, row.sample_index] = prediction_record(row, owner)
        batch = list(records.values())
        for start in range(0, len(batch), self.chunk_rows):
            self._upsert("training_predictions", batch[start : start + self.chunk_rows], NATURAL_KEY)

    def write_rollouts(self, rows: Sequence[RolloutRow]) -> None:
        """One bulk upsert on the rollouts' natural key (the last of duplicate keys wins)."""
        records = {}
        for row in rows:
            owner = self._owner(row.user_id)
            key = (owner, row.job_id, row.generation, row.group_index, row.completion_index)
            records[key] = rollout_record(row, owner)
        batch = list(records.values())
        for start in range(0, len(batch), self.chunk_rows):
            self._upsert("training_rollouts", batch[start : start + self.chunk_rows], ROLLOUT_KEY)

    def write_series(self, points: Sequence[SeriesPoint]) -> None:
        """One bulk upsert of logged values on (owner, job, step, name); NaN and infinities are skipped."""
        records = {}
        for point in points:
            value = json_number(point.value)
            if value is not None:
                owner = self._owner(point.user_id)
                key = (owner, point.job_id, int(point.step), point.name)
                records[key] = dict(zip(("user_id", "job_id", "step", "name"), key, strict=True))
                records[key] |= {"value": value, "run": point.run}
        batch = list(records.values())
        for start in range(0, len(batch), self.chunk_rows):
            self._upsert("training_series", batch[start : start + self.chunk_rows], SERIES_KEY)

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
        """Upsert the job as running; columns not given are left as they are (a trigger keeps the
        first start time and sets updated_at/finished_at from the database clock, and keeps a newer
        status: training_jobs_status_order; another keeps tags and a note the job has:
        training_jobs_details)."""
        owner = self._owner(user_id)
        record: dict[str, Any] = {"id": job_id, "user_id": owner, "status": "running"}
        record |= {"status_at": at or utc_now(), "status_run": run, "status_seq": seq}
        record["status_run_number"] = run_number
        tags, note = storable_details(tags, note)
        given = {"name": name, "model": model, "tags": tags, "note": note}
        if config is not None:
            given["config"] = json.loads(json.dumps(config, default=str))
        record.update({column: value for column, value in given.items() if value is not None})
        self._upsert("training_jobs", [record], JOB_KEY)
        self._job_owners[job_id] = owner  # only once started: a refused start binds no owner

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
        """Upserted, so a finish replayed before its start still leaves the job finished; the status
        only moves when the call is newer (a trigger decides, and keeps a `stopped` job's reason with
        its status). The owner: `user_id` (a replayed call's, as it was written), else the one this
        store started the job for, else the store's own."""
        check_status(status)
        owner = self._owner(user_id) if user_id else self._job_owner(job_id)
        record: dict[str, Any] = {"id": job_id, "user_id": owner, "status": status}
        record |= {"status_at": at or utc_now(), "status_run": run, "status_seq": seq}
        record["status_run_number"] = run_number
        if status == "stopped" and stop_reason:
            record["stop_reason"] = json.loads(json.dumps(stop_reason, default=str))
        self._upsert("training_jobs", [record], JOB_KEY)

    def record_missing(self, job_id: str, rows: int, *, run: str, user_id: str | None = None) -> None:
        """This run's entry of the job's `rows_missing_runs`; a trigger merges it with the other runs'
        and sums them into `rows_missing` (training_jobs_rows_missing)."""
        owner = self._owner(user_id) if user_id else self._job_owner(job_id)
        record = {"id": job_id, "user_id": owner, "rows_missing_runs": {str(run): check_count(rows)}}
        self._upsert("training_jobs", [record], JOB_KEY)

    def delete_job(self, job_id: str, *, user_id: str | None = None) -> None:
        """Delete one of the owner's jobs and all its rows; another owner's job is refused (StoreError).
        Its runs are recorded (`training_deleted_runs`): their later writes are dropped."""
        self._rpc("delete_job", p_job_id=job_id, p_user_id=check_user_id(user_id) or self._job_owner(job_id))

    def set_job_details(
        self,
        job_id: str,
        *,
        tags: Sequence[str] | None = None,
        note: str | None = None,
        user_id: str | None = None,
    ) -> None:
        """Through `predictions_set_job_details`, as the caller: row-level security refuses anyone but
        the job's owner (StoreError "no job ... of yours")."""
        tags, note = storable_details(check_tags(tags), check_note(note))
        given = {"p_tags": tags, "p_note": note}
        owner = check_user_id(user_id) or self._job_owner(job_id)
        self._rpc(
            "set_job_details",
            p_job_id=job_id,
            p_user_id=owner,
            **{k: v for k, v in given.items() if v is not None},
        )

    def owns(self, job: Job) -> bool:
        """The signed-in (or configured) user's jobs only; an admin's store naming nobody owns none."""
        owner = self._ingest_owner or self._session.user_id or self._user_id
        return owner is not None and job.user_id == owner

    # reads

    def list_jobs(self, *, limit: int = 1000, search: str | None = None) -> list[Job]:
        return self._jobs(p_limit=check_limit(limit), p_search=search or None)

    def find_job(self, job_id: str) -> Job | None:
        found = self._jobs(p_limit=1, p_job_id=job_id)
        return found[0] if found else None

    def _jobs(self, **params: Any) -> list[Job]:
        jobs = []
        for record in self._rpc("list_jobs", p_user_id=self._reader(), **params):
            fields = {name: record.get(name) for name in JOB_FIELDS}
            fields["stop_reason"] = stop_reason_from_dict(fields["stop_reason"])
            fields |= {"rows_missing": int(fields["rows_missing"] or 0), "tags": job_tags(record.get("tags"))}
            jobs.append(Job(**fields))
        return jobs

    def jobs_version(self) -> tuple:
        return tuple(self._rpc("jobs_version", p_user_id=self._reader()))

    def trends(self, job_id: str) -> Trends:
        result = self._rpc("trends", p_job_id=job_id, p_user_id=self._reader())
        improvement = result["overall_improvement"]
        records = result["rounds"]
        rounds = with_custom_aggregates(
            to_frame(records, TREND_COLUMNS), [record["scores"] for record in records]
        )
        improvement = float(improvement) if improvement is not None else None
        return make_trends(job_id, rounds, improvement, result.get("config"))

    def group_trends(self, job_id: str, field: str) -> pd.DataFrame:
        check_group_field(field)
        records = self._rpc("group_trends", p_job_id=job_id, p_field=field, p_user_id=self._reader())
        return group_frame(to_frame(records, GROUP_COLUMNS), [record["scores"] for record in records])

    def rounds(self, job_id: str) -> pd.DataFrame:
        return to_frame(self._rpc("rounds", p_job_id=job_id, p_user_id=self._reader()), ROUND_COLUMNS)

    def training_series(self, job_id: str) -> pd.DataFrame:
        records = self._rpc("training_series", p_job_id=job_id, p_user_id=self._reader())
        return to_frame(records, SERIES_COLUMNS)

    def sample_history(self, job_id: str, sample_index: int) -> pd.DataFrame:
        records = self._rpc(
            "sample_history", p_job_id=job_id, p_sample_index=int(sample_index), p_user_id=self._reader()
        )
        return with_score_columns(
            to_frame(records, PREDICTION_COLUMNS), [record.get("scores") for record in records]
        )

    def rows_after(
        self, job_id: str, after: tuple[int, int] | None = None, *, limit: int = 1000
    ) -> pd.DataFrame:
        records = self._rows_after(job_id, after, limit)
        return with_score_columns(
            to_frame(records, PREDICTION_COLUMNS), [record.get("scores") for record in records]
        )

    def row_values_after(
        self,
        job_id: str,
        after: tuple[int, int] | None = None,
        *,
        limit: int = 1000,
        scores: Sequence[str] = (),
    ) -> list[tuple]:
        for name in scores:
            check_metric(name)
        return records_values(self._rows_after(job_id, after, limit), scores)

    def _rows_after(self, job_id: str, after: tuple[int, int] | None, limit: int) -> list[dict[str, Any]]:
        step, sample = (int(after[0]), int(after[1])) if after is not None else (None, None)
        return self._rpc(
            "rows_after",
            p_job_id=job_id,
            p_after_step=step,
            p_after_sample=sample,
            p_limit=check_limit(limit),
            p_user_id=self._reader(),
        )

    def sample_matrix(
        self,
        job_id: str,
        metric: str = "char_error_rate",
        *,
        samples: Sequence[int] | None = None,
        steps: Sequence[int] | None = None,
    ) -> pd.DataFrame:
        check_metric(metric)
        columns = self._rpc(
            "sample_matrix",
            p_job_id=job_id,
            p_metric=metric,
            p_user_id=self._reader(),
            p_samples=None if samples is None else [int(value) for value in samples],
            p_steps=None if steps is None else [int(value) for value in steps],
        )
        return to_frame(list(zip(*(columns[name] for name in MATRIX_COLUMNS), strict=True)), MATRIX_COLUMNS)

    def sample_summary(self, job_id: str, metric: str = "char_error_rate") -> pd.DataFrame:
        check_metric(metric)
        records = self._rpc("sample_summary", p_job_id=job_id, p_metric=metric, p_user_id=self._reader())
        return to_frame(records, SAMPLE_SUMMARY_COLUMNS)

    def predictions_page(self, job_id: str, query: PageQuery = DEFAULT_PAGE) -> PredictionPage:
        metric, low, high = query.metric_range or (None, None, None)
        result = self._rpc(
            "page",
            p_job_id=job_id,
            p_step=query.step,
            p_wrong_only=query.wrong_only,
            p_sort_by=query.sort_by,
            p_descending=query.descending,
            p_limit=query.limit,
            p_offset=query.offset,
            p_user_id=self._reader(),
            p_metric=metric,
            p_low=json_number(low),
            p_high=json_number(high),
        )
        records = result["rows"]
        rows = with_score_columns(
            to_frame(records, PREDICTION_COLUMNS), [record.get("scores") for record in records]
        )
        return PredictionPage(rows, int(result["total_count"]), query.offset, query.limit)

    def rollout_trends(self, job_id: str) -> RolloutTrends:
        records = self._rpc("rollout_trends", p_job_id=job_id, p_user_id=self._reader())
        steps = rollout_steps_frame(records)
        rewards = reward_trends_frame([r["step"] for r in records], [r["rewards"] for r in records])
        return RolloutTrends(job_id, steps, rewards)

    def rollout_prompts(self, job_id: str, *, limit: int = 500) -> pd.DataFrame:
        check_limit(limit)
        records = self._rpc("rollout_prompts", p_job_id=job_id, p_limit=limit, p_user_id=self._reader())
        return to_frame(records, ROLLOUT_PROMPT_COLUMNS)

    def prompt_rollouts(self, job_id: str, prompt_id: str, *, limit: int = 1000) -> pd.DataFrame:
        check_limit(limit)
        records = self._rpc(
            "prompt_rollouts", p_job_id=job_id, p_prompt_id=prompt_id, p_limit=limit, p_user_id=self._reader()
        )
        return self._rollouts(records)

    def step_rollouts(self, job_id: str, step: int, *, best: bool = True, limit: int = 5) -> pd.DataFrame:
        check_limit(limit)
        records = self._rpc(
            "step_rollouts",
            p_job_id=job_id,
            p_step=int(step),
            p_best=bool(best),
            p_limit=limit,
            p_user_id=self._reader(),
        )
        return self._rollouts(records)

    @staticmethod
    def _rollouts(records: list[dict[str, Any]]) -> pd.DataFrame:
        return rollout_frame(records, [record.get("scores") for record in records])

    def close(self) -> None:
        """Close the HTTP connections of the REST and Auth clients."""
        self._rest.close()
        self._session.close()

    def outbox_key(self, user_id: str | None = None) -> tuple[str, str]:
        """(store, owner) of this store's writes for the local outbox (`predictions.store.identity`)."""
        return supabase_identity(
            self.url,
            role=self.key_role,
            ingest_key=self._ingest_key,
            ingest_owner=self._ingest_owner,
            session_user=self._session.user_id,
            user_id=check_user_id(user_id) or self._user_id,
        )

    def outbox_aliases(self) -> tuple[str, ...]:
        """Owner names meaning this store's owner too: its ingest key's, written before its user was known."""
        return (ingest_key_owner(self._ingest_key),) if self._ingest_key and self._ingest_owner else ()

    def check_can_write(self, user_id: str | None = None) -> None:
        """Raise ConfigError unless rows for `user_id` (default: the configured user) could be written,
        and the database has the migrations this package writes with: checked before training starts,
        so a run never trains for hours storing nothing."""
        if self.requires_sign_in and self._ingest_owner is None:
            raise ConfigError(
                "SUPABASE_KEY is the anon key and nobody is signed in: row-level security refuses every "
                f"write; on a training machine set {ingest_keys.INGEST_KEY_ENV} (or use the service_role "
                f"key with {USER_ID_ENV})"
            )
        if user_id is not None:
            try:
                uuid.UUID(str(user_id))
            except ValueError as error:
                raise ConfigError(
                    f"user_id={user_id!r} is not a user id; valid: the UUID of a Supabase Auth user "
                    "(Authentication > Users in the Supabase dashboard)"
                ) from error
        self._owner(user_id)
        try:
            problem = self.schema_problem()
        except StoreError as error:  # an outage or a refused key: the writer keeps the rows, and says so
            logger.warning("predictions: cannot ask %s for its schema version: %s", self.description, error)
            return
        if problem is not None:
            raise ConfigError(problem)

    def schema_problem(self) -> str | None:
        """What the database lacks that this package needs (older migrations) and the fix, or None.

        One request (`predictions_schema_version()`); once the database is current, none again. Raises
        StoreError when the database cannot be asked (down, a refused key).
        """
        if self._schema_current:
            return None
        problem = schema_problem(database_version(self._function), self.description)
        self._schema_current = problem is None
        return problem

    # plumbing

    def _owner(self, user_id: str | None) -> str:
        """Whose rows these are: the row's own user, the signed-in user, or the configured one."""
        owner = check_user_id(user_id) or self._ingest_owner or self._session.user_id or self._user_id
        if owner is not None:
            return owner
        if self.requires_sign_in:
            raise AuthError(f"{self.description}: sign in first; with the anon key nothing can be written")
        raise ConfigError(
            f"{USER_ID_ENV} is not set: with the service-role key every row needs an owner; set "
            f"{USER_ID_ENV} (or SupabaseStore(user_id=...)) to the Supabase user id whose dashboard "
            "should show these runs"
        )

    def _job_owner(self, job_id: str) -> str:
        """The owner a job was started for here, else the store's own user."""
        return self._job_owners.get(job_id) or self._owner(None)

    def _reader(self) -> str | None:
        """Whose jobs the reads show: the signed-in or configured user; None (every owner) for an admin."""
        return self._session.user_id or self._user_id

    def _upsert(self, table: str, records: list[dict[str, Any]], on_conflict: str) -> None:
        """A bulk upsert; with an ingest key, the same rows through the function that checks the key."""
        if self._ingest_key:
            self._function(INGEST_UPSERTS[table], p_key=self._ingest_key, p_rows=records)
            return
        self._rest.upsert(table, records, on_conflict)

    def _rpc(self, name: str, **params: Any) -> Any:
        """Call the SQL function `predictions_<name>` and return its JSON value."""
        return self._function(f"predictions_{name}", **params)

    def _function(self, name: str, **params: Any) -> Any:
        """Call a SQL function through PostgREST's /rpc and return its JSON value."""
        return self._rest.function(name, **params)
