"""SIGTERM to a GRPO run whose rollouts are still being built (a user scorer holds them): the job is marked
failed and every rollout of the steps that ran is stored, none left behind in the builder's queue."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from predictions.delivery.writer import Writer
from predictions.store import SQLiteStore
from tests import zygote

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent(
    """
    from pathlib import Path

    from transformers import TrainerCallback

    from predictions import RolloutRecorder
    from tests import helpers_grpo as g


    class Announce(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            print(f"step {state.global_step}", flush=True)


    # each row is held until the test has sent SIGTERM: the batches are then still being built
    recorder = RolloutRecorder(job_id="preempted", scorers={"slow": g.held_scorer(Path("stopping"))})
    trainer = g.grpo_trainer(
        Path("out"), recorder.wrap(g.reward_functions()), [recorder, Announce()], max_steps=50
    )
    trainer.train()
    """
)


@pytest.mark.timeout(600)
def test_sigterm_while_rollouts_are_being_built_keeps_them_and_fails_the_job(tmp_path):
    (tmp_path / "run.py").write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PREDICTIONS_DB": str(tmp_path / "p.db"), "PYTHONPATH": str(ROOT)}
    env.pop("SUPABASE_URL", None)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    run = zygote.start_python(tmp_path / "run.py", cwd=tmp_path, env=env, **pipes)  # tests/zygote.py
    line = run.stdout.readline()
    while line and not line.startswith("step "):
        line = run.stdout.readline()
    assert line.startswith("step 1"), run.stderr.read()[-3000:]
    run.send_signal(signal.SIGTERM)
    (tmp_path / "stopping").touch()  # every batch scored so far is still being built: now let them go
    out, err = run.communicate(timeout=300)
    assert run.returncode == -signal.SIGTERM, err[-3000:]
    steps = [1] + [int(text.split()[1]) for text in out.splitlines() if text.startswith("step ")]
    store = SQLiteStore(tmp_path / "p.db")
    Writer(store).close()  # anything the run left in the outbox is replayed
    trends = store.rollout_trends("preempted").steps
    assert set(steps) <= set(trends["step"]), (steps, trends["step"].tolist(), err[-2000:])
    assert (trends.set_index("step").loc[steps, "rollout_count"] == 8).all()
    (job,) = [job for job in store.list_jobs() if job.id == "preempted"]
    assert job.status == "failed"
    store.close()
