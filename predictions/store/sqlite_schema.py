"""The embedded store's schema: the Postgres tables of supabase/migrations/, plus a per-round summary.

`training_rounds` holds each round's aggregates, so the trends chart reads ~100 summary rows instead
of averaging a job's 10,000 rows on every refresh. SQLite has no statement-level triggers (Postgres
recomputes each round a statement touched once, supabase/migrations/20261125100000_training_rounds.sql):
here row triggers only mark the rounds a write touched in `training_rounds_pending`, and `refresh_rounds`
recomputes each marked round once at the end of the store's write transaction. A round's write is
then linear in its size; a per-row recompute made a 2,000-row round quadratic (10 s). Rows written
outside the store are summarised at its next write or open. Metric columns come from the registry; the values
of user scorers live in the JSON `scores` column and are summarised per round as JSON
(`{name: {avg, min, max, count}}`) in the summary's own `scores` column.

`training_job_summary` holds one row per job (from its rounds and its `training_jobs` row): what the job
list shows of its activity and `last_active`, indexed, so the list is a plain indexed read of the most
recent jobs instead of grouping every round of 10,000 jobs. Writes of rounds and jobs mark their jobs in
`training_job_summary_pending`; `refresh_summaries` recomputes each marked job once, after its rounds.

`training_rollout_steps` does the same for `training_rollouts` (an RL trainer's completions): per
owner, job and step, the reward, completion length and metric aggregates, each reward function's
as JSON (`{name: {count, avg, var, min, max}}`), and how many groups had all-equal rewards.
"""

from __future__ import annotations

import re
import sqlite3
import sys

from predictions.scoring.metrics import METRICS, PRIMARY_METRIC
from predictions.store.records import JOB_STATUSES

STATUS_LIST = ", ".join(f"'{status}'" for status in JOB_STATUSES)
METRIC_COLUMNS = "".join(f"    {name} REAL,\n" for name in METRICS)
AVERAGE_COLUMNS = "".join(f"    avg_{name} REAL,\n" for name in METRICS)

TABLES = f"""
CREATE TABLE IF NOT EXISTS training_jobs (
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT,
    model TEXT,
    status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ({STATUS_LIST})),
    config TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    status_at TEXT,
    stop_reason TEXT,
    status_run TEXT,
    status_seq INTEGER,
    status_runs TEXT,
    status_run_number INTEGER,
    rows_missing INTEGER NOT NULL DEFAULT 0,
    rows_missing_runs TEXT,
    tags TEXT,
    note TEXT,
    PRIMARY KEY (user_id, id)
);
CREATE TABLE IF NOT EXISTS training_predictions (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    step INTEGER NOT NULL,
    sample_index INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    ground_truth TEXT,
    prediction TEXT NOT NULL,
{METRIC_COLUMNS}    scores TEXT,
    metadata TEXT,
    text_replacements INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    run TEXT,
    UNIQUE (user_id, job_id, step, sample_index)
);
CREATE TABLE IF NOT EXISTS training_rollouts (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    group_index INTEGER NOT NULL,
    completion_index INTEGER NOT NULL,
    prompt_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    completion TEXT NOT NULL,
    rewards TEXT,
    reward REAL,
    completion_tokens INTEGER NOT NULL,
    truncated INTEGER NOT NULL DEFAULT 0,
    ground_truth TEXT,
{METRIC_COLUMNS}    scores TEXT,
    text_replacements INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    run TEXT,
    UNIQUE (user_id, job_id, generation, group_index, completion_index)
);
CREATE INDEX IF NOT EXISTS idx_training_rollouts_job_step ON training_rollouts (job_id, step);
CREATE INDEX IF NOT EXISTS idx_training_rollouts_job_prompt ON training_rollouts (job_id, prompt_id);
CREATE TABLE IF NOT EXISTS training_rollout_steps (
    user_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    rollout_count INTEGER NOT NULL,
    group_count INTEGER NOT NULL,
    zero_std_groups INTEGER NOT NULL,
    avg_reward REAL,
    var_reward REAL,
    min_reward REAL,
    max_reward REAL,
    avg_completion_tokens REAL,
    var_completion_tokens REAL,
    min_completion_tokens REAL,
    max_completion_tokens REAL,
    truncated_count INTEGER NOT NULL,
    scored_count INTEGER NOT NULL,
{AVERAGE_COLUMNS}    rewards TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_write TEXT NOT NULL,
    PRIMARY KEY (user_id, job_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS training_series (
    job_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    created_at TEXT NOT NULL,
    run TEXT,
    PRIMARY KEY (user_id, job_id, step, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS training_deleted_runs (
    user_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    run TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    PRIMARY KEY (user_id, job_id, run)
) WITHOUT ROWID;
"""
"""`run` on the rows: the writer's process run that wrote them. `training_deleted_runs`: the runs of every
job deleted on the dashboard, whose later writes (replayed from an outbox, or a run still training) the
store drops so that the job stays deleted; a new run under the same job id is stored."""

INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_training_predictions_job_epoch ON training_predictions (job_id, epoch)",
    # A job's rounds by step, and its rows in (step, sample) order: the CSV's keyset pages read them in
    # order from here, with no sort and no row of the page before (it was (job_id, step): 21% of a
    # 200k-row CSV's reads).
    "CREATE INDEX IF NOT EXISTS idx_training_predictions_job_step_sample ON training_predictions "
    "(job_id, step, sample_index)",
    # A sample's rows in step order, with the primary metric: the Samples page's summary, its page of the
    # heatmap and a sample's history read this index alone.
    "CREATE INDEX IF NOT EXISTS idx_training_predictions_job_sample ON training_predictions "
    "(job_id, sample_index, step, char_error_rate)",
    # The job list and the dashboard's poll read these instead of the rows, whose configs (rendered
    # model inputs: kilobytes a job) made a scan of 10,000 jobs read tens of megabytes.
    "CREATE INDEX IF NOT EXISTS idx_training_jobs_picker ON training_jobs (id, user_id, status, name, model, "
    "started_at, updated_at, finished_at, stop_reason, rows_missing, tags, note)",
    "CREATE INDEX IF NOT EXISTS idx_training_jobs_updated ON training_jobs (updated_at)",
)

STALE_INDEXES = (
    "idx_training_jobs_list",
    "idx_training_jobs_listed",
    "idx_training_jobs_listing",
    "idx_training_predictions_job_step",
)
"""Earlier versions of the job list's covering index (without stop_reason, rows_missing, tags and note),
and the rows' (job_id, step) index that (job_id, step, sample_index) replaces."""

TABLE_REWRITES = (
    (
        "training_predictions",
        "UNIQUE (job_id, step, sample_index)",
        "UNIQUE (user_id, job_id, step, sample_index)",
        "",
    ),
    ("training_jobs", "id TEXT PRIMARY KEY", "id TEXT NOT NULL", "PRIMARY KEY (user_id, id)"),
    (
        "training_jobs",
        "CHECK (status IN ('running', 'finished', 'failed'))",
        f"CHECK (status IN ({STATUS_LIST}))",
        "",
    ),
)
"""What a file from an older version needs SQLite cannot ALTER: per table, the old text of its CREATE
statement, what replaces it, and a table constraint to add after the columns. Job ids per owner (as in
Postgres), and the `stopped` status."""

ADDED_COLUMNS = {
    "training_predictions": {
        **{name: "REAL" for name in METRICS},
        "scores": "TEXT",
        "metadata": "TEXT",
        "text_replacements": "INTEGER NOT NULL DEFAULT 0",
        "run": "TEXT",
    },
    "training_rollouts": {"run": "TEXT"},
    "training_series": {"run": "TEXT"},
    "training_jobs": {
        "status_at": "TEXT",
        "stop_reason": "TEXT",
        "status_run": "TEXT",
        "status_seq": "INTEGER",
        "status_runs": "TEXT",
        "status_run_number": "INTEGER",
        "rows_missing": "INTEGER NOT NULL DEFAULT 0",
        "rows_missing_runs": "TEXT",
        "tags": "TEXT",
        "note": "TEXT",
    },
}
"""Columns a file from an older version may lack; they are added when it is opened."""

WRITE_ONLY_COLUMNS = {
    "training_predictions": {"run"},
    "training_rollouts": {"run"},
    "training_series": {"run"},
}
"""Added columns that only writes use (each row's run, for the deleted-run check): a read-only file of an
earlier version, which cannot gain them, is read without them (`schema_is_readable`). A new column
that no read selects belongs here, so that such files stay readable."""

