"""Nothing lost with a real Trainer, on SQLite and on the Supabase emulation over real PostgreSQL.

Each fault is injected for real: unstorable text in the samples, a truncated old spool line, a store
locked (SQLite's write lock, a Postgres table lock) at train begin or at train end, SIGTERM to a
training subprocess, credentials that cannot write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from transformers import TrainerCallback

from predictions import ConfigError, PredictionsCallback
from predictions.__main__ import main
from predictions.delivery import writer as writer_module
from predictions.delivery.legacy import UNKNOWN_OWNER, legacy_spools
from predictions.delivery.outbox import LEASE_S, Outbox
from predictions.delivery.spool import outbox_path, replay
from predictions.delivery.writer import Writer
from predictions.store import SQLiteStore
from predictions.store.records import PageQuery, PredictionRow
from tests import helpers_training as h
from tests import zygote
from tests.helpers_outbox import kept, key_of
from tests.pg_fixtures import USER_A, service_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = h.pairs(12)
BACKENDS = ["sqlite", "supabase"]


@dataclass
class Backend:
    """A fresh store of one kind, a context manager that really locks it, and how a child reaches it."""

    store: Any
    lock: Callable[[], Any]
    short_timeout: Callable[[], Any]
    """The same store with a client timeout so short that a locked store is an outage."""
    env: dict[str, str]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, monkeypatch) -> Iterator[Backend]:
    monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if request.param == "sqlite":
        db = tmp_path / "p.db"
        env = {"PREDICTIONS_DB": str(db), "SUPABASE_URL": "", "SUPABASE_KEY": ""}
        chosen = Backend(SQLiteStore(db), lambda: h.locked(db), lambda: SQLiteStore(db, timeout_s=0.05), env)
    else:
        server = request.getfixturevalue("postgrest")
        database = request.getfixturevalue("supabase_database")
        env = {"SUPABASE_URL": server.url, "SUPABASE_KEY": server.service_key, "PREDICTIONS_USER_ID": USER_A}
        chosen = Backend(
            service_store(server),
            lambda: postgres_locked(database),
            lambda: service_store(server, timeout_s=1.0),
            env,
        )
    yield chosen
    chosen.store.close()


@contextmanager
def postgres_locked(conninfo: str):
    """Both tables locked by another session: every write waits, as behind a stalled database.

    The two locks are taken one after the other; a write of the run in between may hold the second
    table and wait for the first, and PostgreSQL then ends one of the two as a deadlock. When the
    blocker is the one ended, it takes the locks again (the run's write has gone through by then)."""
    with psycopg.connect(conninfo) as blocker:
        for attempt in range(5):
            try:
                blocker.execute(
                    "lock table public.training_jobs, public.training_predictions in access exclusive mode"
                )
                break
            except psycopg.errors.DeadlockDetected:
                blocker.rollback()
                if attempt == 4:
                    raise
        yield
        blocker.rollback()


def rows_of(store, job_id: str) -> list[tuple[int, int]]:
    frame = store.predictions_page(job_id, PageQuery(limit=1000)).rows
    return sorted(zip(frame["step"].tolist(), frame["sample_index"].tolist(), strict=True))


def status_of(store, job_id: str) -> str:
    return {job.id: job.status for job in store.list_jobs()}[job_id]


class AtEpoch(TrainerCallback):
    """Runs `action` once at the end of epoch `epoch` (before the callbacks listed after it)."""

    def __init__(self, epoch: int, action):
        self.epoch, self.action, self.done = epoch, action, False

    def on_epoch_end(self, args, state, control, **kwargs):
        if not self.done and round(state.epoch) >= self.epoch:
            self.done = True
            self.action()


class Lock:
    """A lock taken and released from Trainer hooks."""

    def __init__(self, make):
        self.make, self.held = make, None

    def take(self):
        self.held = self.make()
        self.held.__enter__()

    def release(self):
        if self.held is not None:
            self.held.__exit__(None, None, None)
            self.held = None


def test_nul_in_one_sample_and_a_lone_surrogate_in_another_are_stored_marked(backend, tmp_path):
    store = backend.store
    samples = [dict(pair) for pair in SAMPLES[:4]]
    samples[0]["response"] += "\x00"
    samples[1]["response"] = "\ud83d" + samples[1]["response"]
    callback = PredictionsCallback(samples, num_samples=4, max_new_tokens=3, store=store)
    h.trainer(tmp_path, [callback], run_name="poison").train()
    assert rows_of(store, callback.job_id) == [(step, i) for step in (4, 8) for i in range(4)]
    history = store.sample_history(callback.job_id, 0)
    assert history["ground_truth"].str.endswith("\ufffd").all()
    assert history["text_replacements"].tolist() == [1, 1]
    assert store.sample_history(callback.job_id, 1)["ground_truth"].str.startswith("\ufffd").all()
    assert store.sample_history(callback.job_id, 2)["text_replacements"].tolist() == [0, 0]
    assert status_of(store, callback.job_id) == "finished"
    assert Outbox(outbox_path(key_of(store).store)).quarantined() == []


def test_an_old_jsonl_spool_with_a_truncated_last_line_is_stored_by_the_next_run(
    backend, tmp_path, monkeypatch
):
    store = backend.store
    spool = legacy_spools(key_of(store).store, Path("unused"))[0]
    spool.parent.mkdir(parents=True, exist_ok=True)
    earlier = [
        PredictionRow("earlier", 1, step, i, "p", "x", "x", user_id=None) for step in (1, 2) for i in (0, 1)
    ]
    calls = [
        {"v": 1, "op": "write_predictions", "rows": [r.as_dict() for r in earlier if r.step == s]}
        for s in (1, 2)
    ]
    lines = [json.dumps(call) for call in calls]
    spool.write_text("\n".join(lines) + "\n" + lines[0][:40])  # killed in the middle of an append
    callback = PredictionsCallback(SAMPLES, num_samples=2, max_new_tokens=2, store=store)
    h.trainer(tmp_path, [callback], epochs=1, run_name="next").train()
    if "Supabase" in store.description:  # lines without an owner wait until someone adopts them
        waiting = Outbox(outbox_path(key_of(store).store)).pending()
        assert rows_of(store, "earlier") == [] and [key.owner for key in waiting] == [UNKNOWN_OWNER]
        for name, value in backend.env.items():
            monkeypatch.setenv(name, value)
        assert main(["spool", "replay", "--adopt"]) == 0
    assert rows_of(store, "earlier") == [(1, 0), (1, 1), (2, 0), (2, 1)]
    (torn,) = Outbox(outbox_path(key_of(store).store)).quarantined()
    assert "unreadable line" in torn.error and not spool.exists()
    assert [step for step, _ in rows_of(store, callback.job_id)] == [4, 4]


def test_a_store_locked_at_train_begin_and_free_later_gets_every_row(backend, tmp_path, monkeypatch):
    store, lock_of = backend.store, backend.lock
    monkeypatch.chdir(tmp_path)  # a spool in the working directory would be the wrong one
    lock = Lock(lock_of)
    lock.take()
    callback = PredictionsCallback(SAMPLES, num_samples=3, max_new_tokens=2, store=store)
    locked_at_step = []
    timer = AtEpoch(1, lock.release)
    recorder = type(
        "Began", (TrainerCallback,), {"on_step_begin": lambda *a, **k: locked_at_step.append(lock.held)}
    )
    try:
        h.trainer(tmp_path, [recorder(), callback, timer], epochs=3, run_name="locked").train()
    finally:
        lock.release()
    assert locked_at_step[0] is not None  # training began while the store was still locked
    assert [step for step, _ in rows_of(store, callback.job_id)] == [4] * 3 + [8] * 3 + [12] * 3
    assert status_of(store, callback.job_id) == "finished"
    assert not (tmp_path / ".predictions").exists() and kept(outbox_path(key_of(store).store)) == []


def test_a_sqlite_file_locked_when_the_run_opens_it_is_the_one_that_gets_the_rows(tmp_path, monkeypatch):
    db = tmp_path / "p.db"
    SQLiteStore(db).close()
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
    monkeypatch.chdir(tmp_path)
    lock = Lock(lambda: h.locked(db))
    lock.take()
    callback = PredictionsCallback(SAMPLES, num_samples=3, max_new_tokens=2)
    try:
        h.trainer(tmp_path, [callback, AtEpoch(1, lock.release)], epochs=2, run_name="opened").train()
    finally:
        lock.release()
    assert h.count_rows(db, callback.job_id) == 6
    assert not (tmp_path / ".predictions").exists()


def test_a_finish_after_an_outage_leaves_the_job_finished(backend, tmp_path):
    store, lock_of = backend.store, backend.lock
    short = backend.short_timeout()
    lock = Lock(lock_of)
    lock.take()
    callback = PredictionsCallback(SAMPLES, num_samples=2, max_new_tokens=2, store=short)
    try:
        h.trainer(tmp_path, [callback, AtEpoch(1, lock.release)], epochs=2, run_name="outage").train()
    finally:
        lock.release()
    Writer(store).close()  # whatever the run left in the spool is stored at the next open
    time.sleep(0.5)  # a request that timed out on the client may still land late on the server
    assert status_of(store, callback.job_id) == "finished"
    assert [step for step, _ in rows_of(store, callback.job_id)] == [4, 4, 8, 8]


@pytest.mark.timeout(180)
def test_a_store_hanging_at_train_end_gets_the_queued_rows_kept(backend, tmp_path, monkeypatch):
    store, lock_of = backend.store, backend.lock
    monkeypatch.setattr(writer_module, "CLOSE_TIMEOUT_S", 1.0)
    lock = Lock(lock_of)
    callback = PredictionsCallback(SAMPLES, num_samples=3, max_new_tokens=2, store=store)
    try:  # train() returns while the store is still locked (a wait for it would hang to the timeout)
        h.trainer(tmp_path, [AtEpoch(2, lock.take), callback], epochs=2, run_name="hang").train()
        calls = kept(outbox_path(key_of(store).store))
    finally:
        lock.release()
    assert [c["op"] for c in calls][-2:] == ["write_predictions", "finish_job"]
    assert [row["step"] for row in calls[-2]["rows"]] == [8, 8, 8]  # before it: a call still in flight
    monkeypatch.undo()  # the replay gets the usual close timeout: 1 s is too short on a loaded machine
    Writer(store).close()  # the next open replays what nobody holds
    # The run's own writer thread is still alive in this process, its call now answered: it holds the
    # claim on its outboxed calls and delivers them itself, a moment after the replay returned.
    outbox = outbox_path(key_of(store).store)
    wait_until(lambda: status_of(store, callback.job_id) == "finished" and kept(outbox) == [], 30.0)
    assert [step for step, _ in rows_of(store, callback.job_id)] == [4, 4, 4, 8, 8, 8]


PREEMPTED_RUN = """
import signal
import sys
import threading
from pathlib import Path

from transformers import TrainerCallback

from predictions import PredictionsCallback
from predictions.training import preemption
from tests import helpers_training as h

class Announce(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kwargs):
        print(f"round {state.global_step}", flush=True)

if "ignore-sigint" in sys.argv:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `nohup` and a shell's `&` do
scorers = {}
if "hanging-scorer" in sys.argv:  # never returns: the round is still being scored when the signal comes
    scorers["hangs"] = lambda prediction, truth, sample: threading.Event().wait()
    preemption.FLUSH_S = 4.0  # half of it waits for the scorer: 2 s show it given up as well as 10
callback = PredictionsCallback(
    h.pairs(12), num_samples=3, max_new_tokens=2, job_id="preempted", scorers=scorers
)
h.trainer(Path(sys.argv[1]), [callback, Announce()], epochs=int(sys.argv[2])).train()
"""


def start_run(backend, tmp_path, epochs: int = 200, *flags: str):
    """A training subprocess on the backend's store, its outbox at `tmp_path / "s.outbox.db"`, forked
    from the zygote (tests/zygote.py): it ends as a real interpreter would (test_zygote checks SIGTERM's
    default action, SIGINT and atexit on both)."""
    env = {
        **os.environ,
        **backend.env,
        "PYTHONPATH": str(ROOT),
        "PREDICTIONS_SPOOL": str(tmp_path / "s.outbox.db"),
    }
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return zygote.start_python("-c", PREEMPTED_RUN, tmp_path, str(epochs), *flags, cwd=ROOT, env=env, **pipes)


def first_round(run) -> list[str]:
    """Read the run's output until its first round is announced (queued for the writer)."""
    announced = [run.stdout.readline()]
    while announced[-1] and not announced[-1].startswith("round "):
        announced.append(run.stdout.readline())
    return announced


def announced_steps(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("round ")]


@pytest.mark.parametrize(
    ("backend", "signum"),
    [("sqlite", signal.SIGTERM), ("supabase", signal.SIGTERM), ("sqlite", signal.SIGHUP)],
    ids=["sqlite-SIGTERM", "supabase-SIGTERM", "sqlite-SIGHUP"],
    indirect=["backend"],
)
def test_sigterm_after_the_first_round_marks_the_job_failed_and_keeps_every_round(backend, tmp_path, signum):
    """SIGTERM on every store; SIGHUP (a closed terminal) takes the same path after the signal, so one
    store is enough for it."""
    store = backend.store
    # The run starts with the signal at its default, as from a terminal: under `nohup` (a CI runner's
    # way) the tests inherit SIGHUP ignored, and a signal ignored at the start stays ignored (test below).
    default = signal.signal(signum, signal.SIG_DFL)
    try:
        run = start_run(backend, tmp_path)
    finally:
        signal.signal(signum, default)
    announced = first_round(run)
    run.send_signal(signum)
    out, err = run.communicate(timeout=120)
    announced += out.splitlines()
    assert run.returncode == -signum, err  # the signal still did what it did before
    steps = announced_steps(announced)
    assert steps and steps[0] == 4
    Writer(store, spool_path=tmp_path / "s.outbox.db").close()  # the next open replays any kept call
    stored = {step for step, _ in rows_of(store, "preempted")}
    assert set(steps) <= stored
    assert status_of(store, "preempted") == "failed"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sigterm_while_a_round_is_being_scored_keeps_its_rows_and_fails_the_job(backend, tmp_path):
    """Rounds are scored off the training thread: a user scorer hangs on the first one, so SIGTERM finds it
    unscored. It is kept at once (with the built-in metrics where they were done), stored by the
    flush, and the job is marked failed."""
    store = backend.store
    run = start_run(backend, tmp_path, 200, "hanging-scorer")
    announced = first_round(run)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert run.returncode == -signal.SIGTERM, err
    assert "round(s) not scored yet (steps 4) kept unscored" in err
    assert announced_steps(announced + out.splitlines())[0] == 4
    Writer(store, spool_path=tmp_path / "s.outbox.db").close()  # the next open replays any kept call
    rows = store.predictions_page("preempted", PageQuery(limit=100)).rows
    assert (rows["step"] == 4).sum() == 3
    assert rows["hangs"].isna().all()
    assert status_of(store, "preempted") == "failed"


def test_a_second_sigterm_during_the_flush_loses_neither_the_rows_nor_the_job(backend, tmp_path):
    store, outbox = backend.store, tmp_path / "s.outbox.db"
    run = start_run(backend, tmp_path)
    announced = first_round(run)
    lock = Lock(backend.lock)
    lock.take()  # the store hangs: the flush would take its full 20 s
    try:
        run.send_signal(signal.SIGTERM)
        wait_until(lambda: any(call and call.get("status") == "failed" for call in kept(outbox)))
        run.send_signal(signal.SIGTERM)  # impatient: stop now
        out, err = run.communicate(timeout=120)
    finally:
        lock.release()
    assert run.returncode == -signal.SIGTERM, err
    assert "got SIGTERM again" in err
    steps = announced_steps(announced + out.splitlines())
    later = Outbox(outbox, clock=lambda: time.time() + LEASE_S)  # the killed run's claims have expired
    replay(store, later, key_of(store))
    assert set(steps) <= {step for step, _ in rows_of(store, "preempted")}
    assert status_of(store, "preempted") == "failed"


def test_ctrl_c_stops_the_job_as_the_users_own_and_keeps_every_round(backend, tmp_path):
    """SIGINT (Ctrl-C in a terminal, Kernel > Interrupt in a notebook) is the user's decision, not a fault:
    the job reads stopped, interrupted by the user, at the step reached of the Trainer's plan (200 epochs
    of 4 steps), and the run still ends in KeyboardInterrupt."""
    store = backend.store
    default = signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal
    try:
        run = start_run(backend, tmp_path)
    finally:
        signal.signal(signal.SIGINT, default)
    announced = first_round(run)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == -signal.SIGINT and err.endswith("KeyboardInterrupt\n"), err
    Writer(store, spool_path=tmp_path / "s.outbox.db").close()  # the next open replays any kept call
    assert set(announced_steps(announced + out.splitlines())) <= {
        step for step, _ in rows_of(store, "preempted")
    }
    job = {job.id: job for job in store.list_jobs()}["preempted"]
    assert job.status == "stopped" and job.stop_reason.describe() == (
        f"Stopped at step {job.stop_reason.step} of 800: interrupted by the user (KeyboardInterrupt)."
    )


def test_sigint_to_a_run_that_ignores_it_changes_nothing(backend, tmp_path):
    run = start_run(backend, tmp_path, 3, "ignore-sigint")
    announced = first_round(run)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert announced_steps(announced + out.splitlines()) == [4, 8, 12]
    assert [step for step, _ in rows_of(backend.store, "preempted")] == [4] * 3 + [8] * 3 + [12] * 3
    assert status_of(backend.store, "preempted") == "finished" and kept(tmp_path / "s.outbox.db") == []


def wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("anon key, nobody signed in", "SUPABASE_KEY is the anon key and nobody is signed in"),
        ("service key, no user", "PREDICTIONS_USER_ID is not set"),
        ("user_id='bob'", "user_id='bob' is not a user id"),
    ],
)
def test_each_credential_mistake_fails_before_the_first_step(
    postgrest, tmp_path, monkeypatch, mistake, message
):
    from predictions.store.supabase import SupabaseStore

    monkeypatch.delenv("PREDICTIONS_USER_ID", raising=False)
    options = {}
    if mistake.startswith("anon"):
        store = SupabaseStore(postgrest.url, postgrest.anon_key)
    elif mistake.startswith("service"):
        store = SupabaseStore(postgrest.url, postgrest.service_key)
    else:
        store, options = service_store(postgrest), {"user_id": "bob"}
    steps = []
    recorder = type("Steps", (TrainerCallback,), {"on_step_begin": lambda *a, **k: steps.append(1)})
    callback = PredictionsCallback(SAMPLES, num_samples=2, store=store, **options)
    with pytest.raises(ConfigError, match=message):
        h.trainer(tmp_path, [callback, recorder()], epochs=1).train()
    assert steps == []
