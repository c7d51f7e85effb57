"""What each of two gloo processes runs in tests/test_distributed.py: real sharded models, real faults.

A rank reports what only it can see (its losses, the unsharded copy's answers, what the callback
skipped) in a JSON file; the test reads those files and the store after every process has exited.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from predictions.demo.run import encode_pairs
from predictions.training.generator import generate
from tests import helpers_training as h

WORLD = 2
NUM_SAMPLES = 5  # odd: the second rank's shard is padded
EPOCHS = 3
OPTIONS = {"num_samples": NUM_SAMPLES, "max_new_tokens": 3, "batch_size": 2}
BROKEN_TEMPLATE = "{{ raise_exception('this template is broken on rank 1') }}"


def in_environment(rank: int, environ: dict[str, str], target: Any, *args: Any) -> None:
    """Run `target(rank, *args)` in the environment the test passed (whatever its parent process had)."""
    os.environ.clear()
    os.environ.update(environ)
    torch.set_num_threads(1)
    target(rank, *args)


def join_as(rank: int, port: int, tmp_path: Path, **env: str) -> None:
    """Configure this process as torchrun would; rank 0's callback opens the store from the env.

    One thread a rank, as `torchrun` sets by default: without OMP_NUM_THREADS, accelerate gives each
    rank half the cores, and two ranks beside the other test worker oversubscribe a 2-core machine.
    """
    os.environ.update(
        OMP_NUM_THREADS="1",
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        PREDICTIONS_DB=str(tmp_path / "p.db"),
        PREDICTIONS_SPOOL=str(tmp_path / "outbox.db"),
        **env,
    )


def report(tmp_path: Path, rank: int, facts: dict[str, Any]) -> None:
    """Leave this rank's facts for the test, then exit without torch's gloo teardown.

    torch 2.13's gloo backend can hang or abort while a distributed model is freed at the end of a
    process (about one run in ten here, with or without the callback); what the test checks is on disk.
    """
    (tmp_path / f"rank{rank}.json").write_text(json.dumps(facts))
    dist.barrier()
    os._exit(0)


# One forked process, as accelerate's notebook_launcher starts a run


class CrashInEpoch2(TrainerCallback):
    def on_epoch_end(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.epoch >= 2:
            raise RuntimeError("out of memory, say")


def crashing_run(rank: int, port: int, tmp_path: Path) -> None:
    """A Trainer run that raises in its second epoch, in a child that leaves by `os._exit` (no atexit)."""
    os.environ.update(PREDICTIONS_DB=str(tmp_path / "p.db"), PREDICTIONS_SPOOL=str(tmp_path / "outbox.db"))
    from predictions import PredictionsCallback

    callback = PredictionsCallback(h.pairs(12), num_samples=3, max_new_tokens=3, job_id="forked")
    h.trainer(tmp_path, [callback, CrashInEpoch2()]).train()


# FSDP1 and FSDP2, wrapped by hand, trained by a hand-written loop that calls the callback's hooks


def shard_model(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """Each transformer block its own unit, the rest in the root, as the Trainer's FSDP setup does."""
    blocks = model.transformer.h
    if kind == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        policy = ModuleWrapPolicy({type(blocks[0])})
        return FullyShardedDataParallel(model, auto_wrap_policy=policy, device_id=torch.device("cpu"))
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (WORLD,))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def rank_batches(tok: Any, rank: int) -> list[dict[str, torch.Tensor]]:
    """This rank's half of 16 examples, in 2 batches of 4 (2 steps an epoch)."""
    examples = encode_pairs(h.pairs(16, seed=2), tok, length=h.SEQ_LEN)[rank::WORLD]
    return [
        {key: torch.tensor([e[key] for e in examples[start : start + 4]]) for key in examples[0]}
        for start in range(0, len(examples), 4)
    ]