SUMMARY_COLUMNS = {
    "job_id": "TEXT NOT NULL",
    "step": "INTEGER NOT NULL",
    "epoch": "INTEGER NOT NULL",
    "sample_count": "INTEGER NOT NULL",
    "scored_count": "INTEGER NOT NULL",
    **{f"avg_{name}": "REAL" for name in METRICS},
    f"min_{PRIMARY_METRIC}": "REAL",
    f"max_{PRIMARY_METRIC}": "REAL",
    "scores": "TEXT NOT NULL",
    "created_at": "TEXT NOT NULL",
    "updated_at": "TEXT NOT NULL",
}
"""The summary's columns, in the order SUMMARIZE fills them."""

ROUNDS_INDEX_NAME = "idx_training_rounds_updated"
ROUNDS_INDEX = f"CREATE INDEX IF NOT EXISTS {ROUNDS_INDEX_NAME} ON training_rounds (updated_at)"
"""The latest round write of all jobs in one index read: what the dashboard's poll watches."""

ROUNDS_TABLE = f"""
CREATE TABLE training_rounds (
    {", ".join(f"{name} {kind}" for name, kind in SUMMARY_COLUMNS.items())},
    PRIMARY KEY (job_id, step)
) WITHOUT ROWID -- user scores' averages finite (finite_mean)
"""
"""The summary's table. Its text changes when what `SUMMARIZE` computes does, so an older file's summary
is rebuilt on opening (one summarised before `finite_mean` may hold an infinite average)."""

LARGEST_JSON_REAL = 1.79769313486231e308
"""The largest real SQLite's JSON (15 significant digits) writes back as a finite number: the double
closest to it, 1.7976931348623157e308, is written as 1.79769313486232e+308, which reads as infinity."""


def finite_mean(value: str) -> str:
    """AVG of `value` that never overflows: the mean of finite numbers is finite, their sum may not be
    (3 x 1e308). When AVG is infinite, the values scaled by 2^-64 (exact for all but subnormals, which
    cannot move such a mean) are averaged and scaled back. Postgres averages exactly in numeric."""
    plain, scale = f"AVG({value})", f"{2.0**64!r}"
    return f"IIF(ABS({plain}) <= {sys.float_info.max!r}, {plain}, AVG(({value}) / {scale}) * {scale})"


def finite_variance(value: str, *, json: bool = False) -> str:
    """The population variance E[x^2] - E[x]^2 of `value`, or NULL where it is not a finite number
    (|x| past 1e154 squares to infinity; a variance may exceed the largest double): the reader shows no
    standard deviation then, as Postgres's summary does. `json`: within what JSON text reads back."""
    variance = f"AVG(({value}) * ({value})) - {finite_mean(value)} * {finite_mean(value)}"
    largest = LARGEST_JSON_REAL if json else sys.float_info.max
    return f"IIF(ABS({variance}) <= {largest!r}, {variance}, NULL)"


def json_real(value: str) -> str:
    """`value` bounded to what SQLite's JSON text reads back as finite (`LARGEST_JSON_REAL`)."""
    return f"MIN(MAX({value}, -{LARGEST_JSON_REAL!r}), {LARGEST_JSON_REAL!r})"


CUSTOM_SUMMARY = f"""(
    SELECT json_group_object(key, json_object('avg', avg, 'min', low, 'max', high, 'count', n))
    FROM (
        SELECT s.key, {json_real(finite_mean("s.value"))} AS avg, {json_real("MIN(s.value)")} AS low,
               {json_real("MAX(s.value)")} AS high, COUNT(s.value) AS n
        FROM training_predictions AS q, json_each(q.scores) AS s
        WHERE q.job_id = p.job_id AND q.step = p.step
        GROUP BY s.key
    )
)"""

SUMMARIZE = f"""
SELECT job_id, step, MAX(epoch), COUNT(*), COUNT({PRIMARY_METRIC}),
       {", ".join(f"AVG({name})" for name in METRICS)},
       MIN({PRIMARY_METRIC}), MAX({PRIMARY_METRIC}), {CUSTOM_SUMMARY}, MIN(created_at), MAX(created_at)
FROM training_predictions AS p
"""


