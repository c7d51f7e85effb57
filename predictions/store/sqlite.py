"""The embedded default store: one SQLite file, the same tables and columns as the Postgres schema.

WAL mode and a busy timeout let a training process write while a dashboard process reads; every
aggregate is computed by SQLite, so the dashboard never loads a job's rows to average them.
"""

from __future__ import annotations

import json
import operator
import re
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from predictions.errors import JobDeletedError, ReadOnlyStoreError, StoreError, StoreUnavailableError
from predictions.scoring.metrics import METRICS, PRIMARY_METRIC
from predictions.scoring.names import is_custom_name
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
    ROLLOUT_COLUMNS,
    ROLLOUT_PROMPT_COLUMNS,
    ROLLOUT_SUMMARY_COLUMNS,
    ROUND_COLUMNS,
    SAMPLE_SUMMARY_COLUMNS,
    SERIES_COLUMNS,
    SORTABLE_COLUMNS,
    TREND_COLUMNS,
    clean_scores,
    from_json,
    reward_trends_frame,
    rollout_frame,
    rollout_steps_frame,
    to_frame,
    to_json_text,
    with_custom_aggregates,
    with_metadata_texts,
    with_score_columns,
)
from predictions.store.identity import sqlite_identity
from predictions.store.job_details import check_note, check_tags, job_tags
from predictions.store.records import (
    DEFAULT_PAGE,
    LOCAL_USER_ID,
    MAX_SERIES_POINTS,
    Job,
    PageQuery,
    PredictionPage,
    PredictionRow,
    RolloutRow,
    RolloutTrends,
    SeriesPoint,
    Trends,
    make_trends,
    overall_improvement,
    stop_reason_from_dict,
)
from predictions.store.sqlite_read_only import is_stale, open_read_only, refused_writable_open, why_read_only
from predictions.store.sqlite_schema import MIGRATION_WAIT_MS, create_schema, finite_mean, refresh_summaries
from predictions.store.storable import storable_details

DEFAULT_DB_PATH = ".predictions/predictions.db"
"""The embedded store's file when PREDICTIONS_DB is not set, relative to the working directory."""

WRITE_COLUMNS = (
    "job_id",
    "user_id",
    "epoch",
    "step",
    "sample_index",
    "prompt",
    "ground_truth",
    "prediction",
    *METRICS,
    "scores",
    "metadata",
    "text_replacements",
    "run",
)
UPDATED_COLUMNS = [c for c in WRITE_COLUMNS if c not in ("job_id", "user_id", "step", "sample_index")]

UPSERT_PREDICTION = f"""
INSERT INTO training_predictions (id, {", ".join(WRITE_COLUMNS)}, created_at)
VALUES ({", ".join("?" * (len(WRITE_COLUMNS) + 2))})
ON CONFLICT (user_id, job_id, step, sample_index) DO UPDATE SET
    {", ".join(f"{column} = excluded.{column}" for column in UPDATED_COLUMNS)}
"""

NEWER_STATUS = """(CASE
    WHEN excluded.status_run IS NULL THEN excluded.status_at >= COALESCE(training_jobs.status_at, '')
    WHEN excluded.status_run = training_jobs.status_run
        THEN COALESCE(excluded.status_seq, 0) >= COALESCE(training_jobs.status_seq, 0)
    WHEN excluded.status_run_number <> training_jobs.status_run_number
        THEN excluded.status_run_number > training_jobs.status_run_number
    WHEN EXISTS (SELECT 1 FROM json_each(COALESCE(training_jobs.status_runs, '[]')) AS seen
                 WHERE seen.value = excluded.status_run) THEN 0
    ELSE 1 END)"""
"""Whether a status call is newer than the job's status (docs/reliability.md, problem 10): within the
current run the higher sequence wins; between runs, the higher run number (a resume counts one more
than the run whose checkpoint it resumed); where that cannot tell (equal, or unknown: `<>` with a NULL
is not true), a run the store has not heard from yet is the newest and any other run is older. A call
without a run (an older writer) is ordered by its `at`, as before."""

STATUS_RUNS = """CASE WHEN excluded.status_run IS NULL OR EXISTS (
        SELECT 1 FROM json_each(COALESCE(training_jobs.status_runs, '[]')) AS seen
        WHERE seen.value = excluded.status_run)
    THEN training_jobs.status_runs
    ELSE json_insert(COALESCE(training_jobs.status_runs, '[]'), '$[#]', excluded.status_run) END"""
"""The runs the store has heard from, in the order their first call arrived."""


def _ordered(column: str, value: str) -> str:
    return f"{column} = CASE WHEN {NEWER_STATUS} THEN {value} ELSE training_jobs.{column} END"