def unsharded_answers(model: torch.nn.Module, tok: Any, samples: list[Any]) -> dict[int, str]:
    """What a plain copy of the current weights answers (all ranks take part in gathering them)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    with torch.random.fork_rng():  # building the copy seeds torch; training's dropout must not notice
        copy = h.model(tok=tok)
    copy.load_state_dict(weights)
    answers = generate(copy, tok, samples, batch_size=OPTIONS["batch_size"], max_new_tokens=3)
    return {sample.index: answer for sample, answer in zip(samples, answers, strict=True)}


def train_by_hand(
    kind: str, tok: Any, rank: int, callback: Any = None, fault: Any = None
) -> tuple[list[float], dict[int, dict[int, str]]]:
    """EPOCHS epochs of AdamW on the sharded tiny model; a round at each epoch end when `callback`."""
    torch.manual_seed(0)
    model = shard_model(h.model(tok=tok), kind)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
    state, control = TrainerState(is_world_process_zero=rank == 0), TrainerControl()
    hooks = {"model": model, "processing_class": tok}
    losses, expected = [], {}
    if callback:
        callback.on_train_begin(args, state, control, **hooks)
    for epoch in range(1, EPOCHS + 1):
        for batch in rank_batches(tok, rank):
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            state.global_step += 1
        state.epoch = float(epoch)
        if callback:
            with fault(epoch, model) if fault else nullcontext():
                callback.on_epoch_end(args, state, control, **hooks)
            expected[state.global_step] = unsharded_answers(model, tok, callback.samples)
    if callback:
        callback.on_train_end(args, state, control, **hooks)
    return losses, expected


def fsdp_on_rank(rank: int, port: int, tmp_path: Path, kind: str, fault: str | None) -> None:
    """Train twice, without and with the callback; `fault` breaks rank 1 in round 2 (see FAULTS)."""
    join_as(rank, port, tmp_path)
    dist.init_process_group("gloo")
    from predictions import PredictionsCallback

    tok = h.tokenizer(chat=True)
    plain = train_by_hand(kind, tok, rank)[0] if fault != "forward" else []  # that run cannot finish
    callback = PredictionsCallback(h.chat_rows(NUM_SAMPLES), job_id=kind, **OPTIONS)
    injected = _on_rank_1_in_round_2(FAULTS[fault], tok, rank) if fault else None
    losses, expected = train_by_hand(kind, tok, rank, callback, injected)
    facts = {"plain": plain, "losses": losses, "expected": expected, "skipped": callback.skipped}
    report(tmp_path, rank, facts)


@contextmanager
def broken_template(tok: Any, model: torch.nn.Module):
    """The chat template raises while the prompts are rendered: before any rank enters generate."""
    saved = tok.chat_template
    tok.chat_template = BROKEN_TEMPLATE
    try:
        yield
    finally:
        tok.chat_template = saved


@contextmanager
def failing_forward(tok: Any, model: torch.nn.Module):
    """Every eval-mode forward raises: inside generate, while the other rank waits in its collectives."""

    def hook(module: torch.nn.Module, inputs: Any) -> None:
        if not module.training:
            raise RuntimeError("injected failure in generate on rank 1")

    handle = model.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


FAULTS = {"template": broken_template, "forward": failing_forward}


def _on_rank_1_in_round_2(fault: Any, tok: Any, rank: int) -> Any:
    """A fault for `train_by_hand`, active on rank 1 during the second round only."""
    return lambda epoch, model: fault(tok, model) if rank == 1 and epoch == 2 else nullcontext()


# The Trainer: DDP, and DeepSpeed ZeRO-3 on the CPU


DS_OPS_DIR = str(Path(sys.prefix) / "torch_extensions")
ZERO3 = {
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "zero_allow_untested_optimizer": True,
}
"""Threshold 0: every parameter is partitioned, so the tiny model shows what a big one would."""


def trainer_on_rank(rank: int, port: int, tmp_path: Path, kind: str, failing_round: int | None) -> None:
    """A Trainer run under DDP or ZeRO-3; with `failing_round`, rank 1's forward raises in that round."""
    # DeepSpeed builds its CPU communication op on first use; `make setup` builds it into the venv.
    join_as(rank, port, tmp_path, DS_ACCELERATOR="cpu", TORCH_EXTENSIONS_DIR=DS_OPS_DIR)
    from predictions import PredictionsCallback

    callback = PredictionsCallback(h.pairs(12), stop_after_regressions=9, job_id=kind, **OPTIONS)
    extra = {"deepspeed": ZERO3} if kind == "zero3" else {}
    trainer = h.trainer(tmp_path, [callback], run_name=kind, ddp_backend="gloo", epochs=EPOCHS, **extra)
    assert dist.is_initialized() and dist.get_world_size() == WORLD
    if failing_round and rank == 1:
        _fail_eval_forward_in_round(trainer, failing_round)
    trainer.train()
    report(tmp_path, rank, {"skipped": callback.skipped, "job_id": callback.job_id})


