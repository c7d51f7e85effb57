"""Training thread blocked by a round beyond generation: a round of 50 answers of 20,000 characters,
scored on the training thread (as every round was before issue 23) against handed to the scorer's
thread (now), and with the early-stop rule on (the round waits for its own scores).

What is timed is everything a round does on the training thread after its answers are generated:
`PredictionsMonitor._record`, which scores inline or hands over, and queues the rows for the writer.
Rounds follow each other without waiting, so each hand-over runs while the scorer's thread still
scores the rounds before it (the worst case for the GIL). The time until a round is stored and the
training steps' slowdown while the scorer works are reported beside it.
Goal: under 50 ms beyond generation.
Run: python bench/bench_round_blocking.py [--rounds 5 --samples 50 --length 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import machine, pairs, print_table, unrelated_pairs
from predictions import PredictionsMonitor
from predictions.demo.tiny_model import build_tiny_model, build_tokenizer
from predictions.store import SQLiteStore
from predictions.training.round_scorer import build_rows


def started_monitor(folder: Path, truths: list[str], model, tokenizer, **options) -> PredictionsMonitor:
    samples = [{"prompt": f"question {i}", "completion": truth} for i, truth in enumerate(truths)]
    store = SQLiteStore(folder / f"{len(list(folder.iterdir()))}.db")
    monitor = PredictionsMonitor(samples, tokenizer=tokenizer, max_new_tokens=4, store=store, **options)
    monitor.start(model)
    return monitor


def inline_ms(monitor: PredictionsMonitor, answers: list[str], rounds: int) -> list[float]:
    """What a round did before: score on the training thread, then queue the rows."""
    times = []
    for step in range(1, rounds + 1):
        start = time.perf_counter()
        rows = build_rows(monitor.job_id, step, 1, monitor.samples, answers, monitor.config)
        monitor.writer.write(rows)
        times.append((time.perf_counter() - start) * 1000)
    return times


def handed_ms(monitor: PredictionsMonitor, answers: list[str], rounds: int) -> tuple[list[float], float]:
    """A round now: hand the answers over (and wait for them only with the early-stop rule); then the
    seconds from the first hand-over until every round is scored and queued for the store."""
    times, first = [], time.perf_counter()
    for step in range(1, rounds + 1):
        start = time.perf_counter()
        monitor._record(step, 1, [answers])
        times.append((time.perf_counter() - start) * 1000)
    monitor.scorer.wait_all()
    return times, time.perf_counter() - first


def steps_per_second(model, tokenizer, seconds: float = 2.0) -> float:
    """Tiny training steps (forward, backward) the training thread gets through per second."""
    batch = tokenizer(["some training text " * 4] * 8, return_tensors="pt")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        count += 1
    return count / seconds


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--length", type=int, default=20_000)
    parser.add_argument("--step-seconds", type=float, default=2.0, help="how long training steps are counted")
    args = parser.parse_args(argv)
    tokenizer = build_tokenizer()
    model = build_tiny_model("gpt2", tokenizer, hidden_size=64, layers=2, heads=2, max_positions=128)
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as folder:
        for kind, make in (("near misses", pairs), ("unrelated", unrelated_pairs)):
            answers, truths = make(args.samples, args.length)
            monitor = started_monitor(Path(folder), truths, model, tokenizer, num_samples=args.samples)
            answers = [answers[sample.index] for sample in monitor.samples]
            before = inline_ms(monitor, answers, args.rounds)
            idle = steps_per_second(model, tokenizer, args.step_seconds)
            after, stored_s = handed_ms(monitor, answers, args.rounds)
            monitor._record(args.rounds + 1, 1, [answers])
            busy = steps_per_second(model, tokenizer, args.step_seconds)  # while that round is scored
            monitor.finish()
            early = started_monitor(
                Path(folder), truths, model, tokenizer, num_samples=args.samples, stop_after_regressions=3
            )
            waiting, _ = handed_ms(early, answers, args.rounds)
            early.finish()
            rows += [
                (kind, "scored on the training thread (before)", statistics.median(before), max(before), "-"),
                (kind, "handed to the scorer's thread (now)", statistics.median(after), max(after), stored_s),
                (kind, "now, with the early-stop rule on", statistics.median(waiting), max(waiting), "-"),
            ]
            results[f"{kind} before"] = statistics.median(before)
            results[f"{kind} now"] = statistics.median(after)
            results[f"{kind} now max"] = max(after)
            results[f"{kind} steps while scoring"] = busy / idle
    title = (
        f"Training thread blocked per round beyond generation, ms ({args.samples} answers x "
        f"{args.length:,} characters, {args.rounds} rounds back to back, {machine()})"
    )
    print_table(title, ("answers", "round", "median ms", "max ms", "all rounds stored after s"), rows)
    for kind in ("near misses", "unrelated"):
        print(
            f"\n{kind}: {results[f'{kind} now']:.2f} ms median, {results[f'{kind} now max']:.2f} ms max "
            f"(goal < 50); before {results[f'{kind} before']:.0f} ms. Training steps while the scorer "
            f"works: {results[f'{kind} steps while scoring']:.0%} of idle"
        )
    return results


if __name__ == "__main__":
    main()