ORDERED_STATUS = ",\n    ".join(
    [
        *(
            _ordered(column, value)
            for column, value in (
                ("status", "excluded.status"),
                ("finished_at", "excluded.finished_at"),
                ("stop_reason", "excluded.stop_reason"),
                ("status_at", "excluded.status_at"),
                ("status_run", "excluded.status_run"),
                ("status_seq", "excluded.status_seq"),
                ("status_run_number", "excluded.status_run_number"),
            )
        ),
        f"status_runs = {STATUS_RUNS}",
    ]
)
"""SQLite evaluates every SET expression on the old row, so each column repeats the same decision."""

UPSERT_JOB = f"""
INSERT INTO training_jobs (id, user_id, name, model, status, config, started_at, updated_at, status_at,
                           status_run, status_seq, status_run_number, status_runs, tags, note)
VALUES (:job_id, :user_id, :name, :model, 'running', :config, :now, :now, :at, :run, :seq, :run_number,
        CASE WHEN :run IS NULL THEN NULL ELSE json_array(:run) END, :tags, :note)
ON CONFLICT (user_id, id) DO UPDATE SET
    name = COALESCE(excluded.name, name), model = COALESCE(excluded.model, model),
    config = COALESCE(excluded.config, config), updated_at = excluded.updated_at,
    tags = COALESCE(tags, excluded.tags), note = COALESCE(note, excluded.note),
    {ORDERED_STATUS}
"""
"""A job's status is the newest one set (`NEWER_STATUS`), whatever order the calls arrive in; a stop
reason goes with the `stopped` status that set it (a resumed job runs again without one). Tags and a
note from training fill only a job that has none: its owner may have edited them since."""

SET_JOB_DETAILS = """
UPDATE training_jobs SET tags = COALESCE(:tags, tags), note = COALESCE(:note, note), updated_at = :now
WHERE id = :job_id AND (:user_id IS NULL OR user_id = :user_id)
"""
"""An edit moves `updated_at`, as any change of a job does in Postgres: the dashboard's poll sees it."""

FINISH_JOB = f"""
INSERT INTO training_jobs (id, user_id, status, started_at, updated_at, finished_at, status_at, stop_reason,
                           status_run, status_seq, status_run_number, status_runs)
VALUES (:job_id, COALESCE(:user_id, (SELECT user_id FROM training_jobs WHERE id = :job_id LIMIT 1), :local),
        :status, :now, :now, :now, :at, :stop_reason, :run, :seq, :run_number,
        CASE WHEN :run IS NULL THEN NULL ELSE json_array(:run) END)
ON CONFLICT (user_id, id) DO UPDATE SET updated_at = excluded.updated_at,
    {ORDERED_STATUS}
"""
"""A finish that arrives before its job's start (replayed after an outage) creates the job, finished;
a finish without a `user_id` finishes the job of that id (an older writer's call), else the local user's."""

MISSING_RUNS = "json_patch(COALESCE(training_jobs.rows_missing_runs, '{}'), excluded.rows_missing_runs)"
RECORD_MISSING = f"""
INSERT INTO training_jobs (id, user_id, started_at, updated_at, rows_missing, rows_missing_runs)
VALUES (:job_id, :user_id, :now, :now, :rows, json_object(:run, :rows))
ON CONFLICT (user_id, id) DO UPDATE SET updated_at = excluded.updated_at,
    rows_missing_runs = {MISSING_RUNS},
    rows_missing = (SELECT COALESCE(SUM(value), 0) FROM json_each({MISSING_RUNS}))
"""
"""Each run's count set (a repeat changes nothing), the job's the sum; `updated_at` moves, so the
dashboard's poll sees it."""

DELETED_RUN = """SELECT 1 FROM training_deleted_runs
WHERE job_id = :job_id AND run = :run AND (:user_id IS NULL OR user_id = :user_id) LIMIT 1"""
"""Whether a write of run `run` belongs to a deleted job (of `user_id`; of any owner where a finish
names none: run ids are random, one run is one owner's)."""

