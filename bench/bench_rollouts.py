"""RolloutRecorder's cost: the time it takes in the training thread per GRPO step against the step's own
time, with a store that takes 200 ms per call, and proof that it adds no `generate` call.

Goals: under 2% of a tiny-model GRPO step, under 5 ms blocked per step, the same number of generate calls
and the same losses as without it.
Run: python bench/bench_rollouts.py [--steps 10 --batch 16 --group 8 --length 16 --latency 0.2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from datasets import Dataset
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

from bench.common import machine, print_table
from predictions import RolloutRecorder
from predictions.demo.tiny_model import build_tiny_model, build_tokenizer
from predictions.store import SQLiteStore


class SlowStore(SQLiteStore):
    """A real SQLite store behind a fixed network-like latency on every rollout write."""

    def __init__(self, path: Path, latency_s: float):
        super().__init__(path)
        self.latency_s = latency_s

    def write_rollouts(self, rows) -> None:
        time.sleep(self.latency_s)
        super().write_rollouts(rows)


class StepClock(TrainerCallback):
    """Wall time of every optimizer step (generation, rewards, loss, backward, update)."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)


def correct(completions, answer, **kwargs):
    return [float(c.strip() == a) for c, a in zip(completions, answer, strict=True)]


def short(completions, **kwargs):
    return [-len(c) / 10 for c in completions]


def train(folder: Path, options: argparse.Namespace, recorder: RolloutRecorder | None) -> dict[str, Any]:
    """One seeded GRPO run; its step times, generate calls, losses and (with a recorder) the recorder's
    time in the training thread per step."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    rows = [{"prompt": f"double {n}=", "answer": str(2 * n), "id": f"n{n}"} for n in range(64)]
    args = GRPOConfig(
        output_dir=str(folder / "out"), max_steps=options.steps, per_device_train_batch_size=options.batch,
        num_generations=options.group, max_completion_length=options.length, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
    )  # fmt: skip
    clock, funcs = StepClock(), [correct, short]
    trainer = GRPOTrainer(
        model=build_tiny_model("gpt2", tokenizer, seed=0),
        reward_funcs=recorder.wrap(funcs) if recorder else funcs,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[clock, *([recorder] if recorder else [])],
    )
    generates, spent, cpu = [0], defaultdict(float), defaultdict(float)
    original_generate = trainer.model.generate

    def generate(*a: Any, **k: Any) -> Any:
        generates[0] += 1
        return original_generate(*a, **k)

    trainer.model.generate = generate
    trainer.remove_callback(PrinterCallback)  # no log line per step in the output
    if recorder is not None:
        observe = recorder._observe

        def timed(position: int, kwargs: dict[str, Any], values: Any) -> None:
            start, start_cpu = time.perf_counter(), time.thread_time()
            observe(position, kwargs, values)
            step = kwargs["trainer_state"].global_step
            spent[step] += time.perf_counter() - start
            cpu[step] += time.thread_time() - start_cpu

        recorder._observe = timed  # measure the recorder's own work in the training thread
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "steps": clock.times,
        "generates": generates[0],
        "losses": losses,
        "spent": list(spent.values()),
        "cpu": list(cpu.values()),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--batch", type=int, default=16, help="rollouts per step (per_device_train_batch_size)"
    )
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (num_generations)")
    parser.add_argument("--length", type=int, default=16, help="max_completion_length")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per store call")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        plain = train(Path(folder) / "plain", options, None)
        store = SlowStore(Path(folder) / "slow.db", options.latency)
        recorder = RolloutRecorder(store=store, job_name="bench")
        recorded = train(Path(folder) / "recorded", options, recorder)
        stored = int(store.rollout_trends(recorder.job_id).steps["rollout_count"].sum())
        store.close()
    step_s = statistics.median(recorded["steps"])
    spent = recorded["spent"]
    results = {
        "step ms": step_s * 1000,
        "recorder median ms": statistics.median(spent) * 1000,
        "recorder max ms": max(spent) * 1000,
        "share %": statistics.median(spent) / step_s * 100,
        "recorder CPU median ms": statistics.median(recorded["cpu"]) * 1000,
    }
    title = (
        f"RolloutRecorder per GRPO step ({options.batch} rollouts, groups of {options.group}, "
        f"{options.length} tokens, {options.latency * 1000:.0f} ms store, {machine()})"
    )
    calls = f"{plain['generates']} / {recorded['generates']}"
    share = results["share %"]
    rows = [
        ("GRPO step, median", results["step ms"], "", ""),
        ("recorder in the training thread, median", results["recorder median ms"], share, "< 2%"),
        ("recorder in the training thread, max", results["recorder max ms"], "", "< 5 ms"),
        ("recorder's CPU time in the training thread, median", results["recorder CPU median ms"], "", ""),
        ("generate calls without / with the recorder", calls, "", "equal"),
    ]
    print_table(title, ("what", "ms", "% of the step", "goal"), rows)
    same = plain["losses"] == recorded["losses"]
    per_step = ", ".join(f"{value * 1000:.2f}" for value in spent)
    cpu_steps = ", ".join(f"{value * 1000:.2f}" for value in recorded["cpu"])
    print(f"\nrecorder ms per step, wall: {per_step}\nrecorder ms per step, CPU: {cpu_steps}")
    print(f"losses identical with and without the recorder: {same}; {stored} rollouts stored")
    assert plain["generates"] == recorded["generates"], "the recorder changed the number of generate calls"
    assert same, "the recorder changed training"
    assert stored == options.steps * options.batch, "rollouts were lost"
    return results


if __name__ == "__main__":
    main()
