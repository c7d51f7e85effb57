"""Rows kept nowhere are counted on their job, and the dashboard says so (issue 20).

Where the local outbox cannot be written (a read-only folder, a full disk) and the store does not take
a row, the row is named in an ERROR line and counted in the job's `rows_missing`, by run, so a retried
count never adds up twice. Both stores (SQLite, and the Supabase emulation over real PostgreSQL); the
refusals are real (a trigger in SQLite, a check constraint in Postgres, a Postgres table lock).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from predictions import ConfigError, PredictionsCallback
from predictions.dashboard.widgets import missing_text, plain
from predictions.delivery.writer import Writer
from predictions.store import SQLiteStore, open_store
from predictions.store.records import PredictionRow
from tests import helpers_training as h
from tests.helpers import wait_until
from tests.pg_fixtures import USER_A, USER_B, service_store, user_store
from tests.test_ingest_keys import create_key, trainer_env

BACKENDS = ["sqlite", "supabase"]


def missing(store: Any, job_id: str) -> int | None:
    """The job's `rows_missing` as the job list shows it; None when the job is not listed."""
    return next((job.rows_missing for job in store.list_jobs() if job.id == job_id), None)


def rows(job_id: str, step: int, count: int = 4) -> list[PredictionRow]:
    return [PredictionRow(job_id, 1, step, i, f"p{i}", f"a{i}", f"a{i}") for i in range(count)]


def stored(store: Any, job_id: str) -> list[tuple[int, int]]:
    frame = store.rows_after(job_id)
    return sorted(zip(frame["step"].tolist(), frame["sample_index"].tolist(), strict=True))


def unwritable_outbox(tmp_path: Path) -> Path:
    """An outbox path under a regular file: it can never be created (the tests run as root, which
    ignores permissions, so a read-only folder would not stop it)."""
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "outbox.db"


# the store's side: a count per run, summed on the job (contract: every backend)


def test_a_runs_count_is_set_not_added_and_the_job_shows_the_sum_of_its_runs(store):
    store.start_job("job", name="J", run="r1", seq=1)
    store.record_missing("job", 3, run="r1")
    store.record_missing("job", 3, run="r1")  # a retry, or the count again at finish
    assert missing(store, "job") == 3
    store.record_missing("job", 2, run="r2")
    assert missing(store, "job") == 5
    store.record_missing("job", 0, run="r1")  # r1's held rows were stored after all
    assert missing(store, "job") == 2
    store.finish_job("job", run="r1", seq=2)
    store.record_missing("job", 4, run="r2")
    (job,) = store.list_jobs()
    assert (job.status, job.name, job.rows_missing) == ("finished", "J", 4)  # the count moves no status


def test_a_count_that_arrives_before_the_start_creates_the_job_and_keeps_its_count(store):
    store.record_missing("early", 7, run="r1")  # the start itself may be among what was kept nowhere
    assert missing(store, "early") == 7
    store.start_job("early", name="Early", run="r1", seq=1)
    store.write_predictions(rows("early", 1))
    (job,) = store.list_jobs()
    assert (job.name, job.status, job.rows_missing, job.round_count) == ("Early", "running", 7, 1)


def test_a_job_nobody_lost_rows_of_shows_none(store):
    store.start_job("fine", run="r1", seq=1)
    store.write_predictions(rows("fine", 1))
    assert missing(store, "fine") == 0


@pytest.mark.parametrize("count", [-1, 1.5, True, "3"])
def test_a_count_that_is_not_a_whole_number_is_refused_naming_it(store, count):
    with pytest.raises(
        ConfigError, match=r"rows=.* is not a count of rows; valid: a whole number, 0 or more"
    ):
        store.record_missing("job", count, run="r1")


def test_an_ingest_key_records_missing_rows_as_its_owner_only(postgrest, monkeypatch, tmp_path):
    trainer_env(monkeypatch, postgrest, create_key(postgrest, USER_A, "laptop"))
    trainer = open_store(env_file=tmp_path / "absent.env")
    trainer.start_job("keyed", name="Keyed", run="r1", seq=1)
    trainer.record_missing("keyed", 5, run="r1")
    trainer.record_missing("never-started", 2, run="r1")
    ada, bob = user_store(postgrest, USER_A), user_store(postgrest, USER_B)
    assert {job.id: job.rows_missing for job in ada.list_jobs()} == {"keyed": 5, "never-started": 2}
    assert bob.list_jobs() == []
    bob.record_missing("keyed", 9, run="r9")  # Bob's own job of that name: Ada's count is untouched
    assert missing(ada, "keyed") == 5 and missing(bob, "keyed") == 9