PENDING_TABLE = """
CREATE TABLE IF NOT EXISTS training_rounds_pending (
    job_id TEXT NOT NULL, step INTEGER NOT NULL, PRIMARY KEY (job_id, step)
) WITHOUT ROWID
"""


def _mark_round(row: str) -> str:
    """Trigger body that marks the round of `row` (NEW or OLD) for `refresh_rounds`.

    Not `INSERT OR IGNORE`: an upsert's own conflict clause overrides the conflict policy in a trigger.
    """
    return f"""INSERT INTO training_rounds_pending SELECT {row}.job_id, {row}.step WHERE NOT EXISTS (
        SELECT 1 FROM training_rounds_pending WHERE job_id = {row}.job_id AND step = {row}.step);"""


JOB_SUMMARY_COLUMNS = {
    "job_id": "TEXT NOT NULL PRIMARY KEY",
    "latest_epoch": "INTEGER",
    "latest_step": "INTEGER",
    "round_count": "INTEGER NOT NULL",
    "last_write": "TEXT",
    "job_updated_at": "TEXT",
    "last_active": "TEXT",
}
"""One row per job (keyed by id, like `training_rounds`): its latest round, how many, the latest round
write, the job row's latest update, and the later of the two (`last_active`), which the list sorts by."""
JOB_SUMMARY_TABLE = f"""
CREATE TABLE IF NOT EXISTS training_job_summary (
    {", ".join(f"{name} {kind}" for name, kind in JOB_SUMMARY_COLUMNS.items())}
) WITHOUT ROWID
"""
JOB_SUMMARY_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_training_job_summary_active "
    "ON training_job_summary (last_active DESC, job_id)"
)
"""The job list's order: its most recent jobs are the first entries of this index."""
JOB_PENDING_TABLE = """
CREATE TABLE IF NOT EXISTS training_job_summary_pending (job_id TEXT NOT NULL PRIMARY KEY) WITHOUT ROWID
"""
JOBS_PENDING = "job_id IN (SELECT job_id FROM training_job_summary_pending)"
SUMMARIZE_JOBS = f"""
SELECT p.job_id, a.latest_epoch, a.latest_step, COALESCE(a.round_count, 0), a.last_write, j.updated_at,
       NULLIF(MAX(COALESCE(j.updated_at, ''), COALESCE(a.last_write, '')), '')
FROM training_job_summary_pending AS p
LEFT JOIN (
    SELECT job_id, MAX(epoch) AS latest_epoch, MAX(step) AS latest_step, COUNT(*) AS round_count,
           MAX(updated_at) AS last_write
    FROM training_rounds WHERE {JOBS_PENDING} GROUP BY job_id
) AS a ON a.job_id = p.job_id
LEFT JOIN (
    SELECT id, MAX(updated_at) AS updated_at FROM training_jobs
    WHERE id IN (SELECT job_id FROM training_job_summary_pending) GROUP BY id
) AS j ON j.id = p.job_id
WHERE a.job_id IS NOT NULL OR j.id IS NOT NULL
"""
"""A marked job's summary row afresh: none when it has neither rounds nor a job row (deleted)."""
REFRESH_JOBS = (
    f"DELETE FROM training_job_summary WHERE {JOBS_PENDING}",
    f"INSERT INTO training_job_summary {SUMMARIZE_JOBS}",
    "DELETE FROM training_job_summary_pending",
)
MARK_ROUND_JOBS = """INSERT INTO training_job_summary_pending
SELECT DISTINCT job_id FROM training_rounds_pending
WHERE job_id NOT IN (SELECT job_id FROM training_job_summary_pending)"""
"""The jobs of the rounds about to be recomputed: their summary rows follow."""


def _mark_job(row: str) -> str:
    """Trigger body that marks the job of a `training_jobs` row (NEW or OLD) for `refresh_summaries`."""
    return f"""INSERT INTO training_job_summary_pending SELECT {row}.id WHERE NOT EXISTS (
        SELECT 1 FROM training_job_summary_pending WHERE job_id = {row}.id);"""


ROLLOUT_STEP = "g.user_id = r.user_id AND g.job_id = r.job_id AND g.step = r.step"

