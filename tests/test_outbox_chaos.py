"""Concurrency by counting: 4 writer processes and 2 replayers share one outbox while the store flaps
(its write lock taken and released at random), some of them are SIGKILLed at random, and then every
row a writer had appended is counted: in the store exactly once, or still in the outbox. None lost."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from predictions.delivery.outbox import Key, Outbox
from predictions.delivery.spool import replay
from predictions.store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
ROUNDS, ROWS = 30, 5

WRITER = """
import sys
from predictions.delivery.outbox import Key, Outbox
from predictions.store.records import PredictionRow

path, store_id, job = sys.argv[1:4]
rounds, rows = int(sys.argv[4]), int(sys.argv[5])
outbox, key = Outbox(path), Key(store_id, "local user")
for step in range(1, rounds + 1):
    batch = [PredictionRow(job, 1, step, i, "p", "x").as_dict() for i in range(rows)]
    call = {"op": "write_predictions", "rows": batch}
    outbox.append(key, [call])
    print(step, flush=True)  # appended: from here on this round must never be lost
"""

REPLAYER = """
import sys, time
from pathlib import Path
from predictions.delivery.outbox import Key, Outbox
from predictions.delivery.spool import replay
from predictions.store import SQLiteStore

path, db, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
store = SQLiteStore(db, timeout_s=0.02)
outbox, key = Outbox(path), Key(*store.outbox_key())
while not stop.exists():
    replay(store, outbox, key, batch=5, lease_s=1.0)
    time.sleep(0.01)
"""


def spawn(script: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def flap(db: Path, stop: threading.Event, seed: int) -> None:
    """Take and release the store's write lock at random: an outage every few tens of milliseconds."""
    chance = random.Random(seed)
    conn = sqlite3.connect(db, isolation_level=None)
    while not stop.is_set():
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(chance.uniform(0.01, 0.15))
        conn.execute("ROLLBACK")
        time.sleep(chance.uniform(0.01, 0.15))
    conn.close()


@pytest.mark.timeout(180)
def test_writers_and_replayers_killed_at_random_while_the_store_flaps_lose_nothing(tmp_path):
    chance = random.Random(20)
    db, path, stop_file = tmp_path / "p.db", tmp_path / "p.outbox.db", tmp_path / "stop"
    store = SQLiteStore(db)
    key = Key(*store.outbox_key())
    Outbox(path).count(key)  # create the outbox before the processes race to
    stop_flapping = threading.Event()
    flapper = threading.Thread(target=flap, args=(db, stop_flapping, 20))
    flapper.start()
    writers = {f"w{n}": spawn(WRITER, path, key.store, f"w{n}", ROUNDS, ROWS) for n in range(4)}
    replayers = [spawn(REPLAYER, path, db, stop_file) for _ in range(2)]
    appended: dict[str, list[int]] = {job: [] for job in writers}
    try:
        doomed = chance.sample(sorted(writers), 2)
        for job in doomed:  # killed mid-run, after a random number of rounds
            appended[job] = read_until(writers[job], chance.randint(3, ROUNDS - 5))
            writers[job].send_signal(signal.SIGKILL)
        replayers[0].send_signal(signal.SIGKILL)  # its leased entries must come back
        replayers.append(spawn(REPLAYER, path, db, stop_file))
        for job, run in writers.items():
            appended[job] += printed(run)
    finally:
        stop_flapping.set()
        flapper.join()
        stop_file.write_text("")
        for run in replayers:
            run.wait(timeout=60)
    # a doomed writer is killed mid-run, unless it finished all its rounds while the other was read first
    codes = [writers[job].returncode for job in doomed]
    assert set(codes) <= {-signal.SIGKILL, 0} and -signal.SIGKILL in codes, codes
    assert all(writers[job].returncode == 0 for job in writers if job not in doomed)

    outbox = Outbox(path, clock=lambda: time.time() + 3600)  # every lease a killed replayer held: expired
    left = sum(len(calls) for calls in outbox.pending().values())
    replay(store, outbox, key)
    with sqlite3.connect(db) as conn:
        counted = conn.execute(
            "SELECT job_id, step, sample_index, COUNT(*) FROM training_predictions GROUP BY 1, 2, 3"
        ).fetchall()
    assert all(count == 1 for *_, count in counted)  # stored once
    stored = {(job, step, index) for job, step, index, _ in counted}
    expected = {(job, step, i) for job, steps in appended.items() for step in steps for i in range(ROWS)}
    assert expected <= stored, f"{len(expected - stored)} row(s) lost"
    assert outbox.pending() == {} and outbox.quarantined() == []
    print(f"appended {len(expected)} rows, stored {len(stored)}; {left} call(s) left for the last replay")


def read_until(run: subprocess.Popen, step: int) -> list[int]:
    """The rounds a writer announces, read until it announced `step`."""
    steps = [int(run.stdout.readline())]
    while steps[-1] < step:
        steps.append(int(run.stdout.readline()))
    return steps


def printed(run: subprocess.Popen) -> list[int]:
    """The rounds a writer said it appended (all of them, or those before its SIGKILL)."""
    return [int(line) for line in run.communicate(timeout=120)[0].split()]
