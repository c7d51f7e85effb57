"""RolloutRecorder's cost: the time it takes in the training thread per GRPO step against the step's own
time, with a store that takes 200 ms per call, and proof that it adds no `generate` call.

Goals: under 2% of a tiny-model GRPO step, under 5 ms blocked per step, the same number of generate calls
and the same losses as without it.

Two measures. (1) A real `GRPOTrainer`, trained twice with the same seed, without and with the recorder:
per step, the wall and CPU time of the recorder's work in the training thread (`_observe`, after each
reward function) and, as a control in the same places of both runs, the same amount of plain CPU work
done by an empty wrapper: what the machine's scheduler and the interpreter lock alone add to a piece of
work that size. Each timed piece also counts the thread's context switches: a voluntary one is a wait
(a lock, the interpreter lock), an involuntary one the OS handing the core to another thread. (2) The
recorder alone, its reward calls made directly with batches of 16 to 4,096 rollouts while the 200 ms
store is busy: the training thread's time must not grow with the batch, nor wait for the store.

Run: python bench/bench_rollouts.py [--steps 10 --batch 16 --group 8 --length 16 --latency 0.2
                                     --sizes 16 256 4096 --calls 20]
"""

from __future__ import annotations

import argparse
import os
import resource
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
from transformers import TrainerCallback, TrainerControl, TrainerState
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

from bench.common import machine, print_table
from predictions import RolloutRecorder
from predictions.demo.tiny_model import build_tiny_model, build_tokenizer
from predictions.store import SQLiteStore

GOAL_S = 0.005
"""The most the recorder may block the training thread in a step (issue 21)."""
CONTROL_CPU_S = 0.0001
"""CPU work the control does at each reward call: about what the recorder does there."""


class SlowStore(SQLiteStore):
    """A real SQLite store behind a fixed network-like latency on every rollout write."""

    def __init__(self, path: Path, latency_s: float):
        super().__init__(path)
        self.latency_s = latency_s

    def write_rollouts(self, rows) -> None:
        time.sleep(self.latency_s)
        super().write_rollouts(rows)


class StepClock(TrainerCallback):
    """Wall time of every optimizer step (generation, rewards, loss, backward, update), and the training
    thread's voluntary context switches in it: its waits (for the interpreter lock, above all), which
    the recorder's threads could cause anywhere in the step, not only inside the recorder's own work."""

    def __init__(self):
        self.times: list[float] = []
        self.waits: list[int] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.start, self.switches = time.perf_counter(), switches()[0]

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)
        self.waits.append(switches()[0] - self.switches)


class Spent:
    """Wall and CPU seconds of a timed piece of the training thread's work, summed per step, and the
    thread's context switches meanwhile: a voluntary one is a wait (a lock, the interpreter lock, I/O),
    an involuntary one the OS giving the core to another thread (preemption)."""

    def __init__(self):
        self.wall: dict[int, float] = defaultdict(float)
        self.cpu: dict[int, float] = defaultdict(float)
        self.waits: dict[int, int] = defaultdict(int)
        self.preempted: dict[int, int] = defaultdict(int)

    def timed(self, step: int, work: Any, *args: Any) -> Any:
        before = switches()
        start, start_cpu = time.perf_counter(), time.thread_time()
        result = work(*args)
        self.wall[step] += time.perf_counter() - start
        self.cpu[step] += time.thread_time() - start_cpu
        after = switches()
        self.waits[step] += after[0] - before[0]
        self.preempted[step] += after[1] - before[1]
        return result

    def unpreempted_wall(self) -> list[float]:
        """Wall time of the steps in which the OS never took the core away."""
        return [wall for step, wall in self.wall.items() if not self.preempted[step]]


def switches() -> tuple[int, int]:
    """This thread's voluntary and involuntary context switches so far (Linux; zeros elsewhere)."""
    who = getattr(resource, "RUSAGE_THREAD", None)
    if who is None:
        return 0, 0
    usage = resource.getrusage(who)
    return usage.ru_nvcsw, usage.ru_nivcsw


