"""The whole big job of bench_scale's store (1,000 samples x 200 rounds, two user scores, a metadata
field: 200k rows) as the dashboard's CSV download, alone: median wall and CPU of --repeat runs.
Goal (issue 23): under 5 s. Build the store first with bench/bench_scale.py (same --folder).
Run: python bench/bench_csv.py [--db .bench-scale/scale-10000-1000x200.db --repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictions.dashboard import csv_export  # noqa: E402
from predictions.store import SQLiteStore  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, default=ROOT / ".bench-scale" / "scale-10000-1000x200.db")
    parser.add_argument("--job", default="big-job")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    store = SQLiteStore(args.db)
    walls, cpus = [], []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        text = csv_export.job_csv(store, args.job)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    store.close()
    result = {
        "rows": text.count("\r\n") - 1,
        "MB": len(text) / 1e6,
        "wall s": statistics.median(walls),
        "CPU s": statistics.median(cpus),
        "load": os.getloadavg()[0],
    }
    print(", ".join(f"{name} {value:.3g}" for name, value in result.items()))
    return result


if __name__ == "__main__":
    main()