REWARDS_SUMMARY = f"""(
    SELECT json_group_object(key, json_object('count', n, 'avg', a, 'var', v, 'min', low, 'max', high))
    FROM (
        SELECT s.key, COUNT(s.value) AS n, {json_real(finite_mean("s.value"))} AS a,
               {finite_variance("s.value", json=True)} AS v, {json_real("MIN(s.value)")} AS low,
               {json_real("MAX(s.value)")} AS high
        FROM training_rollouts AS g, json_each(g.rewards) AS s
        WHERE {ROLLOUT_STEP}
        GROUP BY s.key
    )
)"""

SUMMARIZE_ROLLOUTS = f"""
SELECT r.user_id, r.job_id, r.step, COUNT(*),
       (SELECT COUNT(*) FROM (SELECT 1 FROM training_rollouts AS g WHERE {ROLLOUT_STEP}
                              GROUP BY g.generation, g.group_index)),
       (SELECT COUNT(*) FROM (SELECT 1 FROM training_rollouts AS g WHERE {ROLLOUT_STEP}
                              GROUP BY g.generation, g.group_index HAVING MIN(g.reward) = MAX(g.reward))),
       {finite_mean("r.reward")}, {finite_variance("r.reward")}, MIN(r.reward), MAX(r.reward),
       AVG(r.completion_tokens),
       AVG(r.completion_tokens * r.completion_tokens) - AVG(r.completion_tokens) * AVG(r.completion_tokens),
       MIN(r.completion_tokens), MAX(r.completion_tokens), SUM(r.truncated), COUNT(r.{PRIMARY_METRIC}),
       {", ".join(f"AVG(r.{name})" for name in METRICS)}, COALESCE({REWARDS_SUMMARY}, '{{}}'),
       MIN(r.created_at), MAX(r.created_at)
FROM training_rollouts AS r
"""
"""Population variances, E[x^2] - E[x]^2, since SQLite has no standard deviation; the reader takes roots."""


ROLLOUT_PENDING_TABLE = """
CREATE TABLE IF NOT EXISTS training_rollout_steps_pending (
    user_id TEXT NOT NULL, job_id TEXT NOT NULL, step INTEGER NOT NULL, PRIMARY KEY (user_id, job_id, step)
) WITHOUT ROWID
"""


def _mark_rollout_step(row: str) -> str:
    """Trigger body that marks the step of `row` (NEW or OLD) for `refresh_summaries`, as `_mark_round`."""
    where = f"user_id = {row}.user_id AND job_id = {row}.job_id AND step = {row}.step"
    return f"""INSERT INTO training_rollout_steps_pending SELECT {row}.user_id, {row}.job_id, {row}.step
        WHERE NOT EXISTS (SELECT 1 FROM training_rollout_steps_pending WHERE {where});"""


TRIGGERS = {
    "training_rounds_on_insert": f"""AFTER INSERT ON training_predictions
    BEGIN {_mark_round("NEW")} END""",
    "training_rounds_on_update": f"""AFTER UPDATE ON training_predictions
    BEGIN {_mark_round("OLD")} {_mark_round("NEW")} END""",
    "training_rounds_on_delete": f"""AFTER DELETE ON training_predictions
    BEGIN {_mark_round("OLD")} END""",
    "training_rollout_steps_on_insert": f"""AFTER INSERT ON training_rollouts
    BEGIN {_mark_rollout_step("NEW")} END""",
    "training_rollout_steps_on_update": f"""AFTER UPDATE ON training_rollouts
    BEGIN {_mark_rollout_step("OLD")} {_mark_rollout_step("NEW")} END""",
    "training_rollout_steps_on_delete": f"""AFTER DELETE ON training_rollouts
    BEGIN {_mark_rollout_step("OLD")} END""",
    "training_job_summary_on_insert": f"""AFTER INSERT ON training_jobs
    BEGIN {_mark_job("NEW")} END""",
    "training_job_summary_on_update": f"""AFTER UPDATE ON training_jobs
    BEGIN {_mark_job("OLD")} {_mark_job("NEW")} END""",
    "training_job_summary_on_delete": f"""AFTER DELETE ON training_jobs
    BEGIN {_mark_job("OLD")} END""",
    "training_rollouts_with_their_job": """AFTER DELETE ON training_jobs
    BEGIN DELETE FROM training_rollouts WHERE user_id = OLD.user_id AND job_id = OLD.id; END""",
}