def busy(cpu_s: float) -> None:
    """Plain CPU work of `cpu_s` seconds in this thread (the control)."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def with_control(func: Any, control: Spent) -> Any:
    """`func` with the control's work after it, as the recorder's wrapper does its own after it."""

    def reward(*args: Any, **kwargs: Any) -> Any:
        values = func(*args, **kwargs)
        control.timed(kwargs["trainer_state"].global_step, busy, CONTROL_CPU_S)
        return values

    reward.__name__ = func.__name__
    return reward


def correct(completions, answer, **kwargs):
    return [float(c.strip() == a) for c, a in zip(completions, answer, strict=True)]


def short(completions, **kwargs):
    return [-len(c) / 10 for c in completions]


def train(folder: Path, options: argparse.Namespace, recorder: RolloutRecorder | None) -> dict[str, Any]:
    """One seeded GRPO run; its step times, generate calls, losses, the control's time per step and (with
    a recorder) the recorder's."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    rows = [{"prompt": f"double {n}=", "answer": str(2 * n), "id": f"n{n}"} for n in range(64)]
    args = GRPOConfig(
        output_dir=str(folder / "out"), max_steps=options.steps, per_device_train_batch_size=options.batch,
        num_generations=options.group, max_completion_length=options.length, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
    )  # fmt: skip
    clock, control, spent = StepClock(), Spent(), Spent()
    funcs = recorder.wrap([correct, short]) if recorder else [correct, short]
    trainer = GRPOTrainer(
        model=build_tiny_model("gpt2", tokenizer, seed=0),
        reward_funcs=[with_control(func, control) for func in funcs],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[clock, *([recorder] if recorder else [])],
    )
    generates = [0]
    original_generate = trainer.model.generate

    def generate(*a: Any, **k: Any) -> Any:
        generates[0] += 1
        return original_generate(*a, **k)

    trainer.model.generate = generate
    trainer.remove_callback(PrinterCallback)  # no log line per step in the output
    if recorder is not None:
        observe = recorder._observe

        def timed(position: int, kwargs: dict[str, Any], values: Any) -> None:
            spent.timed(kwargs["trainer_state"].global_step, observe, position, kwargs, values)

        recorder._observe = timed  # measure the recorder's own work in the training thread
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    found = {"steps": clock.times, "waits": clock.waits, "generates": generates[0], "losses": losses}
    return {**found, "spent": spent, "control": control}


