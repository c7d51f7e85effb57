"""Training stall: how long the training loop is blocked per round by writing, with a store that takes
200 ms per call, for the project's background writer against a plain synchronous store call.

Goal: under 5 ms per round.  Run: python bench/bench_write_stall.py [--rounds 20 --samples 64 --latency 0.2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, print_table
from predictions.delivery.writer import Writer
from predictions.scoring.metrics import score
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow


class SlowStore(SQLiteStore):
    """A real SQLite store behind a fixed network-like latency on every write call."""

    def __init__(self, path: Path, latency_s: float):
        super().__init__(path)
        self.latency_s = latency_s

    def write_predictions(self, rows) -> None:
        time.sleep(self.latency_s)
        super().write_predictions(rows)


def round_rows(job_id: str, step: int, samples: int) -> list[PredictionRow]:
    truth = "the quick brown fox jumps over the lazy dog"
    return [
        PredictionRow(
            job_id, 1, step, i, f"prompt {i}", truth[::-1], truth, **score(truth[::-1], truth).as_dict()
        )
        for i in range(samples)
    ]


def blocked_ms(write, job_id: str, rounds: int, samples: int) -> list[float]:
    """Milliseconds each `write(rows)` call keeps the caller (the training loop) waiting."""
    times = []
    for step in range(1, rounds + 1):
        rows = round_rows(job_id, step, samples)
        start = time.perf_counter()
        write(rows)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per store call")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store = SlowStore(Path(folder) / "slow.db", args.latency)
        direct = blocked_ms(store.write_predictions, "direct", args.rounds, args.samples)
        writer = Writer(store, spool_path=Path(folder) / "outbox.db")
        background = blocked_ms(writer.write, "background", args.rounds, args.samples)
        start = time.perf_counter()
        writer.close()
        drain_s = time.perf_counter() - start
        stored = store.predictions_page("background").total_count
        store.close()
    results = {
        "direct median": statistics.median(direct),
        "writer median": statistics.median(background),
        "writer max": max(background),
    }
    rows = [
        ("store.write_predictions (synchronous)", statistics.median(direct), max(direct)),
        ("Writer.write (background thread)", statistics.median(background), max(background)),
    ]
    latency_ms = args.latency * 1000
    title = (
        f"Training loop blocked per round, ms ({args.samples} rows, {latency_ms:.0f} ms store, {machine()})"
    )
    print_table(title, ("write path", "median ms", "max ms"), rows)
    print(
        f"\nwriter: median {results['writer median']:.3f} ms, "
        f"max {results['writer max']:.3f} ms per round (goal < 5)"
    )
    print(f"close() drained the queue in {drain_s:.1f} s; {stored} rows stored")
    assert stored == args.rounds * args.samples, "the writer lost rows"
    return results


if __name__ == "__main__":
    main()
