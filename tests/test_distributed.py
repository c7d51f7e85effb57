"""Two CPU processes (gloo) under DDP, FSDP1, FSDP2 and DeepSpeed ZeRO-3, with uneven shards (5 samples).

Each test spawns the two ranks (tests/helpers_distributed.py) and checks the store and each rank's
report afterwards. Every test has a timeout: a rank left waiting in a collective fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests import helpers_distributed as d
from tests import zygote
from tests.helpers import free_port
from tests.helpers_outbox import kept

pytestmark = pytest.mark.slow

STOPPED_RANK = """
import sys
from pathlib import Path

from tests import helpers_distributed as d

d.grpo_stopped_on_rank(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
"""
"""One rank of the endless GRPO run that the test stops with SIGTERM."""

LAUNCHER = """
import json
import os
import sys
from pathlib import Path

import torch.multiprocessing as mp

from tests import helpers_distributed as d

name, nprocs, port, folder, *args = json.loads(sys.argv[1])
try:
    mp.start_processes(
        d.in_environment,
        args=(dict(os.environ), getattr(d, name), port, Path(folder), *args),
        nprocs=nprocs,
        start_method="fork",
    )
except mp.ProcessRaisedException as error:
    sys.exit(f"a rank raised: {error}")
"""
"""`torch.multiprocessing.start_processes`, as a launcher does: the ranks are `fork` children of this
program, and when one raises, the others get SIGTERM and the program exits with the rank's error."""


class RankRaised(Exception):
    """A rank raised; the message holds its traceback as the launcher printed it."""


def spawn(target, tmp_path: Path, *args, nprocs: int = d.WORLD, timeout_s: float = 280) -> list[dict]:
    """Start the ranks and return their reports; `RankRaised` if one of them raised.

    The launcher is forked from the zygote (tests/zygote.py), which imported the ranks' code (torch,
    transformers, trl) once per pytest worker, and forks the ranks in turn, so a rank starts in a
    fraction of a second rather than importing them again (about 8 s of CPU each). Its own session, so
    that a rank left hanging is killed with it at the timeout.
    """
    argv = json.dumps([target.__name__, nprocs, free_port(), str(tmp_path), *args])
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    launcher = zygote.start_python("-c", LAUNCHER, argv, start_new_session=True, **pipes)
    try:
        out, err = launcher.communicate(timeout=timeout_s)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    if launcher.returncode != 0:
        raise RankRaised(f"exit {launcher.returncode}\n{out}\n{err}")
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(nprocs)]


def stored(tmp_path: Path, job_id: str) -> dict[int, dict[int, str]]:
    """The store's rows as {step: {sample_index: prediction}}, after checking none is duplicated."""
    with sqlite3.connect(tmp_path / "p.db") as connection:
        rows = connection.execute(
            "SELECT step, sample_index, prediction FROM training_predictions WHERE job_id = ?", (job_id,)
        ).fetchall()
    assert len({(step, index) for step, index, _ in rows}) == len(rows)
    rounds: dict[int, dict[int, str]] = {}
    for step, index, prediction in rows:
        rounds.setdefault(step, {})[index] = prediction
    return rounds


def job_status(tmp_path: Path, job_id: str) -> str:
    with sqlite3.connect(tmp_path / "p.db") as connection:
        query = "SELECT status FROM training_jobs WHERE id = ?"
        return connection.execute(query, (job_id,)).fetchone()[0]


def as_ints(expected: dict[str, dict[str, str]]) -> dict[int, dict[int, str]]:
    return {int(step): {int(i): text for i, text in answers.items()} for step, answers in expected.items()}


@pytest.mark.timeout(300)
def test_a_forked_run_that_raises_is_marked_failed_with_its_rounds_stored(tmp_path):
    """A fork (or forkserver) child leaves by `os._exit`, skipping atexit: the exit hook still runs."""
    with pytest.raises(RankRaised, match=r"(?s)a rank raised: .*out of memory, say"):
        spawn(d.crashing_run, tmp_path, nprocs=1)
    assert job_status(tmp_path, "forked") == "failed"
    assert sum(len(answers) for answers in stored(tmp_path, "forked").values()) == 2 * 3
    assert kept(tmp_path / "outbox.db") == []