def direct_calls(folder: Path, options: argparse.Namespace) -> dict[int, Spent]:
    """The recorder alone: `--calls` reward calls of each size in `--sizes`, 50 ms apart, with the slow
    store busy; the training thread's time in `_observe` per call."""
    store = SlowStore(folder / "direct.db", options.latency)
    recorder = RolloutRecorder(store=store, max_groups=None, job_name="bench-direct")
    wrapped = recorder.wrap([correct, short])
    tokenizer = build_tokenizer()
    state = TrainerState(is_world_process_zero=True)
    args = GRPOConfig(output_dir=str(folder / "direct"), report_to=[], use_cpu=True,
                      per_device_train_batch_size=options.group, num_generations=options.group)  # fmt: skip
    model = build_tiny_model("gpt2", tokenizer, seed=0)
    model.train()
    recorder.on_train_begin(args, state, TrainerControl(), model=model, processing_class=tokenizer)
    observe, results = recorder._observe, {}
    for size in options.sizes:
        spent = Spent()

        def timed(position: int, kwargs: dict[str, Any], values: Any, spent: Spent = spent) -> None:
            spent.timed(kwargs["trainer_state"].global_step, observe, position, kwargs, values)

        recorder._observe = timed
        for _ in range(options.calls):
            state.global_step += 1
            batch = {
                "prompts": [f"double {n // options.group}=" for n in range(size)],
                "completions": [str(n % 7) for n in range(size)],
                "completion_ids": [[7, 8] for _ in range(size)],
                "answer": [str(2 * (n // options.group)) for n in range(size)],
                "id": [f"n{n // options.group}" for n in range(size)],
                "trainer_state": state,
            }
            for func in wrapped:
                func(**batch)
            time.sleep(0.05)  # the rest of a step: the builder and the writer work meanwhile
        results[size] = spent
    recorder.on_train_end(args, state, TrainerControl())
    store.close()
    return results


def stats(values: list[float]) -> tuple[float, float, float, int]:
    """Median, 99th percentile and maximum in ms, and how many values are over the 5 ms goal."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    over = sum(value > GOAL_S for value in ordered)
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000, over


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--batch", type=int, default=16, help="rollouts per step (per_device_train_batch_size)"
    )
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (num_generations)")
    parser.add_argument("--length", type=int, default=16, help="max_completion_length")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per store call")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 256, 4096], help="rollouts per call")
    parser.add_argument("--calls", type=int, default=20, help="direct reward calls of each size")
    options = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        plain = train(Path(folder) / "plain", options, None)
        store = SlowStore(Path(folder) / "slow.db", options.latency)
        recorder = RolloutRecorder(store=store, job_name="bench")
        recorded = train(Path(folder) / "recorded", options, recorder)
        stored = int(store.rollout_trends(recorder.job_id).steps["rollout_count"].sum())
        store.close()
        direct = direct_calls(Path(folder), options)
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    step_s = statistics.median(recorded["steps"])
    spent, control = recorded["spent"], recorded["control"]
    wall, cpu = stats(list(spent.wall.values())), stats(list(spent.cpu.values()))
    results = {
        "step ms": step_s * 1000,
        "recorder median ms": wall[0],
        "recorder p99 ms": wall[1],
        "recorder max ms": wall[2],
        "recorder steps over 5 ms": wall[3],
        "share %": wall[0] / (step_s * 1000) * 100,
        "recorder CPU median ms": cpu[0],
        "recorder CPU max ms": cpu[2],
        "recorder waits": sum(spent.waits.values()),
    }
    title = (
        f"RolloutRecorder per GRPO step ({options.batch} rollouts, groups of {options.group}, "
        f"{options.length} tokens, {options.latency * 1000:.0f} ms store, {options.steps} steps, "
        f"{machine()}, {load})"
    )
    rows = [("GRPO step with the recorder", *stats(recorded["steps"]), ""),
            ("GRPO step without it", *stats(plain["steps"]), "")]  # fmt: skip
    waits = [("training thread's waits in a step, with the recorder", *count_stats(recorded["waits"]), ""),
             ("training thread's waits in a step, without it", *count_stats(plain["waits"]), "")]  # fmt: skip
    rows += [
        ("recorder in the training thread, wall", *wall, "median < 2% of a step; < 5 ms"),
        ("recorder in the training thread, CPU", *cpu, ""),
        ("control (same CPU work), with the recorder, wall", *stats(list(control.wall.values())), ""),
        ("control, with the recorder, CPU", *stats(list(control.cpu.values())), ""),
        ("control, without the recorder, wall", *stats(list(plain["control"].wall.values())), ""),
        ("control, without the recorder, CPU", *stats(list(plain["control"].cpu.values())), ""),
    ]
    print_table(title, ("per step", "median ms", "p99 ms", "max ms", "over 5 ms", "goal"), rows)
    print_table("Voluntary context switches per step", ("per step", "median", "p99", "max", "", ""), waits)
    print(f"\nrecorder median share of a step: {results['share %']:.4f}%")
    for name, timing in (
        ("recorder", spent),
        ("control", control),
        ("control without the recorder", plain["control"]),
    ):
        walls = ", ".join(f"{v * 1000:.2f}" for v in timing.wall.values())
        print(f"{name}, ms per step, wall: {walls}")
        waits, preempted = sum(timing.waits.values()), sum(timing.preempted.values())
        print(f"{name}: {waits} voluntary context switches (waits), {preempted} involuntary (preempted)")
    quiet = spent.unpreempted_wall()
    if quiet:
        print(f"recorder wall in the {len(quiet)} steps never preempted: max {max(quiet) * 1000:.3f} ms")
    same = plain["losses"] == recorded["losses"]
    calls = f"{plain['generates']} / {recorded['generates']}"
    print(f"generate calls without / with the recorder: {calls}")
    print(f"losses identical with and without the recorder: {same}; {stored} rollouts stored")
    direct_rows = []
    for size, timing in direct.items():
        counts = f"{sum(timing.waits.values())} / {sum(timing.preempted.values())}"
        direct_rows.append((f"{size:,} rollouts a call, wall", *stats(list(timing.wall.values())), counts))
        direct_rows.append((f"{size:,} rollouts a call, CPU", *stats(list(timing.cpu.values())), ""))
    print_table(
        f"The recorder's training-thread time per reward call, by batch size ({options.calls} calls each, "
        f"two functions, {options.latency * 1000:.0f} ms store busy throughout)",
        ("reward call", "median ms", "p99 ms", "max ms", "over 5 ms", "waits / preempted"),
        direct_rows,
    )
    assert plain["generates"] == recorded["generates"], "the recorder changed the number of generate calls"
    assert same, "the recorder changed training"
    assert stored == options.steps * options.batch, "rollouts were lost"
    return results


def count_stats(values: list[int]) -> tuple[float, int, int, str]:
    """Median, 99th percentile and maximum of per-step counts."""
    ordered = sorted(values)
    return (
        statistics.median(ordered),
        ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        ordered[-1],
        "",
    )


if __name__ == "__main__":
    main()