PENDING = "(job_id, step) IN (SELECT job_id, step FROM training_rounds_pending)"
REFRESH_ROUNDS = (
    f"DELETE FROM training_rounds WHERE {PENDING}",
    f"INSERT INTO training_rounds {SUMMARIZE} WHERE {PENDING} GROUP BY job_id, step",
    MARK_ROUND_JOBS,
    "DELETE FROM training_rounds_pending",
)


def refresh_rounds(conn: sqlite3.Connection) -> None:
    """Recompute every marked round once from its rows (a round with no rows left disappears).

    Call inside the write transaction that marked them, so readers never see rows without their summary.
    """
    if not _has_pending_rounds(conn):
        return
    for statement in REFRESH_ROUNDS:
        conn.execute(statement)


PENDING_STEPS = (
    "(user_id, job_id, step) IN (SELECT user_id, job_id, step FROM training_rollout_steps_pending)"
)
REFRESH_ROLLOUT_STEPS = (
    f"DELETE FROM training_rollout_steps WHERE {PENDING_STEPS}",
    f"INSERT INTO training_rollout_steps {SUMMARIZE_ROLLOUTS} WHERE (r.user_id, r.job_id, r.step) IN "
    "(SELECT user_id, job_id, step FROM training_rollout_steps_pending) GROUP BY r.user_id, r.job_id, r.step",
    "DELETE FROM training_rollout_steps_pending",
)


ALL_ROLLOUT_STEPS = "SELECT DISTINCT user_id, job_id, step FROM training_rollouts"


def refresh_jobs(conn: sqlite3.Connection) -> None:
    """Recompute every marked job's summary row once, after its rounds (`refresh_rounds` marks them)."""
    if conn.execute("SELECT 1 FROM training_job_summary_pending LIMIT 1").fetchone() is None:
        return
    for statement in REFRESH_JOBS:
        conn.execute(statement)


def refresh_summaries(conn: sqlite3.Connection) -> None:
    """Recompute every marked round, job and rollout step once (inside the write transaction that marked
    them)."""
    refresh_rounds(conn)
    refresh_jobs(conn)
    if conn.execute("SELECT 1 FROM training_rollout_steps_pending LIMIT 1").fetchone() is not None:
        for statement in REFRESH_ROLLOUT_STEPS:
            conn.execute(statement)


