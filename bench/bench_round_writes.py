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


def round_seconds(folder: Path, size: int, rounds: int) -> tuple[float, float]:
    """Median wall and CPU seconds per round of `size` rows, one round per call into a fresh file.

    CPU time is this process's own: on a machine shared with other work it moves less than wall time.
    """
    store = SQLiteStore(folder / f"rounds-{size}.db")
    walls, cpus = [], []
    try:
        for rows in job_rows("job", rounds, size, seed=size, custom=2):
            wall, cpu = time.perf_counter(), time.process_time()
            store.write_predictions(rows)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    finally:
        store.close()
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> dict[int, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 250, 1000, 2000, 8000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        results = {size: round_seconds(Path(folder), size, args.rounds) for size in args.sizes}
    rows = [(size, wall, cpu, cpu / size * 1e6) for size, (wall, cpu) in results.items()]
    print_table(
        f"SQLite round writes, two user scores ({machine()})",
        ("rows per round", "wall s", "CPU s", "CPU us per row"),
        rows,
    )
    if 1000 in results and 2000 in results:
        ratio = [results[2000][i] / results[1000][i] for i in (0, 1)]
        print(f"\n2,000 rows / 1,000 rows: {ratio[0]:.2f}x wall, {ratio[1]:.2f}x CPU")
    return results


if __name__ == "__main__":
    main()