@pytest.mark.timeout(300)
def test_ddp_writes_each_row_once_and_a_failing_rank_costs_only_its_own_shard(tmp_path):
    """Rank 1's generate raises in round 2: rank 0's three answers are stored, rank 1's two skipped.

    Rounds 1 and 3 hold every tracked sample exactly once (`stored` checks for duplicates).
    """
    reports = spawn(d.trainer_on_rank, tmp_path, "ddp", 2)
    rounds = stored(tmp_path, "ddp")
    steps = sorted(rounds)
    assert len(steps) == d.EPOCHS  # one round per epoch
    tracked = sorted(rounds[steps[0]])
    assert len(tracked) == d.NUM_SAMPLES
    assert sorted(rounds[steps[1]]) == tracked[:3]  # rank 0's shard of 5: samples 0-2
    assert sorted(rounds[steps[2]]) == tracked
    assert reports[0]["skipped"] == reports[1]["skipped"] == {str(steps[1]): tracked[3:]}
    assert job_status(tmp_path, "ddp") == "finished"
    assert kept(tmp_path / "outbox.db") == []


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["fsdp1", "fsdp2"])
def test_fsdp_predictions_equal_an_unsharded_copy_and_losses_are_untouched(tmp_path, kind):
    reports = spawn(d.fsdp_on_rank, tmp_path, kind, None)
    rounds = stored(tmp_path, kind)
    assert len(rounds) == d.EPOCHS and all(len(a) == d.NUM_SAMPLES for a in rounds.values())
    assert rounds == as_ints(reports[0]["expected"])
    for report in reports:
        assert report["losses"] == report["plain"] and len(report["losses"]) == 2 * d.EPOCHS
    assert job_status(tmp_path, kind) == "finished"


@pytest.mark.timeout(300)
def test_fsdp2_a_failure_before_generate_on_one_rank_skips_the_round_on_every_rank(tmp_path):
    """Rank 1's chat template raises in round 2: no rank generates then, rounds 1 and 3 are stored."""
    reports = spawn(d.fsdp_on_rank, tmp_path, "fsdp2", "template")
    rounds = stored(tmp_path, "fsdp2")
    expected = as_ints(reports[0]["expected"])
    steps = sorted(expected)
    assert rounds == {steps[0]: expected[steps[0]], steps[2]: expected[steps[2]]}
    for report in reports:
        assert report["skipped"] == {str(steps[1]): sorted(expected[steps[0]])}  # every rank knows
        assert report["losses"] == report["plain"] and len(report["losses"]) == 2 * d.EPOCHS
    assert job_status(tmp_path, "fsdp2") == "finished"


@pytest.mark.timeout(300)
def test_fsdp2_a_failure_inside_generate_on_one_rank_stops_training_with_its_error(tmp_path):
    """Unrecoverable: the other rank waits in a collective. The error is raised, not a hang or a mismatch."""
    with pytest.raises(RankRaised, match=r"(?s)a rank raised: .*injected failure in generate on rank 1"):
        spawn(d.fsdp_on_rank, tmp_path, "fsdp2", "forward")
    assert not (tmp_path / "rank0.json").exists() and not (tmp_path / "rank1.json").exists()
    rounds = stored(tmp_path, "fsdp2")  # round 1's rows kept; rank 0, stopped by SIGTERM, marked the job
    assert len(rounds) == 1 and len(next(iter(rounds.values()))) == d.NUM_SAMPLES
    assert job_status(tmp_path, "fsdp2") == "failed"


@pytest.mark.timeout(480)
def test_deepspeed_zero3_rounds_complete_and_training_goes_on(tmp_path):
    """All parameters partitioned (threshold 0): generate gathers them, and the next step trains on them."""
    spawn(d.trainer_on_rank, tmp_path, "zero3", None)
    rounds = stored(tmp_path, "zero3")
    assert len(rounds) == d.EPOCHS and all(len(a) == d.NUM_SAMPLES for a in rounds.values())
    assert job_status(tmp_path, "zero3") == "finished"


