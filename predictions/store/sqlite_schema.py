"""The embedded store's schema: the Postgres tables of supabase/migrations/, plus a per-round summary.

`training_rounds` holds each round's aggregates, kept right by triggers on every insert, update and
delete of `training_predictions` (whoever writes), so the trends chart reads ~100 summary rows instead
of averaging a job's 10,000 rows on every refresh.
"""

from __future__ import annotations

import sqlite3

TABLES = """
CREATE TABLE IF NOT EXISTS training_jobs (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT,
    model TEXT,
    status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'failed')),
    config TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
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
    exact_match REAL,
    char_error_rate REAL,
    length_ratio REAL,
    word_overlap REAL,
    created_at TEXT NOT NULL,
    UNIQUE (job_id, step, sample_index)
);
CREATE INDEX IF NOT EXISTS idx_training_predictions_job_epoch ON training_predictions (job_id, epoch);
CREATE INDEX IF NOT EXISTS idx_training_predictions_job_step ON training_predictions (job_id, step);
"""

ROUNDS_TABLE = """
CREATE TABLE training_rounds (
    job_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    sample_count INTEGER NOT NULL,
    scored_count INTEGER NOT NULL,
    avg_exact_match REAL,
    avg_char_error_rate REAL,
    avg_length_ratio REAL,
    avg_word_overlap REAL,
    min_char_error_rate REAL,
    max_char_error_rate REAL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job_id, step)
) WITHOUT ROWID
"""

SUMMARIZE = """
SELECT job_id, step, MAX(epoch), COUNT(*), COUNT(char_error_rate),
       AVG(exact_match), AVG(char_error_rate), AVG(length_ratio), AVG(word_overlap),
       MIN(char_error_rate), MAX(char_error_rate), MIN(created_at), MAX(created_at)
FROM training_predictions
"""


def _refresh_round(row: str) -> str:
    """Trigger body that recomputes the round of `row` (NEW or OLD) from its prediction rows."""
    return f"""
    DELETE FROM training_rounds WHERE job_id = {row}.job_id AND step = {row}.step;
    INSERT INTO training_rounds {SUMMARIZE}
    WHERE job_id = {row}.job_id AND step = {row}.step GROUP BY job_id, step;
    """


TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS training_rounds_on_insert AFTER INSERT ON training_predictions
    BEGIN {_refresh_round("NEW")} END""",
    f"""CREATE TRIGGER IF NOT EXISTS training_rounds_on_update AFTER UPDATE ON training_predictions
    BEGIN {_refresh_round("OLD")} {_refresh_round("NEW")} END""",
    f"""CREATE TRIGGER IF NOT EXISTS training_rounds_on_delete AFTER DELETE ON training_predictions
    BEGIN {_refresh_round("OLD")} END""",
)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing; a file from before the summary table gets it filled from its rows."""
    conn.executescript(TABLES)
    conn.execute("BEGIN IMMEDIATE")  # one process creates and fills the summary, others wait
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'training_rounds'").fetchone():
            conn.execute(ROUNDS_TABLE)
            conn.execute(f"INSERT INTO training_rounds {SUMMARIZE} GROUP BY job_id, step")
        for trigger in TRIGGERS:
            conn.execute(trigger)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
