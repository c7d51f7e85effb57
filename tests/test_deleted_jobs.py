"""A job deleted on the dashboard stays deleted (docs/reliability.md, problem 16), on both stores.

Every write names the writer's process run; deleting a job records the runs the store heard from for
it, and a later write of one of those runs (replayed from an outbox, retried, or from a run still
training) is dropped: acknowledged, logged once, never quarantined. A new run under the same job id
(a fresh one, or one resumed from the deleted job's checkpoint) has a new run id and is stored.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Callable

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import TrainerCallback

from predictions import PredictionsCallback
from predictions.__main__ import main
from predictions.delivery.outbox import Outbox
from predictions.delivery.spool import Replay, outbox_path, replay
from predictions.errors import JobDeletedError, StoreError
from predictions.store import SQLiteStore
from predictions.store.records import PageQuery, PredictionRow, RolloutRow, SeriesPoint
from tests import helpers_training as h
from tests.helpers import wait_until
from tests.helpers_outbox import kept, key_of
from tests.pg_fixtures import USER_A, USER_B, acting_as, user_store

DROPPED = "job 'job' was deleted on the dashboard"


def rows(step: int, run: str, job_id: str = "job", count: int = 3) -> list[dict]:
    return [PredictionRow(job_id, 1, step, index, "p", "x", "x", run=run).as_dict() for index in range(count)]


def rollouts(run: str, job_id: str = "job") -> list[dict]:
    row = RolloutRow(job_id, 2, 0, 0, 0, "prompt-0", "p", "c", {"len": 1.0}, 1.0, 1, False, run=run)
    return [row.as_dict()]


def series(step: int, run: str, job_id: str = "job") -> list[dict]:
    return [SeriesPoint(job_id, step, "loss", 0.5, run=run).as_dict()]


def start(run: str, job_id: str = "job", **details) -> dict:
    return {"op": "start_job", "job_id": job_id, "run": run, "seq": 1, **details}


def finish(run: str, status: str = "finished", job_id: str = "job", seq: int = 9) -> dict:
    return {"op": "finish_job", "job_id": job_id, "status": status, "run": run, "seq": seq}


def write(run: str, step: int, job_id: str = "job") -> dict:
    return {"op": "write_predictions", "rows": rows(step, run, job_id)}


def send(store, outbox: Outbox, calls: list[dict]) -> None:
    """The calls as the store took them live (the part of a run before its store went down)."""
    key = key_of(store)
    outbox.append(key, calls)
    result = replay(store, outbox, key)
    assert (result.pending, result.errors, dict(result.dropped.rows)) == (0, [], {})


def replay_kept(store, outbox: Outbox, calls: list[dict]) -> Replay:
    """The calls kept in the outbox while the store was down, replayed as `spool replay` does: every
    one acknowledged, none quarantined."""
    key = key_of(store)
    outbox.append(key, calls)
    result = replay(store, outbox, key)
    assert outbox.count(key) == 0 and outbox.quarantined() == []
    return result


@pytest.fixture
def outbox(tmp_path) -> Outbox:
    return Outbox(tmp_path / "outbox.db")


def stored_steps(store, job_id: str = "job") -> list[int]:
    return sorted(store.predictions_page(job_id, PageQuery(limit=1000)).rows["step"].tolist())


def gone(store, job_id: str = "job") -> bool:
    """Nothing of the job anywhere a reader looks: the list, its rows, rollouts and logged values."""
    return (
        store.find_job(job_id) is None
        and job_id not in {job.id for job in store.list_jobs()}
        and store.predictions_page(job_id, PageQuery(limit=1000)).total_count == 0
        and store.rollout_prompts(job_id).empty
        and store.training_series(job_id).empty
    )


def test_a_deleted_jobs_replayed_rows_and_status_calls_stay_dropped(store, outbox, caplog):
    send(store, outbox, [start("r1", name="bad run"), write("r1", 4)])
    store.delete_job("job")
    waiting = [
        write("r1", 8),
        {"op": "write_rollouts", "rows": rollouts("r1")},
        {"op": "write_series", "job_id": "job", "rows": series(8, "r1")},
        start("r1", name="bad run"),  # a start replayed again (its first copy was stored)
        finish("r1", "failed"),
    ]
    with caplog.at_level(logging.INFO, logger="predictions.delivery.spool"):
        result = replay_kept(store, outbox, waiting)
    assert result.stored == 5 and result.pending == 0
    assert gone(store)
    lines = [record.getMessage() for record in caplog.records if DROPPED in record.getMessage()]
    assert lines == [f"predictions: {DROPPED}: 5 rows of its run dropped, and 2 status call(s)"]
    with pytest.raises(JobDeletedError):  # the writer's own count of missing rows, too
        store.record_missing("job", 3, run="r1")
    assert gone(store)


def test_a_deletion_after_every_row_reached_the_store_keeps_the_job_deleted(store, outbox):
    send(store, outbox, [write("r1", 4), write("r1", 8)])  # rows only: the start waits in the outbox still
    store.delete_job("job")
    replay_kept(store, outbox, [start("r1"), write("r1", 8), finish("r1")])
    assert gone(store)


def test_a_new_run_with_the_same_job_id_after_the_deletion_is_stored_as_a_new_job(store, outbox):
    send(store, outbox, [start("r1", name="first"), write("r1", 4)])
    store.delete_job("job")
    send(store, outbox, [start("r2", name="again"), write("r2", 4)])
    replay_kept(store, outbox, [write("r1", 8), finish("r1", "failed")])  # the first run's, late
    job = store.find_job("job")
    assert (job.name, job.status, job.round_count) == ("again", "running", 1)
    assert stored_steps(store) == [4, 4, 4]
    send(store, outbox, [finish("r2")])
    assert store.find_job("job").status == "finished"


def test_a_run_resumed_from_the_deleted_jobs_checkpoint_is_a_new_job(store, outbox):
    send(store, outbox, [start("r1", run_number=1), write("r1", 4), write("r1", 8)])
    store.delete_job("job")
    resumed = [start("r2", run_number=2), write("r2", 12), finish("r2", seq=2) | {"run_number": 2}]
    send(store, outbox, resumed)
    replay_kept(store, outbox, [write("r1", 12), finish("r1", "failed") | {"run_number": 1}])
    assert store.find_job("job").status == "finished" and stored_steps(store) == [12, 12, 12]


def test_a_deletion_applies_to_its_owner_only(sqlite_store):
    """Another owner's job of the same id in the same file (an admin's store writing for several), even
    with a run id they happen to share, is stored as before."""
    sqlite_store.write_predictions([PredictionRow("job", 1, 4, 0, "p", "x", run="r1")])
    sqlite_store.delete_job("job")
    other = "11111111-1111-1111-1111-111111111111"
    sqlite_store.write_predictions([PredictionRow("job", 1, 4, 0, "p", "x", user_id=other, run="r1")])
    assert sqlite_store.predictions_page("job", PageQuery(limit=10)).total_count == 1


def test_a_call_holding_rows_of_a_deleted_job_and_of_another_stores_the_others(store, outbox):
    send(store, outbox, [write("r1", 4)])
    store.delete_job("job")
    mixed = {"op": "write_predictions", "rows": rows(8, "r1") + rows(8, "r1", job_id="kept")}
    result = replay_kept(store, outbox, [mixed])
    assert gone(store) and stored_steps(store, "kept") == [8, 8, 8]
    assert dict(result.dropped.rows) == {"job": 3}


JOB_IDS = itertools.count()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    arrived=st.integers(0, 4),
    repeats=st.lists(st.integers(0, 4), max_size=4),
    then_new_run=st.booleans(),
)
def test_any_interleaving_of_a_deletion_and_the_runs_calls_keeps_it_deleted(
    store, outbox, arrived, repeats, then_new_run
):
    """Run r1's five calls: the first `arrived` reached the store before the deletion, the rest (and
    `repeats`, retried copies of any) after it. Whatever the order, nothing of r1 shows afterwards; a
    deletion before anything arrived finds no job, and r1 is then a job like any other."""
    job = f"job-{next(JOB_IDS)}"
    calls = [start("r1", job), *(write("r1", step, job) for step in (4, 8, 12)), finish("r1", job_id=job)]
    send(store, outbox, calls[:arrived])
    if arrived:
        store.delete_job(job)
    else:
        with pytest.raises(StoreError):
            store.delete_job(job)
    replay_kept(store, outbox, calls[arrived:] + [calls[index] for index in repeats])
    if then_new_run:
        send(store, outbox, [start("r2", job), write("r2", 16, job)])
    expected_steps = ([] if arrived else [4, 8, 12]) + ([16] if then_new_run else [])
    assert sorted(set(stored_steps(store, job))) == expected_steps
    assert (store.find_job(job) is None) == (arrived > 0 and not then_new_run)


def test_an_existing_file_gains_the_deleted_runs_and_keeps_its_rows(tmp_path):
    path = tmp_path / "predictions.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:  # the file as the version before this one left it
        conn.execute("DROP TABLE training_deleted_runs")
        for table in ("training_predictions", "training_rollouts", "training_series"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN run")
        conn.execute(
            "INSERT INTO training_predictions (id, job_id, user_id, epoch, step, sample_index, prompt, "
            "prediction, created_at) VALUES ('a', 'old', 'u', 1, 1, 0, 'p', 'x', '2026-01-01')"
        )
    store = SQLiteStore(path)
    try:
        assert store.predictions_page("old", PageQuery()).total_count == 1
        store.write_predictions([PredictionRow("job", 1, 4, 0, "p", "x", run="r1")])
        store.delete_job("job")
        with pytest.raises(JobDeletedError):
            store.write_predictions([PredictionRow("job", 1, 8, 0, "p", "x", run="r1")])
        store.delete_job("old")  # rows without a run (an older writer's): deleted, nothing recorded
        store.write_predictions([PredictionRow("old", 1, 1, 0, "p", "x")])
        assert store.predictions_page("old", PageQuery()).total_count == 1
    finally:
        store.close()


class LockAfterFirstRound(TrainerCallback):
    """Takes the SQLite file's write lock once the first round is stored: the store is down from then
    on, so the later rounds, the logged values and the finish wait in the outbox."""

    def __init__(self, db, job_id: Callable[[], str]):
        self.db, self.job_id, self.lock = db, job_id, None

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.lock is None:
            wait_until(lambda: h.count_rows(self.db, self.job_id()) == 3)
            self.lock = h.locked(self.db)
            self.lock.__enter__()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.__exit__(None, None, None)


@pytest.mark.slow
def test_a_trainer_run_deleted_while_its_rounds_wait_stays_deleted_after_spool_replay(
    tmp_path, monkeypatch, capsys
):
    db = tmp_path / "p.db"
    SQLiteStore(db).close()
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
    monkeypatch.chdir(tmp_path)
    callback = PredictionsCallback(
        h.pairs(12), num_samples=3, max_new_tokens=2, store=SQLiteStore(db, timeout_s=0.05)
    )
    lock = LockAfterFirstRound(db, lambda: callback.job_id)
    try:
        h.trainer(tmp_path, [callback, lock], epochs=3, run_name="deleted").train()
    finally:
        lock.release()
    store = SQLiteStore(db)
    outbox = outbox_path(key_of(store).store)
    assert [call["op"] for call in kept(outbox)].count("write_predictions") == 2  # rounds 8 and 12
    assert store.find_job(callback.job_id).status == "running"  # its finish waits too
    store.delete_job(callback.job_id)  # on the dashboard: a bad run
    capsys.readouterr()
    assert main(["spool", "replay"]) == 0
    printed = capsys.readouterr().out
    assert f"job {callback.job_id!r} was deleted on the dashboard: " in printed, printed
    assert "status call(s)" in printed and "0 still pending" in printed
    assert gone(store, callback.job_id) and h.count_rows(db, callback.job_id) == 0
    assert kept(outbox) == [] and Outbox(outbox).quarantined() == []
    store.close()


def test_a_users_deletion_never_drops_another_users_writes(postgrest, supabase_database):
    """Row-level security: B's job of the same id, even under a run id A's deletion recorded, is
    stored; B neither reads A's deletions nor records one for A."""
    alice, bob = user_store(postgrest, USER_A), user_store(postgrest, USER_B)
    try:
        alice.write_predictions([PredictionRow("job", 1, 4, 0, "p", "x", run="r1")])
        alice.delete_job("job")
        with pytest.raises(JobDeletedError):
            alice.write_predictions([PredictionRow("job", 1, 8, 0, "p", "x", run="r1")])
        bob.start_job("job", run="r1", seq=1)
        bob.write_predictions([PredictionRow("job", 1, 8, 0, "p", "x", run="r1")])
        assert bob.find_job("job").round_count == 1 and alice.find_job("job") is None
    finally:
        alice.close()
        bob.close()
    with acting_as(supabase_database, "authenticated", USER_B) as conn:
        assert conn.execute("select count(*) from public.training_deleted_runs").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "insert into public.training_deleted_runs (user_id, job_id, run) values (%s, 'job', 'r9')",
                (USER_A,),
            )