MIGRATION_WAIT_MS = 1000
"""How long a migration waits for another process's write lock before the store counts as unavailable
(the writer then opens it later): a locked older file must not stall train begin for 30 s."""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing; a file from an older version gets new columns and its summary rebuilt.

    A current file is only read, so opening it never waits for a writer holding the lock; an older
    one waits for it at most `MIGRATION_WAIT_MS` (the store's busy timeout while it opens).
    """
    if schema_is_current(conn):
        return
    conn.executescript(TABLES)
    conn.execute("BEGIN IMMEDIATE")  # one process migrates and fills the summary, others wait
    try:
        _add_missing_columns(conn)
        for table in dict.fromkeys(name for name, *_ in TABLE_REWRITES):
            _rewrite(conn, table)
        for stale in STALE_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {stale}")
        for index in INDEXES:
            conn.execute(index)
        summaries_stale = _rounds_table_is_stale(conn)
        if summaries_stale:
            conn.execute("DROP TABLE IF EXISTS training_rounds")
            conn.execute(ROUNDS_TABLE)
            conn.execute(f"INSERT INTO training_rounds {SUMMARIZE} GROUP BY job_id, step")
        conn.execute(ROUNDS_INDEX)
        conn.execute(PENDING_TABLE)
        conn.execute(ROLLOUT_PENDING_TABLE)
        if summaries_stale:  # the rollout steps' summary is computed as the rounds' is: anew with it
            conn.execute(f"INSERT OR IGNORE INTO training_rollout_steps_pending {ALL_ROLLOUT_STEPS}")
        _create_job_summary(conn)
        for name, body in TRIGGERS.items():
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
            conn.execute(f"CREATE TRIGGER {name} {body}")
        refresh_summaries(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _create_job_summary(conn: sqlite3.Connection) -> None:
    """The job summary and its queue; a file from before it gets every job summarised now."""
    missing = _columns(conn, "training_job_summary") != list(JOB_SUMMARY_COLUMNS)
    if missing:
        conn.execute("DROP TABLE IF EXISTS training_job_summary")
    conn.execute(JOB_SUMMARY_TABLE)
    conn.execute(JOB_SUMMARY_INDEX)
    conn.execute(JOB_PENDING_TABLE)
    if missing:
        conn.execute(
            "INSERT OR IGNORE INTO training_job_summary_pending "
            "SELECT id FROM training_jobs UNION SELECT job_id FROM training_rounds"
        )


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, added in ADDED_COLUMNS.items():
        present = _columns(conn, table)
        for name, kind in added.items():
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def schema_is_readable(conn: sqlite3.Connection) -> bool:
    """True when this version's reads work on the file as it is: every column and summary they read,
    and no round waiting to be summarised. What only writes use (each row's run, the deleted runs, the
    triggers that keep the summaries, the tables' constraints, the indexes, which speed reads up but do
    not change them) may be older: a read-only file an earlier version wrote is read as it is, where it
    could not be migrated."""
    for table, added in ADDED_COLUMNS.items():
        if not set(added) - WRITE_ONLY_COLUMNS.get(table, set()) <= set(_columns(conn, table)):
            return False
    if _rounds_table_is_stale(conn) or _columns(conn, "training_job_summary") != list(JOB_SUMMARY_COLUMNS):
        return False
    return not _has_pending(conn)  # rows another program wrote are summarised on opening


def schema_is_current(conn: sqlite3.Connection) -> bool:
    """True when every column, table, index and trigger is this version's and no round waits to be
    summarised (read, not locked)."""
    if not schema_is_readable(conn) or not _columns(conn, "training_deleted_runs"):
        return False
    for table, added in WRITE_ONLY_COLUMNS.items():
        if not added <= set(_columns(conn, table)):
            return False
    if any(old in _table_sql(conn, table) for table, old, _, _ in TABLE_REWRITES):
        return False
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    if not _index_names() <= indexes:
        return False
    triggers = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall())
    return all(triggers.get(name) == f"CREATE TRIGGER {name} {body}" for name, body in TRIGGERS.items())


def _has_pending(conn: sqlite3.Connection) -> bool:
    """Rounds or rollout steps written but not summarised yet (by another program than the store)."""
    for table in (
        "training_rounds_pending",
        "training_job_summary_pending",
        "training_rollout_steps_pending",
    ):
        if not _columns(conn, table) or conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            return True
    return False


def _index_names() -> set[str]:
    """The names of this version's indexes, so a file from before one was added gets it on opening."""
    indexes = (*INDEXES, ROUNDS_INDEX, JOB_SUMMARY_INDEX)
    return {re.search(r"IF NOT EXISTS (\w+)", sql).group(1) for sql in indexes}


def _has_pending_rounds(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM training_rounds_pending LIMIT 1").fetchone() is not None


def _rounds_table_is_stale(conn: sqlite3.Connection) -> bool:
    """The summary is derived data: when its columns or its table's text differ from this version's, it
    is rebuilt."""
    return _table_sql(conn, "training_rounds").strip() != ROUNDS_TABLE.strip()


def _rewrite(conn: sqlite3.Connection, table: str) -> None:
    """Give an old file's table what `TABLE_REWRITES` says, keeping every row and column (SQLite cannot
    alter a key or a check: the table is copied into one created anew, as sqlite.org/lang_altertable.html
    describes), all of the table's rewrites in one copy. Its indexes and triggers go with the old table;
    `create_schema` makes them again."""
    sql = _table_sql(conn, table)
    due = [(old, new, extra) for name, old, new, extra in TABLE_REWRITES if name == table and old in sql]
    if not due:
        return
    for old, new, constraint in due:
        sql = sql.replace(old, new)
        if constraint:
            sql = sql[: sql.rstrip().rindex(")")] + f", {constraint})"
    sql = re.sub(rf'^CREATE TABLE "?{table}"?', f"CREATE TABLE {table}_rekeyed", sql, count=1)
    conn.execute(sql)
    conn.execute(f"INSERT INTO {table}_rekeyed SELECT * FROM {table}")
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {table}_rekeyed RENAME TO {table}")


def _table_sql(conn: sqlite3.Connection, table: str) -> str:
    """The CREATE TABLE statement SQLite keeps for a table; empty when there is no such table."""
    found = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return found[0] if found else ""