OF_JOB = "job_id = :job_id AND (:user_id IS NULL OR user_id = :user_id)"
RECORD_DELETED_RUNS = f"""
INSERT OR IGNORE INTO training_deleted_runs (user_id, job_id, run, deleted_at)
SELECT user_id, job_id, run, :now FROM (
    SELECT DISTINCT user_id, job_id, run FROM training_predictions WHERE {OF_JOB} AND run IS NOT NULL
    UNION SELECT DISTINCT user_id, job_id, run FROM training_rollouts WHERE {OF_JOB} AND run IS NOT NULL
    UNION SELECT DISTINCT user_id, job_id, run FROM training_series WHERE {OF_JOB} AND run IS NOT NULL
    UNION SELECT j.user_id, j.id, seen.value FROM training_jobs AS j, json_each(COALESCE(j.status_runs, '[]'))
        AS seen WHERE j.id = :job_id AND (:user_id IS NULL OR j.user_id = :user_id)
    UNION SELECT j.user_id, j.id, counted.key FROM training_jobs AS j,
        json_each(COALESCE(j.rows_missing_runs, '{{}}')) AS counted
        WHERE j.id = :job_id AND (:user_id IS NULL OR j.user_id = :user_id)
)
"""
"""Every run the store heard from for the job (its rows', its status calls', its missing-row counts'):
their later writes are dropped (`DELETED_RUN`), a new run's are stored."""

ROLLOUT_WRITE_COLUMNS = (
    "job_id",
    "user_id",
    "step",
    "generation",
    "group_index",
    "completion_index",
    "prompt_id",
    "prompt",
    "completion",
    "rewards",
    "reward",
    "completion_tokens",
    "truncated",
    "ground_truth",
    *METRICS,
    "scores",
    "text_replacements",
    "run",
)
ROLLOUT_KEY = ("user_id", "job_id", "generation", "group_index", "completion_index")
UPSERT_ROLLOUT = f"""
INSERT INTO training_rollouts (id, {", ".join(ROLLOUT_WRITE_COLUMNS)}, created_at)
VALUES ({", ".join("?" * (len(ROLLOUT_WRITE_COLUMNS) + 2))})
ON CONFLICT ({", ".join(ROLLOUT_KEY)}) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in ROLLOUT_WRITE_COLUMNS if c not in ROLLOUT_KEY)}
"""
SELECT_ROLLOUTS = f"SELECT {', '.join(ROLLOUT_COLUMNS)}, scores FROM training_rollouts"
ROLLOUT_STEPS = (
    f"SELECT {', '.join(ROLLOUT_SUMMARY_COLUMNS)}, rewards FROM training_rollout_steps "
    "WHERE job_id = ? ORDER BY step"
)
ROLLOUT_PROMPTS = """
SELECT prompt_id, MIN(prompt), MIN(ground_truth), COUNT(*), MIN(step), MAX(step)
FROM training_rollouts WHERE job_id = ? GROUP BY prompt_id ORDER BY MIN(step), prompt_id LIMIT ?
"""
UPSERT_SERIES = """
INSERT INTO training_series (job_id, user_id, step, name, value, created_at, run) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (user_id, job_id, step, name) DO UPDATE SET value = excluded.value, run = excluded.run
"""
SERIES = (
    f"SELECT {', '.join(SERIES_COLUMNS)} FROM training_series WHERE job_id = ? ORDER BY step, name LIMIT ?"
)

TRENDS = f"SELECT {', '.join(TREND_COLUMNS)}, scores FROM training_rounds WHERE job_id = ? ORDER BY step"
ROUNDS = f"SELECT {', '.join(ROUND_COLUMNS)} FROM training_rounds WHERE job_id = ? ORDER BY step"

LIST_JOBS = """
SELECT s.job_id AS id, COALESCE(j.status, 'unknown') AS status, j.name AS name, j.model AS model,
       j.user_id AS user_id, j.started_at AS started_at, j.updated_at AS updated_at,
       j.finished_at AS finished_at, j.stop_reason AS stop_reason, j.tags AS tags, j.note AS note,
       COALESCE(j.rows_missing, 0) AS rows_missing,
       s.latest_epoch AS latest_epoch, s.latest_step AS latest_step, s.round_count AS round_count,
       s.last_active AS last_active
FROM training_job_summary AS s
LEFT JOIN training_jobs AS j ON j.id = s.job_id
WHERE {where}
ORDER BY s.last_active DESC, s.job_id
LIMIT :limit
"""
"""The most recent jobs from the job summary (one row a job, kept with every write): an indexed read
of the first entries, then each one's job row by key. Grouping every round of 10,000 jobs took 247 ms."""
JOB_SEARCH = " OR ".join(
    [
        *(f"instr(lower({column}), :text) > 0" for column in ("s.job_id", "j.name", "j.model")),
        "EXISTS (SELECT 1 FROM json_each(j.tags) AS tag WHERE instr(lower(tag.value), :text) > 0)",
    ]
)
"""A job whose id, name, model or a tag holds the search text, in any case (ASCII letters: SQLite's
`lower`)."""