@pytest.mark.timeout(600)
def test_grpo_under_ddp_stores_every_rank_rollouts_once(tmp_path):
    """Each rank writes the rollouts its reward functions saw (half of every group); together they
    make each group whole, each rollout once."""
    reports = spawn(d.grpo_on_rank, tmp_path)
    assert reports[0]["job_id"] == reports[1]["job_id"] == "grpo-ddp"
    with sqlite3.connect(tmp_path / "p.db") as connection:
        rows = connection.execute(
            "SELECT generation, group_index, completion_index, prompt_id FROM training_rollouts"
            " WHERE job_id = 'grpo-ddp'"
        ).fetchall()
        steps = connection.execute(
            "SELECT step, rollout_count, group_count FROM training_rollout_steps ORDER BY step"
        ).fetchall()
    seen = sum(sum(report["seen"]) for report in reports)
    assert seen == 3 * 2 * 2 and len(rows) == seen  # 3 steps x 2 ranks x 2 rollouts, each stored once
    assert len({row[:3] for row in rows}) == len(rows)
    assert steps == [(1, 4, 1), (2, 4, 1), (3, 4, 1)]  # one whole group a step
    assert all(len({p for gen, _, _, p in rows if gen == generation}) == 1 for generation in range(3))
    for rank, report in enumerate(reports):  # rank r holds positions 2r and 2r+1 of each group
        for generation, ids in enumerate(report["ids"]):
            mine = sorted((c, p) for gen, _, c, p in rows if gen == generation and c // 2 == rank)
            assert [p for _, p in mine] == ids


@pytest.mark.timeout(600)
def test_grpo_under_ddp_stopped_by_sigterm_keeps_every_rank_rollouts(tmp_path):
    """SIGTERM to both ranks mid-run, as torchrun sends it, while each rank's builder still holds batches
    (a scorer holds its rows until then): every rollout each rank's reward functions scored is stored or
    in the outbox, and the job is failed. Rank 1 writes its own share, so its guard must keep it, not
    only rank 0's.
    Each rank is a program of its own, as torchrun starts them (forked from the zygote)."""
    import time

    from predictions.delivery.writer import Writer
    from predictions.store import SQLiteStore

    port, errors = free_port(), [(tmp_path / f"stderr{rank}.txt").open("w+") for rank in range(d.WORLD)]
    ranks = [
        zygote.start_python("-c", STOPPED_RANK, str(rank), str(port), tmp_path, stderr=errors[rank])
        for rank in range(d.WORLD)
    ]
    try:
        logs = [tmp_path / f"steps{rank}.txt" for rank in range(d.WORLD)]
        deadline = time.monotonic() + 400
        while not all(log.exists() and len(log.read_text().split()) >= 2 for log in logs):
            assert time.monotonic() < deadline and all(r.poll() is None for r in ranks), "no step 2"
            time.sleep(0.2)
        for rank in ranks:
            os.kill(rank.pid, signal.SIGTERM)
        (tmp_path / "stopping").touch()  # every batch scored so far is still in a builder: now let them go
        exits = [rank.wait(120) for rank in ranks]
    finally:
        for rank, error in zip(ranks, errors, strict=True):
            rank.kill()
            error.close()
    assert exits == [-signal.SIGTERM] * d.WORLD, [Path(e.name).read_text()[-3000:] for e in errors]
    store = SQLiteStore(tmp_path / "p.db")
    Writer(store, spool_path=tmp_path / "outbox.db").close()  # what a rank left in the outbox is replayed
    with sqlite3.connect(tmp_path / "p.db") as connection:
        rows = connection.execute(
            "SELECT step, completion_index FROM training_rollouts WHERE job_id = 'grpo-stopped'"
        ).fetchall()
    for rank in range(d.WORLD):  # rank r holds positions 2r and 2r+1 of each group of 4
        calls = [json.loads(line) for line in (tmp_path / f"calls{rank}.jsonl").read_text().splitlines()]
        scored = {call["step"]: call["count"] for call in calls}
        kept = {}
        for step, index in rows:
            if index // 2 == rank:
                kept[step] = kept.get(step, 0) + 1
        assert kept == scored, (rank, kept, scored)
    assert len(calls) >= 2
    assert job_status(tmp_path, "grpo-stopped") == "failed"
    store.close()
