"""SQLite round writes: the time to write one round (one `write_predictions` call, two user scores in
every row) as the round grows. The summary is recomputed once per written batch, so the time should
grow linearly with the round's size.

Goal (issue 23): a 2,000-row round under 0.3 s and within 2.5x of a 1,000-row round.
Run: python bench/bench_round_writes.py [--sizes 64 250 1000 2000 8000 --rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_queries import job_rows
from bench.common import machine, print_table
from predictions.store import SQLiteStore


def round_seconds(folder: Path, size: int, rounds: int) -> float:
    """Median seconds per round of `size` rows, written one round per call into a fresh file."""
    store = SQLiteStore(folder / f"rounds-{size}.db")
    times = []
    try:
        for rows in job_rows("job", rounds, size, seed=size, custom=2):
            start = time.perf_counter()
            store.write_predictions(rows)
            times.append(time.perf_counter() - start)
    finally:
        store.close()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[int, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 250, 1000, 2000, 8000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        results = {size: round_seconds(Path(folder), size, args.rounds) for size in args.sizes}
    smallest = min(results)
    rows = [
        (size, seconds, seconds / size * 1e6, seconds / results[smallest])
        for size, seconds in results.items()
    ]
    print_table(
        f"SQLite round writes, two user scores ({machine()})",
        ("rows per round", "seconds", "us per row", f"x {smallest} rows"),
        rows,
    )
    if 1000 in results and 2000 in results:
        print(f"\n2,000 rows / 1,000 rows: {results[2000] / results[1000]:.2f}x")
    return results


if __name__ == "__main__":
    main()