def test_postgres_refuses_counts_by_run_that_are_not_an_object(postgrest, supabase_database):
    service_store(postgrest).start_job("job", run="r1", seq=1)
    with psycopg.connect(supabase_database) as conn, pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("update training_jobs set rows_missing_runs = '[1, 2]' where id = 'job'")


def test_an_older_sqlite_file_gains_the_count_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "old.db"
    SQLiteStore(path).start_job("old-job", name="kept")
    with sqlite3.connect(path) as conn:  # as the previous version left it: no count, the older index
        conn.execute("DROP INDEX idx_training_jobs_picker")
        conn.execute("ALTER TABLE training_jobs DROP COLUMN rows_missing_runs")
        conn.execute("ALTER TABLE training_jobs DROP COLUMN rows_missing")
        conn.execute(
            "CREATE INDEX idx_training_jobs_listed ON training_jobs "
            "(id, user_id, status, name, model, started_at, updated_at, finished_at, stop_reason)"
        )
    store = SQLiteStore(path)
    assert missing(store, "old-job") == 0
    store.record_missing("old-job", 2, run="r1")
    assert missing(store, "old-job") == 2
    with sqlite3.connect(path) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "idx_training_jobs_picker" in indexes and "idx_training_jobs_listed" not in indexes


# the writer's side: counted when the loss happens, again at finish


@dataclass
class Refusing:
    """A fresh store of one kind, and a context manager in which it refuses some samples' rows for good."""

    store: Any
    refusing: Any


@pytest.fixture(params=BACKENDS)
def refusing_store(request, tmp_path) -> Iterator[Refusing]:
    if request.param == "sqlite":
        db = tmp_path / "p.db"
        chosen = Refusing(SQLiteStore(db), lambda *indices: sqlite_refusing(db, *indices))
    else:
        server = request.getfixturevalue("postgrest")
        database = request.getfixturevalue("supabase_database")
        chosen = Refusing(
            service_store(server),
            lambda *indices: postgres_refusing(database, *indices),
        )
    yield chosen
    chosen.store.close()