def _fail_eval_forward_in_round(trainer: Any, failing_round: int) -> None:
    """Rank 1's model raises in every eval-mode forward (generation) during round `failing_round`."""
    rounds = []

    def hook(module: torch.nn.Module, inputs: Any) -> None:
        if not module.training and len(rounds) == failing_round - 1:
            raise RuntimeError("injected failure in generate on rank 1")

    trainer.model.register_forward_pre_hook(hook)
    trainer.add_callback(_RoundCounter(rounds))


class _RoundCounter(TrainerCallback):
    """Counts epoch ends after the predictions callback has had its round."""

    def __init__(self, rounds: list[int]):
        self.rounds = rounds

    def on_epoch_end(self, args, state, control, **kwargs):
        self.rounds.append(state.global_step)


# GRPO under DDP: each rank records its own rollouts


def grpo_on_rank(rank: int, port: int, tmp_path: Path) -> None:
    """A GRPOTrainer run under DDP with the recorder, 2 rollouts a rank a step: each group of 4 is split
    over the two ranks. Each rank reports what its reward functions saw, by generation."""
    join_as(rank, port, tmp_path)
    from predictions import RolloutRecorder
    from tests import helpers_grpo as g

    recorder = RolloutRecorder(job_id="grpo-ddp")
    funcs = g.reward_functions()
    trainer = g.grpo_trainer(
        tmp_path, recorder.wrap(funcs), [recorder], per_device_train_batch_size=2, ddp_backend="gloo"
    )
    assert dist.is_initialized() and dist.get_world_size() == WORLD
    trainer.train()
    seen = [len(call["values"]) for call in funcs[0].calls]
    report(
        tmp_path, rank, {"seen": seen, "job_id": recorder.job_id, "ids": [c["ids"] for c in funcs[0].calls]}
    )


def grpo_stopped_on_rank(rank: int, port: int, tmp_path: Path) -> None:
    """The DDP GRPO run above, endless, with a user scorer that holds each row until the test is about to
    stop the run (so every batch scored waits in each rank's builder, however fast or slow the machine):
    the test then stops both ranks with SIGTERM, as torchrun does.
    Each rank logs every batch its reward functions scored (`calls<rank>.jsonl`, written by the last
    function before the recorder sees the batch) and every step it finished (`steps<rank>.txt`)."""
    join_as(rank, port, tmp_path)
    from predictions import RolloutRecorder
    from tests import helpers_grpo as g

    calls = (tmp_path / f"calls{rank}.jsonl").open("a", buffering=1)

    def logged(completions: list[Any], trainer_state: Any, **kwargs: Any) -> list[float]:
        calls.write(json.dumps({"step": trainer_state.global_step + 1, "count": len(completions)}) + "\n")
        return [0.0] * len(completions)

    recorder = RolloutRecorder(job_id="grpo-stopped", scorers={"slow": g.held_scorer(tmp_path / "stopping")})
    funcs = recorder.wrap([*g.reward_functions(), logged])
    steps = _StepLog(tmp_path / f"steps{rank}.txt")
    trainer = g.grpo_trainer(
        tmp_path, funcs, [recorder, steps], per_device_train_batch_size=2, ddp_backend="gloo", max_steps=500
    )
    trainer.train()


class _StepLog(TrainerCallback):
    """Appends each finished step's number to a file, line-buffered: the test waits on it."""

    def __init__(self, path: Path):
        self.file = path.open("a", buffering=1)

    def on_step_end(self, args, state, control, **kwargs):
        self.file.write(f"{state.global_step}\n")