JOBS_VERSION = """SELECT (SELECT MAX(updated_at) FROM training_jobs), (SELECT COUNT(*) FROM training_jobs),
    (SELECT MAX(updated_at) FROM training_rounds)"""
"""Index reads: a new round moves the summary's latest write; a start, finish or delete the jobs'."""

SAMPLE_SUMMARY = """
WITH ends AS (
    SELECT sample_index, MIN(CASE WHEN {value} IS NOT NULL THEN step END) AS first_step,
           MAX(CASE WHEN {value} IS NOT NULL THEN step END) AS latest_step, MIN({value}) AS min_value,
           MAX(CASE WHEN {value} = 0 THEN step END) AS last_zero_step
    FROM training_predictions WHERE job_id = :job GROUP BY sample_index
)
SELECT e.sample_index,
       (SELECT {value} FROM training_predictions AS p
        WHERE p.job_id = :job AND p.sample_index = e.sample_index AND p.step = e.first_step),
       (SELECT {value} FROM training_predictions AS p
        WHERE p.job_id = :job AND p.sample_index = e.sample_index AND p.step = e.latest_step),
       e.latest_step, e.min_value,
       (SELECT MIN({value}) FROM training_predictions AS p
        WHERE p.job_id = :job AND p.sample_index = e.sample_index AND p.step < e.latest_step),
       e.last_zero_step
FROM ends AS e ORDER BY e.sample_index
"""
"""Per sample: one pass for its steps and lowest value, then three index reads (first, latest, lowest
before the latest); index-only for CER (`idx_training_predictions_job_sample`). Window functions over
the same 200k rows took 1.5 s of CPU, this 0.2 s."""

SELECT_PREDICTIONS = f"SELECT {', '.join(PREDICTION_COLUMNS)}, scores FROM training_predictions"

GROUP_VALUE = """CASE json_type(metadata, :path) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
    ELSE CAST(json_extract(metadata, :path) AS TEXT) END"""
"""A row's metadata field as text, the way Postgres's `->>` gives it."""

TRANSIENT_SQLITE = re.compile(r"locked|busy|disk|unable to open|i/o", re.IGNORECASE)
"""SQLite errors of a file someone else holds or a disk in trouble: the same write can succeed later."""


_MIDDLE_VALUES = operator.attrgetter(*WRITE_COLUMNS[2:-4])
"""epoch ... the metrics: the columns between the owner and the JSON ones, read in one call (the
dataclass's `fields()` per row cost a fifth of a round's write)."""


def _write_values(row: PredictionRow) -> tuple:
    """A row's values in WRITE_COLUMNS order, owned by the local user when nobody is named."""
    return (
        row.job_id,
        row.user_id or LOCAL_USER_ID,
        *_MIDDLE_VALUES(row),
        to_json_text(clean_scores(row.scores)),
        to_json_text(row.metadata or None),
        row.text_replacements,
        row.run,
    )


def _rollout_values(row: RolloutRow) -> tuple:
    """A rollout's values in ROLLOUT_WRITE_COLUMNS order, owned by the local user when nobody is named."""
    data = row.as_dict()
    data["user_id"] = data["user_id"] or LOCAL_USER_ID
    data["rewards"] = to_json_text(clean_scores(data["rewards"]) or {})
    data["scores"] = to_json_text(clean_scores(data["scores"]))
    data["reward"] = clean_scores({"reward": data["reward"]})["reward"]
    data["truncated"] = int(bool(data["truncated"]))
    return tuple(data[column] for column in ROLLOUT_WRITE_COLUMNS)


def _runs(rows: Sequence[PredictionRow | RolloutRow | SeriesPoint]) -> list[tuple[str, str, str | None]]:
    """The (owner, job, run) of each row, for `SQLiteStore._write`'s check of deleted runs."""
    return [(row.user_id or LOCAL_USER_ID, row.job_id, row.run) for row in rows]


def metric_sql(metric: str) -> str:
    """A metric's value in SQL: its column, or a user scorer's value from the `scores` JSON."""
    check_metric(metric)
    return metric if metric in METRICS else f"json_extract(scores, '$.{metric}')"


def utc_now() -> str:
    """ISO-8601 UTC text, the embedded store's timestamp format."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def utc_text(moment: str) -> str:
    """An ISO-8601 time as the store's UTC text, so that text order is time order."""
    return datetime.fromisoformat(moment).astimezone(UTC).isoformat(timespec="microseconds")