@contextmanager
def sqlite_refusing(db: Path, *indices: int) -> Iterator[None]:
    """A trigger that aborts every write of these samples: SQLite's constraint error, a refusal for good."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON training_predictions "
            f"WHEN NEW.sample_index IN ({', '.join(map(str, map(int, indices)))}) "
            "BEGIN SELECT RAISE(ABORT, 'sample refused for the test'); END"
        )
    try:
        yield
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TRIGGER refuse_one")


@contextmanager
def postgres_refusing(database: str, *indices: int) -> Iterator[None]:
    """A check constraint that refuses these samples (23514: PostgREST answers 400, a refusal for good)."""
    with psycopg.connect(database) as conn:
        conn.execute(
            "alter table public.training_predictions add constraint refused_for_the_test "
            f"check (sample_index not in ({', '.join(map(str, map(int, indices)))})) not valid"
        )
    try:
        yield
    finally:
        with psycopg.connect(database) as conn:
            conn.execute("alter table public.training_predictions drop constraint refused_for_the_test")


@contextmanager
def predictions_locked(database: str) -> Iterator[None]:
    with psycopg.connect(database) as conn:
        conn.execute("lock table public.training_predictions in access exclusive mode")
        yield
        conn.rollback()


def test_rows_refused_with_no_outbox_are_counted_on_the_job_as_they_are_lost(
    refusing_store, tmp_path, caplog
):
    store = refusing_store.store
    writer = Writer(store, spool_path=unwritable_outbox(tmp_path), backoff_s=0.01)
    with caplog.at_level(logging.ERROR), refusing_store.refusing(1):
        writer.start_job("job", name="Job")
        writer.write(rows("job", 1))
        wait_until(lambda: missing(store, "job") == 1, 20)  # recorded while the run goes on
        writer.write(rows("job", 2))
        writer.finish_job("job")
        writer.close()
    assert missing(store, "job") == 2
    assert stored(store, "job") == [(step, i) for step in (1, 2) for i in (0, 2, 3)]
    assert store.list_jobs()[0].status == "finished"
    refusals = [r.getMessage() for r in caplog.records if "refused 1 row(s)" in r.getMessage()]
    assert len(refusals) == 2 and all("(sample 1)" in text for text in refusals)


def test_the_rows_of_a_round_kept_nowhere_are_named_in_one_error_line_with_their_data(
    refusing_store, tmp_path, caplog
):
    store = refusing_store.store
    writer = Writer(store, spool_path=unwritable_outbox(tmp_path), backoff_s=0.01)
    with caplog.at_level(logging.ERROR), refusing_store.refusing(1, 3):
        writer.write(rows("job", 1, count=8))
        writer.close()
    (line,) = [r.getMessage() for r in caplog.records if "for good" in r.getMessage()]
    assert "sample 1)" in line and "sample 3)" in line and "the quarantine cannot be written" in line
    assert "'prompt': 'p1'" in line and "'prompt': 'p3'" in line  # the rows themselves, not only named
    assert missing(store, "job") == 2 and len(stored(store, "job")) == 6


def test_rows_held_while_the_store_half_answers_are_counted_then_cleared_once_stored(
    postgrest, supabase_database, tmp_path, caplog
):
    """The predictions table locked, the jobs table free: the rows wait in memory (no outbox) and the
    job says so; once the table is free they are stored and the count goes back to 0. (A SQLite lock
    takes the whole file, so there the count could not be written while the rows wait.)"""
    store = service_store(postgrest)
    quick = service_store(postgrest, timeout_s=0.5)
    writer = Writer(quick, spool_path=unwritable_outbox(tmp_path), retries=1, backoff_s=0.05)
    with caplog.at_level(logging.ERROR), predictions_locked(supabase_database):
        writer.write(rows("job", 1))
        wait_until(lambda: missing(store, "job") == 4, 30)  # held in memory, told on the job
    writer.write(rows("job", 2))
    writer.close()
    assert stored(store, "job") == [(step, i) for step in (1, 2) for i in range(4)]
    assert missing(store, "job") == 0  # every held row stored: nothing is missing any more
    assert "can be neither stored nor kept" in caplog.text and "LOST" not in caplog.text


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_trainer_run_with_no_outbox_and_a_refusing_store_marks_its_job(
    refusing_store, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("PREDICTIONS_SPOOL", str(unwritable_outbox(tmp_path)))
    store = refusing_store.store
    callback = PredictionsCallback(h.pairs(12), sample_indices=[0, 1, 2, 3], max_new_tokens=3, store=store)
    with caplog.at_level(logging.ERROR), refusing_store.refusing(2):
        h.trainer(tmp_path, [callback], run_name="half-kept").train()
    job_id = callback.job_id
    assert stored(store, job_id) == [(step, i) for step in (4, 8) for i in (0, 1, 3)]
    (job,) = store.list_jobs()
    assert (job.status, job.rows_missing) == ("finished", 2)  # one sample, two rounds
    assert caplog.text.count("refused 1 row(s) of job") == 2


# the dashboard: the notice, as text, with what to do


@pytest.fixture
def lossy_db(tmp_path) -> Path:
    """A job three of whose rows were kept nowhere, and one that lost none."""
    db = tmp_path / "dash.db"
    store = SQLiteStore(db)
    for job_id in ("lossy", "whole"):
        store.start_job(job_id, name=f"{job_id} run", run="r1", seq=1)
        for step in (1, 2):
            store.write_predictions(rows(job_id, step))
    store.record_missing("lossy", 3, run="r1")
    store.close()
    return db


def errors(elements: Any) -> list[str]:
    return [element.value for element in elements.error]


def test_trends_and_the_sidebar_say_how_many_rows_are_missing_and_what_to_do(open_app, lossy_db):
    shown = plain(missing_text(3))  # as text: every Markdown character escaped
    assert missing_text(3).startswith("3 rows missing: the outbox could not be written.")
    assert "PREDICTIONS_SPOOL" in missing_text(3) and "ERROR line" in missing_text(3)  # what to do
    at = open_app(lossy_db, job="lossy")
    assert shown in errors(at.main) and shown in errors(at.sidebar)
    at.switch_page("pages/samples.py").run()
    assert shown in errors(at.sidebar)  # every page's sidebar


def test_a_job_that_lost_no_rows_shows_no_notice(open_app, lossy_db):
    at = open_app(lossy_db, job="whole")
    assert not any("missing" in text for text in errors(at.main) + errors(at.sidebar))


def test_the_notice_counts_in_words():
    assert missing_text(1).startswith("1 row missing:") and missing_text(12345).startswith("12,345 rows")
