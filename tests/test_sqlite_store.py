"""What only the embedded store promises: a file shared by a writing and a reading process."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from predictions.store import SQLiteStore
from predictions.store.protocol import Store, sign_in_of, signed_in_email
from predictions.store.records import PageQuery, PredictionRow
from tests.helpers import wait_until

MIN_ROUNDS, MAX_ROUNDS, SAMPLES, MIN_READS = 30, 3000, 50, 20


def read_until_done(path: str, done, errors, reads) -> None:
    """A dashboard-like reader in another process: aggregate queries in a loop while rows arrive."""
    store = SQLiteStore(path)
    try:
        while not done.is_set():
            for job in store.list_jobs():
                store.trends(job.id)
                store.predictions_page(job.id, PageQuery(sort_by="char_error_rate", limit=20))
            with reads.get_lock():
                reads.value += 1
    except Exception as error:  # reported to the parent, which fails the test
        errors.put(repr(error))
    finally:
        store.close()


def test_a_second_process_reads_while_the_writer_writes(tmp_path):
    path = str(tmp_path / "shared.db")
    writer = SQLiteStore(path)
    context = multiprocessing.get_context("spawn")
    done, errors, reads = context.Event(), context.Queue(), context.Value("i", 0)
    reader = context.Process(target=read_until_done, args=(path, done, errors, reads))
    reader.start()
    try:
        wait_until(lambda: reads.value > 0 or not reader.is_alive(), 60, interval_s=0.01, what="a first read")
        reads_before, step = reads.value, 0
        while step < MIN_ROUNDS or (reads.value - reads_before < MIN_READS and step < MAX_ROUNDS):
            step += 1
            writer.write_predictions(
                [
                    PredictionRow("job", step, step, i, "p", "x" * i, "x" * 10, char_error_rate=0.5)
                    for i in range(SAMPLES)
                ]
            )
        reads_during = reads.value - reads_before
    finally:
        done.set()
        reader.join(timeout=60)
    assert errors.empty(), errors.get()
    assert reader.exitcode == 0
    assert reads_during >= MIN_READS
    assert writer.predictions_page("job").total_count == step * SAMPLES


def test_the_file_uses_write_ahead_logging(tmp_path):
    store = SQLiteStore(tmp_path / "wal.db")
    assert store._query("PRAGMA journal_mode", ())[0][0] == "wal"


def test_an_unopenable_path_is_a_store_error(tmp_path):
    import pytest

    from predictions.errors import StoreUnavailableError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreUnavailableError, match="cannot open the SQLite store"):
        SQLiteStore(blocker / "predictions.db")


def test_a_file_from_before_the_round_summary_gets_it_filled(tmp_path):
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    store.write_predictions(
        [PredictionRow("job", 1, 5, i, "p", "a", "a", char_error_rate=0.25 * i) for i in range(3)]
    )
    store._write(lambda conn: conn.execute("DROP TABLE training_rounds"))
    store.close()
    reopened = SQLiteStore(path)
    (round_,) = reopened.trends("job").rounds.to_dict("records")
    assert (round_["step"], round_["sample_count"], round_["avg_char_error_rate"]) == (5, 3, 0.25)


def test_rows_written_or_deleted_by_hand_keep_the_trends_right(sqlite_store):
    sqlite_store.write_predictions(
        [PredictionRow("job", 1, 5, i, "p", "a", "a", char_error_rate=0.5) for i in range(4)]
    )
    sqlite_store._write(
        lambda conn: conn.execute(
            "UPDATE training_predictions SET char_error_rate = 0.0 WHERE sample_index < 2"
        )
    )
    assert sqlite_store.trends("job").rounds["avg_char_error_rate"].tolist() == [0.25]
    sqlite_store._write(lambda conn: conn.execute("DELETE FROM training_predictions WHERE sample_index = 3"))
    assert sqlite_store.trends("job").rounds["sample_count"].tolist() == [3]
    sqlite_store._write(lambda conn: conn.execute("DELETE FROM training_predictions"))
    assert sqlite_store.trends("job").rounds.empty
    assert sqlite_store.list_jobs() == []


def test_the_embedded_store_is_a_store_without_sign_in(sqlite_store):
    assert isinstance(sqlite_store, Store)
    assert sign_in_of(sqlite_store) is None and signed_in_email(sqlite_store) is None


def test_job_rows_are_mapped_to_jobs_by_column_name(sqlite_store):
    sqlite_store.start_job("j", name="Job J", model="tiny", config={"lr": 0.1}, user_id="u")
    sqlite_store.write_predictions([PredictionRow("j", 2, 30, 0, "p", "a", "a", 1.0, 0.0, 1.0, 1.0)])
    sqlite_store.finish_job("j", status="failed")
    (job,) = sqlite_store.list_jobs()
    assert (job.id, job.status, job.name, job.model, job.user_id) == ("j", "failed", "Job J", "tiny", "u")
    assert sqlite_store.trends("j").config == {"lr": 0.1}
    assert (job.latest_epoch, job.latest_step, job.round_count) == (2, 30, 1)
    assert job.started_at <= job.updated_at == job.finished_at == job.last_active


OLD_SCHEMA = """
CREATE TABLE training_predictions (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, user_id TEXT NOT NULL, epoch INTEGER NOT NULL,
    step INTEGER NOT NULL, sample_index INTEGER NOT NULL, prompt TEXT NOT NULL, ground_truth TEXT,
    prediction TEXT NOT NULL, exact_match REAL, char_error_rate REAL, length_ratio REAL,
    word_overlap REAL, created_at TEXT NOT NULL, UNIQUE (job_id, step, sample_index)
);
CREATE TABLE training_rounds (
    job_id TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL, sample_count INTEGER NOT NULL,
    scored_count INTEGER NOT NULL, avg_exact_match REAL, avg_char_error_rate REAL, avg_length_ratio REAL,
    avg_word_overlap REAL, min_char_error_rate REAL, max_char_error_rate REAL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (job_id, step)
) WITHOUT ROWID;
INSERT INTO training_predictions VALUES ('r1', 'job', 'u', 1, 5, 0, 'p', 'a', 'a', 1, 0.5, 1, 1, 't');
"""


def test_a_file_from_before_user_scores_gets_their_columns_and_a_new_summary(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    store = SQLiteStore(path)
    assert store.trends("job").rounds["avg_char_error_rate"].tolist() == [0.5]
    store.write_predictions([PredictionRow("job", 1, 5, 1, "p", "b", "a", scores={"mine": 0.25})])
    rounds = store.trends("job").rounds
    assert rounds[["sample_count", "avg_mine", "max_mine"]].values.tolist() == [[2, 0.25, 0.25]]
    store.close()


OLD_JOBS = """
CREATE TABLE training_jobs (
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
ALTER TABLE training_jobs ADD COLUMN note TEXT;
INSERT INTO training_jobs VALUES ('job', 'u', 'Old job', 'tiny', 'finished', NULL, 's', 'u', 'f', 'kept');
"""


OLD_INDEX = "CREATE INDEX idx_training_predictions_job_step ON training_predictions (job_id, step);"
"""The rows' index before (job_id, step, sample_index) replaced it."""


def test_a_file_from_before_per_owner_keys_gets_them_and_keeps_every_row(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA + OLD_JOBS + OLD_INDEX)
    columns = {table: _columns(path, table) for table in ("training_predictions", "training_jobs")}
    before = {table: _rows(path, table, names) for table, names in columns.items()}
    SQLiteStore(path).close()
    store = SQLiteStore(path)  # a second open changes nothing more
    assert {table: _rows(path, table, names) for table, names in columns.items()} == before
    with sqlite3.connect(path) as conn:
        tables = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        conn.execute(
            "INSERT INTO training_jobs (id, user_id, status, started_at, updated_at)"
            " VALUES ('job', 'v', 'running', 's', 'u')"
        )
    assert "UNIQUE (user_id, job_id, step, sample_index)" in tables["training_predictions"]
    assert "PRIMARY KEY (user_id, id)" in tables["training_jobs"] and "note TEXT" in tables["training_jobs"]
    assert {"idx_training_predictions_job_epoch", "idx_training_predictions_job_step_sample"} <= indexes
    assert "idx_training_predictions_job_step" not in indexes  # replaced by (job_id, step, sample_index)
    store.write_predictions([PredictionRow("job", 1, 5, 0, "p", "other owner", "a", user_id="v")])
    assert store.predictions_page("job").total_count == 2  # both owners' rows: one local user reads all
    assert store.trends("job").rounds["sample_count"].tolist() == [2]
    store.close()


def _columns(path, table: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _rows(path, table: str, columns: list[str]) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall())


def summary_and_recomputed(store: SQLiteStore) -> tuple[list, list]:
    """The kept summary, and the same rounds aggregated afresh from the rows."""
    from predictions.store.sqlite_schema import SUMMARIZE

    kept = store._query("SELECT * FROM training_rounds ORDER BY job_id, step", ())
    fresh = store._query(f"{SUMMARIZE} GROUP BY job_id, step ORDER BY job_id, step", ())
    return kept, fresh


def test_each_write_leaves_the_summary_equal_to_its_rows_and_nothing_pending(sqlite_store):
    """The summary is recomputed once per written batch, not per row: batches that overlap rounds,
    rewrite rows, cross jobs and delete leave it exactly what aggregating the rows gives."""
    rows = [
        PredictionRow(f"job-{i % 2}", 1, step, i, "p", "a", "a", char_error_rate=0.1 * (i % 7),
                      scores={"judge": i / 10})
        for step in (1, 2, 3) for i in range(40)
    ]  # fmt: skip
    sqlite_store.write_predictions(rows[:70])
    sqlite_store.write_predictions(rows[50:])
    sqlite_store.write_predictions([PredictionRow("job-0", 1, 2, 4, "p", "b", "a", char_error_rate=1.0)])
    kept, fresh = summary_and_recomputed(sqlite_store)
    assert len(kept) == 6 and [row[:-2] for row in kept] == [row[:-2] for row in fresh]
    sqlite_store.delete_job("job-1")
    kept, fresh = summary_and_recomputed(sqlite_store)
    assert len(kept) == 3 and [row[:-2] for row in kept] == [row[:-2] for row in fresh]
    assert sqlite_store._query("SELECT COUNT(*) FROM training_rounds_pending", ()) == [(0,)]


def test_rows_written_outside_the_store_are_summarised_when_it_next_opens(tmp_path):
    path = tmp_path / "outside.db"
    SQLiteStore(path).write_predictions([PredictionRow("job", 1, 5, 0, "p", "a", "a", char_error_rate=0.5)])
    with sqlite3.connect(path) as conn:  # another program, without the store's code
        conn.execute(
            "INSERT INTO training_predictions (id, job_id, user_id, epoch, step, sample_index, prompt,"
            " prediction, char_error_rate, created_at) VALUES ('x', 'job', 'u', 1, 5, 1, 'p', 'a', 0.0, 't')"
        )
    assert SQLiteStore(path).trends("job").rounds["sample_count"].tolist() == [2]


def test_a_locked_older_file_is_unavailable_at_once_and_migrated_once_free(tmp_path):
    import threading

    from predictions.errors import StoreUnavailableError

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    # The lock is released at 8 s at the latest: a store that waited its 30 s busy timeout would then open
    # and the test fail. One that gives up after MIGRATION_WAIT_MS has the lock released at once.
    release = threading.Timer(8.0, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        with pytest.raises(StoreUnavailableError, match="locked"):
            SQLiteStore(path)
    finally:
        release.cancel()
        release.join()
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    store = SQLiteStore(path)
    assert store.trends("job").rounds["avg_char_error_rate"].tolist() == [0.5]
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000  # put back after
    store.close()


def test_a_file_from_before_the_job_summary_lists_every_job_when_opened(tmp_path):
    """The job list reads a summary kept with every write: an older file gets it filled on opening, and
    jobs another program wrote are listed at the store's next opening."""
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    store.start_job("started", name="A run", model="gpt2")
    store.write_predictions([PredictionRow("rows-only", 2, 30, i, "p", "x", "x") for i in range(3)])
    before = store.list_jobs()
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE training_job_summary")
    reopened = SQLiteStore(path)
    assert reopened.list_jobs() == before and [job.id for job in before] == ["rows-only", "started"]
    assert (before[0].latest_epoch, before[0].latest_step, before[0].round_count) == (2, 30, 1)
    reopened.close()
    with sqlite3.connect(path) as conn:  # another program, without the store's code
        conn.execute(
            "INSERT INTO training_jobs (id, user_id, name, started_at, updated_at)"
            " VALUES ('outside', 'u', 'By hand', '2999-01-01T00:00:00', '2999-01-01T00:00:00')"
        )
    assert SQLiteStore(path).find_job("outside").name == "By hand"
