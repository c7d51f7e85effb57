"""Resume continues the job: a run killed by SIGTERM and resumed from its checkpoint in a new process,
with no `job_id` given, is one job with every round once, running again and then finished, as its
second run (the run number travels in the checkpoint)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from predictions.store import SQLiteStore
from predictions.store.records import PageQuery
from tests import zygote

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]

RUN = """
import sys, time
from pathlib import Path
from transformers import TrainerCallback
from predictions import PredictionsCallback
from tests import helpers_training as h

class HangAt(TrainerCallback):
    '''After the round of step `argv[2]` is queued, wait to be stopped.'''

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[2]):
            print("hanging at", state.global_step, flush=True)
            time.sleep(120)

callback = PredictionsCallback(h.pairs(12), num_samples=3, max_new_tokens=2)
trainer = h.trainer(
    Path(sys.argv[1]), [callback, HangAt()], epochs=4, run_name="my-run", save_strategy="steps", save_steps=8
)
trainer.train(resume_from_checkpoint=sys.argv[3] == "resume" or None)
print("job", callback.job_id, flush=True)
"""


def start(tmp_path: Path, hang_at: int, mode: str):
    """A training run in a new process, forked from the zygote (tests/zygote.py): no torch import."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREDICTIONS_DB": str(tmp_path / "p.db")}
    env.update({"SUPABASE_URL": "", "SUPABASE_KEY": "", "PREDICTIONS_SPOOL": str(tmp_path / "s.jsonl")})
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return zygote.start_python("-c", RUN, tmp_path, str(hang_at), mode, cwd=ROOT, env=env, **pipes)


def test_a_run_killed_and_resumed_in_a_new_process_is_one_job_with_every_round_once(tmp_path):
    first = start(tmp_path, hang_at=12, mode="fresh")  # rounds at 4, 8, 12; the checkpoint is step 8's
    line = first.stdout.readline()
    while line and not line.startswith("hanging at"):
        line = first.stdout.readline()
    assert line == "hanging at 12\n", first.communicate()[1]
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == -signal.SIGTERM, err
    saved = json.loads((tmp_path / "out" / "checkpoint-8" / "trainer_state.json").read_text())
    job_id = saved["stateful_callbacks"]["predictions_job"]["job_id"]
    assert saved["stateful_callbacks"]["predictions_job"]["run_number"] == 1
    store = SQLiteStore(tmp_path / "p.db")
    assert [(job.id, job.status) for job in store.list_jobs()] == [(job_id, "failed")]
    assert store.rounds(job_id)["step"].tolist() == [4, 8, 12]

    second = start(tmp_path, hang_at=0, mode="resume")  # from step 8: step 12 again, then 16
    out, err = second.communicate(timeout=240)
    assert second.returncode == 0, err
    assert f"job {job_id}" in out.splitlines()
    (job,) = store.list_jobs()
    assert (job.id, job.name, job.status, job.round_count) == (job_id, "my-run", "finished", 4)
    rounds = store.rounds(job_id)
    assert rounds["step"].tolist() == [4, 8, 12, 16] and rounds["sample_count"].tolist() == [3] * 4
    assert store.predictions_page(job_id, PageQuery(limit=100)).total_count == 4 * 3  # step 12 stored once
    store.close()
    resumed = json.loads((tmp_path / "out" / "checkpoint-16" / "trainer_state.json").read_text())
    assert resumed["stateful_callbacks"]["predictions_job"] == {"job_id": job_id, "run_number": 2}
    with sqlite3.connect(tmp_path / "p.db") as conn:  # the status was set by run 2, as run 2
        assert conn.execute("SELECT status_run_number FROM training_jobs").fetchall() == [(2,)]
