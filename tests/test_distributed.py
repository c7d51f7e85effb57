"""Two CPU processes (gloo) training with a real Trainer under DDP: each row is written exactly once."""

from __future__ import annotations

import os
import socket
import sqlite3

import pytest
import torch.multiprocessing as mp

WORLD = 2
NUM_SAMPLES = 5  # odd: the second rank's shard is padded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_on_rank(rank: int, port: int, tmp_path) -> None:
    """One process of the run, configured as torchrun would; rank 0 opens the store from the env."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        PREDICTIONS_DB=str(tmp_path / "p.db"),
        PREDICTIONS_SPOOL=str(tmp_path / "spool.jsonl"),
    )
    import torch.distributed as dist

    from predictions import PredictionsCallback
    from tests import helpers_training as h

    callback = PredictionsCallback(
        h.pairs(12), num_samples=NUM_SAMPLES, max_new_tokens=3, batch_size=2, stop_after_regressions=9
    )
    trainer = h.trainer(tmp_path, [callback], run_name="ddp", ddp_backend="gloo")
    assert dist.is_initialized() and dist.get_world_size() == WORLD
    trainer.train()
    assert (callback.writer is None) if rank else callback.job_id == "ddp"
    dist.barrier()
    # torch 2.13's gloo backend can hang or abort while a DDP model is freed at the end of a process
    # (about one run in ten here, with or without this callback); what the test checks is on disk.
    os._exit(0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_gloo_processes_write_each_row_exactly_once(tmp_path):
    mp.spawn(train_on_rank, args=(free_port(), tmp_path), nprocs=WORLD, join=True)
    with sqlite3.connect(tmp_path / "p.db") as connection:
        rows = connection.execute(
            "SELECT step, sample_index FROM training_predictions WHERE job_id = 'ddp'"
        ).fetchall()
        statuses = connection.execute("SELECT status FROM training_jobs").fetchall()
    steps = sorted({step for step, _ in rows})
    assert len(steps) == 2  # one round per epoch
    assert len(rows) == len(set(rows)) == 2 * NUM_SAMPLES
    per_step = [sorted(i for s, i in rows if s == step) for step in steps]
    assert per_step[0] == per_step[1] and len(set(per_step[0])) == NUM_SAMPLES
    assert statuses == [("finished",)]
    assert not (tmp_path / "spool.jsonl").exists()