def _keyset(job_id: str, after: tuple[int, int] | None, limit: int) -> tuple[str, tuple]:
    """The WHERE clause (with its order and limit) of a keyset page of a job's rows after `after`.

    Two statements, not `(? IS NULL OR ...)`: an OR hides the key's range from the planner, and every
    page would scan the job from its first row (1,137 s for 200k rows instead of seconds).
    """
    order = f"ORDER BY step, sample_index LIMIT {check_limit(limit)}"
    if after is None:
        return f"job_id = ? {order}", (job_id,)
    return f"job_id = ? AND (step, sample_index) > (?, ?) {order}", (job_id, int(after[0]), int(after[1]))


class SQLiteStore:
    """The embedded store, a single file; safe to share between threads of one process.

    A file that cannot be written here (a read-only mount, a snapshot, a folder shared read-only) is
    opened read-only (`predictions.store.sqlite_read_only`): every read works, never a migration, and
    every write raises `ReadOnlyStoreError` naming the path; `read_only` says so.
    """

    def __init__(self, path: str | Path = DEFAULT_DB_PATH, *, timeout_s: float = 30.0):
        self.path = Path(path)
        self.description = f"SQLite at {self.path}"
        self._lock = threading.Lock()
        self._timeout_s = timeout_s
        self.read_only: str | None = why_read_only(self.path)
        """Why this store cannot be written here, or None when it can."""
        try:
            if self.read_only is not None:
                self._conn = open_read_only(self.path, self.read_only, timeout_s)
                return
            try:
                self._conn = self._open_writable(timeout_s)
            except sqlite3.Error as error:
                if not refused_writable_open(self.path, error):
                    raise
                self.read_only = f"it cannot be written here ({error})"
                self._conn = open_read_only(self.path, self.read_only, timeout_s)
        except StoreError:
            raise
        except (OSError, sqlite3.Error) as error:
            raise StoreUnavailableError(f"cannot open the SQLite store at {self.path}: {error}") from error

    def _open_writable(self, timeout_s: float) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=timeout_s, check_same_thread=False, isolation_level=None)
        try:
            waits = int(timeout_s * 1000)
            conn.execute(f"PRAGMA busy_timeout = {min(waits, MIGRATION_WAIT_MS)}")  # opening: short
            conn.execute("PRAGMA journal_mode = WAL")  # an older file's switch to WAL needs the lock
            conn.execute("PRAGMA synchronous = NORMAL")
            create_schema(conn)
            conn.execute(f"PRAGMA busy_timeout = {waits}")
        except BaseException:
            conn.close()
            raise
        return conn

    # writes

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        now = utc_now()
        values = [(str(uuid.uuid4()), *_write_values(row), now) for row in rows]
        self._write(lambda c: c.executemany(UPSERT_PREDICTION, values), _runs(rows))

    def write_rollouts(self, rows: Sequence[RolloutRow]) -> None:
        now = utc_now()
        values = [(str(uuid.uuid4()), *_rollout_values(row), now) for row in rows]
        self._write(lambda c: c.executemany(UPSERT_ROLLOUT, values), _runs(rows))

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
        now = utc_now()
        values = {"job_id": job_id, "user_id": user_id or LOCAL_USER_ID, "name": name, "model": model}
        values["config"] = json.dumps(config, default=str) if config is not None else None
        values |= {"now": now, "at": utc_text(at or now), "run": run, "seq": seq, "run_number": run_number}
        tags, note = storable_details(tags, note)
        values |= {"tags": json.dumps(tags) if tags is not None else None, "note": note}
        self._write(lambda c: c.execute(UPSERT_JOB, values), [(values["user_id"], job_id, run)])

    def set_job_details(
        self,
        job_id: str,
        *,
        tags: Sequence[str] | None = None,
        note: str | None = None,
        user_id: str | None = None,
    ) -> None:
        tags, note = storable_details(check_tags(tags), check_note(note))
        values = {"job_id": job_id, "user_id": user_id, "note": note, "now": utc_now()}
        values["tags"] = json.dumps(tags) if tags is not None else None

        def update(conn: sqlite3.Connection) -> None:
            if conn.execute(SET_JOB_DETAILS, values).rowcount == 0:
                raise StoreError(
                    f"{self.description}: no job {job_id!r} to tag (a job with only rows has none)"
                )

        self._write(update)

    def owns(self, job: Job) -> bool:
        """The local user owns every job of the file."""
        return True

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
        check_status(status)
        now = utc_now()
        values = {"now": now, "at": utc_text(at or now), "status": status, "job_id": job_id}
        values["stop_reason"] = json.dumps(stop_reason) if status == "stopped" and stop_reason else None
        values |= {
            "user_id": user_id,
            "local": LOCAL_USER_ID,
            "run": run,
            "seq": seq,
            "run_number": run_number,
        }
        self._write(lambda c: c.execute(FINISH_JOB, values), [(user_id, job_id, run)])

    def record_missing(self, job_id: str, rows: int, *, run: str, user_id: str | None = None) -> None:
        values = {"job_id": job_id, "user_id": user_id or LOCAL_USER_ID, "now": utc_now()}
        values |= {"rows": check_count(rows), "run": str(run)}
        self._write(lambda c: c.execute(RECORD_MISSING, values), [(values["user_id"], job_id, str(run))])

    def write_series(self, points: Sequence[SeriesPoint]) -> None:
        now = utc_now()
        values = [
            (p.job_id, p.user_id or LOCAL_USER_ID, int(p.step), p.name, float(p.value), now, p.run)
            for p in points
        ]
        self._write(lambda c: c.executemany(UPSERT_SERIES, values), _runs(points))

    def delete_job(self, job_id: str, *, user_id: str | None = None) -> None:
        """Delete a job (of `user_id`, when given) and its rows in one transaction; StoreError when
        there is no such job. Its runs are recorded (`RECORD_DELETED_RUNS`): their later writes are
        dropped, so the job stays deleted."""
        owner = "AND (? IS NULL OR user_id = ?)"

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute(RECORD_DELETED_RUNS, {"job_id": job_id, "user_id": user_id, "now": utc_now()})
            rows = conn.execute(
                f"DELETE FROM training_predictions WHERE job_id = ? {owner}", (job_id, user_id, user_id)
            ).rowcount
            jobs = conn.execute(
                f"DELETE FROM training_jobs WHERE id = ? {owner}", (job_id, user_id, user_id)
            ).rowcount
            conn.execute(f"DELETE FROM training_series WHERE job_id = ? {owner}", (job_id, user_id, user_id))
            if rows == 0 and jobs == 0:
                raise StoreError(f"{self.description}: no job {job_id!r} to delete")

        self._write(delete)

    # reads

    def list_jobs(self, *, limit: int = 1000, search: str | None = None) -> list[Job]:
        where, params = ["1"], {"limit": check_limit(limit)}
        if search:
            where, params["text"] = [f"({JOB_SEARCH})"], search.lower()
        return self._jobs(" AND ".join(where), params)

    def find_job(self, job_id: str) -> Job | None:
        found = self._jobs("s.job_id = :job_id", {"job_id": job_id, "limit": 1})
        return found[0] if found else None

    def _jobs(self, where: str, params: dict[str, Any]) -> list[Job]:
        """Each row mapped to `Job` by its column names (the aliases of LIST_JOBS), never by position."""
        jobs = []
        for record in self._records(LIST_JOBS.format(where=where), params):
            reason = stop_reason_from_dict(from_json(record["stop_reason"]))
            jobs.append(Job(**{**record, "stop_reason": reason, "tags": job_tags(from_json(record["tags"]))}))
        return jobs

    def jobs_version(self) -> tuple:
        return tuple(self._query(JOBS_VERSION, ())[0])

    def trends(self, job_id: str) -> Trends:
        records = self._query(TRENDS, (job_id,))
        rounds = to_frame([record[:-1] for record in records], TREND_COLUMNS)
        rounds = with_custom_aggregates(rounds, [record[-1] for record in records])
        improvement = overall_improvement(rounds[f"avg_{PRIMARY_METRIC}"].tolist())
        return make_trends(job_id, rounds, improvement, self._job_config(job_id))

    def group_trends(self, job_id: str, field: str) -> pd.DataFrame:
        check_group_field(field)
        names = self._custom_names(job_id)
        averages = [f"AVG({name})" for name in METRICS] + [finite_mean(metric_sql(name)) for name in names]
        sql = (
            f"SELECT MAX(epoch), step, grp, COUNT(*), {', '.join(averages)} FROM "
            f"(SELECT *, {GROUP_VALUE} AS grp FROM training_predictions WHERE job_id = :job) "
            "GROUP BY step, grp ORDER BY step, grp IS NULL, grp"
        )
        columns = (*GROUP_COLUMNS, *(f"avg_{name}" for name in names))
        return self._frame(sql, {"job": job_id, "path": f"$.{field}"}, columns)

    def rounds(self, job_id: str) -> pd.DataFrame:
        return self._frame(ROUNDS, (job_id,), ROUND_COLUMNS)

    def training_series(self, job_id: str) -> pd.DataFrame:
        return self._frame(SERIES, (job_id, MAX_SERIES_POINTS), SERIES_COLUMNS)

    def sample_history(self, job_id: str, sample_index: int) -> pd.DataFrame:
        sql = f"{SELECT_PREDICTIONS} WHERE job_id = ? AND sample_index = ? ORDER BY step"
        return self._rows(sql, (job_id, sample_index))

    def rows_after(
        self, job_id: str, after: tuple[int, int] | None = None, *, limit: int = 1000
    ) -> pd.DataFrame:
        where, params = _keyset(job_id, after, limit)
        return self._rows(f"{SELECT_PREDICTIONS} WHERE {where}", params)

    def row_values_after(
        self,
        job_id: str,
        after: tuple[int, int] | None = None,
        *,
        limit: int = 1000,
        scores: Sequence[str] = (),
    ) -> list[tuple]:
        where, params = _keyset(job_id, after, limit)
        values = [*PREDICTION_COLUMNS, *(f"CAST({metric_sql(name)} AS REAL)" for name in scores)]
        records = self._query(f"SELECT {', '.join(values)} FROM training_predictions WHERE {where}", params)
        return with_metadata_texts(records)

    def sample_matrix(
        self,
        job_id: str,
        metric: str = PRIMARY_METRIC,
        *,
        samples: Sequence[int] | None = None,
        steps: Sequence[int] | None = None,
    ) -> pd.DataFrame:
        where, params = "job_id = ?", [job_id]
        for column, values in (("sample_index", samples), ("step", steps)):
            if values is not None:
                where += f" AND {column} IN ({', '.join('?' * len(values))})"
                params += [int(value) for value in values]
        sql = (
            f"SELECT sample_index, epoch, step, {metric_sql(metric)} FROM training_predictions "
            f"WHERE {where} ORDER BY sample_index, step"
        )
        return self._frame(sql, params, MATRIX_COLUMNS)

    def sample_summary(self, job_id: str, metric: str = PRIMARY_METRIC) -> pd.DataFrame:
        return self._frame(
            SAMPLE_SUMMARY.format(value=metric_sql(metric)), {"job": job_id}, SAMPLE_SUMMARY_COLUMNS
        )

    def predictions_page(self, job_id: str, query: PageQuery = DEFAULT_PAGE) -> PredictionPage:
        where, params = "job_id = ?", [job_id]
        if query.step is not None:
            where, params = where + " AND step = ?", [*params, query.step]
        if query.wrong_only:
            where += " AND exact_match < 1"
        if query.metric_range is not None:
            metric, low, high = query.metric_range
            where += f" AND {metric_sql(metric)} BETWEEN coalesce(?, -1e308) AND coalesce(?, 1e308)"
            params = [*params, low, high]
        key = query.sort_by if query.sort_by in SORTABLE_COLUMNS else metric_sql(query.sort_by)
        order = f"{key} IS NULL, {key} {'DESC' if query.descending else 'ASC'}, step, sample_index"
        sql = f"{SELECT_PREDICTIONS} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        rows = self._rows(sql, (*params, query.limit, query.offset))
        total = self._query(f"SELECT COUNT(*) FROM training_predictions WHERE {where}", params)[0][0]
        return PredictionPage(rows, total, query.offset, query.limit)

    def rollout_trends(self, job_id: str) -> RolloutTrends:
        records = self._query(ROLLOUT_STEPS, (job_id,))
        steps = rollout_steps_frame([record[:-1] for record in records])
        rewards = reward_trends_frame([record[0] for record in records], [record[-1] for record in records])
        return RolloutTrends(job_id, steps, rewards)

    def rollout_prompts(self, job_id: str, *, limit: int = 500) -> pd.DataFrame:
        check_limit(limit)
        return self._frame(ROLLOUT_PROMPTS, (job_id, limit), ROLLOUT_PROMPT_COLUMNS)

    def prompt_rollouts(self, job_id: str, prompt_id: str, *, limit: int = 1000) -> pd.DataFrame:
        check_limit(limit)
        sql = (
            f"{SELECT_ROLLOUTS} WHERE job_id = ? AND prompt_id = ? "
            "ORDER BY step, generation, group_index, completion_index LIMIT ?"
        )
        return self._rollouts(sql, (job_id, prompt_id, limit))

    def step_rollouts(self, job_id: str, step: int, *, best: bool = True, limit: int = 5) -> pd.DataFrame:
        check_limit(limit)
        order = "DESC" if best else "ASC"
        sql = (
            f"{SELECT_ROLLOUTS} WHERE job_id = ? AND step = ? "
            f"ORDER BY reward IS NULL, reward {order}, generation, group_index, completion_index LIMIT ?"
        )
        return self._rollouts(sql, (job_id, int(step), limit))

    def outbox_key(self, user_id: str | None = None) -> tuple[str, str]:
        """(store, owner) of this store's writes for the local outbox: one local owner per file."""
        return sqlite_identity(self.path)

    def outbox_aliases(self) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # plumbing

    def _write(self, statement, runs: Sequence[tuple[str | None, str, str | None]] = ()) -> None:
        """Run a write in one transaction, so a round lands whole or not at all, with its summary.

        `runs`: the (owner, job, run) the write belongs to; one of a deleted job's runs drops the whole
        write (`JobDeletedError`), checked in the same transaction as the deletion it must not undo."""
        if self.read_only is not None:
            raise self._read_only_error(self.read_only)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._refuse_deleted_runs(runs)
                    statement(self._conn)
                    refresh_summaries(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except (sqlite3.Error, UnicodeError) as error:
                raise self._error(error) from error

    def _refuse_deleted_runs(self, runs: Sequence[tuple[str | None, str, str | None]]) -> None:
        for user_id, job_id, run in dict.fromkeys(runs):
            values = {"user_id": user_id, "job_id": job_id, "run": run}
            if run is not None and self._conn.execute(DELETED_RUN, values).fetchone() is not None:
                raise JobDeletedError(
                    f"{self.description}: job {job_id!r} was deleted on the dashboard; the store drops "
                    f"every write of its run {run}"
                )

    def _error(self, error: Exception) -> StoreError:
        """Locked, busy or disk trouble is worth retrying; a refused value or constraint is not."""
        text = f"{self.description}: {error}"
        if getattr(error, "sqlite_errorname", "").startswith("SQLITE_READONLY"):  # remounted read-only
            return self._read_only_error(str(error))
        if isinstance(error, sqlite3.OperationalError) and TRANSIENT_SQLITE.search(str(error)):
            return StoreUnavailableError(text)
        return StoreError(text)

    def _reader(self) -> sqlite3.Connection:
        """The connection to read with; one opened `immutable` is opened again once the file changed
        (a run writing it elsewhere), so reads see its rows and never a file changing under them."""
        if is_stale(self._conn, self.path):
            self._conn.close()
            self._conn = open_read_only(self.path, self.read_only, self._timeout_s)
        return self._conn

    def _read_only_error(self, why: str) -> ReadOnlyStoreError:
        return ReadOnlyStoreError(
            f"the SQLite store at {self.path} is read-only here: {why}; nothing was written. To write, "
            "set PREDICTIONS_DB (or SQLiteStore's path) to a file in a writable folder"
        )

    def _query(self, sql: str, params: Sequence[Any] | dict) -> list[tuple]:
        with self._lock:
            try:
                bound = params if isinstance(params, dict) else tuple(params)
                return self._reader().execute(sql, bound).fetchall()
            except sqlite3.OperationalError as error:
                raise StoreUnavailableError(f"{self.description}: {error}") from error
            except sqlite3.Error as error:
                raise StoreError(f"{self.description}: {error}") from error

    def _records(self, sql: str, params: Sequence[Any] | dict) -> list[dict[str, Any]]:
        """Rows as dicts keyed by the query's column names."""
        with self._lock:
            try:
                cursor = self._reader().execute(sql, params if isinstance(params, dict) else tuple(params))
                names = [column[0] for column in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            except sqlite3.OperationalError as error:
                raise StoreUnavailableError(f"{self.description}: {error}") from error
            except sqlite3.Error as error:
                raise StoreError(f"{self.description}: {error}") from error

    def _frame(self, sql: str, params: Sequence[Any] | dict, columns: Sequence[str]) -> pd.DataFrame:
        return to_frame(self._query(sql, params), columns)

    def _rows(self, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        """Prediction rows (`SELECT_PREDICTIONS`), each user scorer's values as a column."""
        records = self._query(sql, params)
        rows = to_frame([record[:-1] for record in records], PREDICTION_COLUMNS)
        return with_score_columns(rows, [record[-1] for record in records])

    def _rollouts(self, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        records = self._query(sql, params)
        return rollout_frame([record[:-1] for record in records], [record[-1] for record in records])

    def _job_config(self, job_id: str) -> dict[str, Any]:
        found = self._query("SELECT config FROM training_jobs WHERE id = ?", (job_id,))
        config = from_json(found[0][0]) if found else None
        return config if isinstance(config, dict) else {}

    def _custom_names(self, job_id: str) -> list[str]:
        """The user scorers a job's rounds have values of, from the summary (one row per round)."""
        sql = "SELECT DISTINCT s.key FROM training_rounds AS r, json_each(r.scores) AS s WHERE r.job_id = ?"
        return sorted(row[0] for row in self._query(sql, (job_id,)) if is_custom_name(row[0]))  # SQL-safe
