"""The demo's training on one torch thread against torch's default (a thread per core), side by side.

    python bench/bench_demo_threads.py    # 80 steps and 2 rounds, 1 thread and one a core, twice
    python bench/bench_demo_threads.py --steps 40 --threads 1 2 4

Each contender trains the demo's model from scratch (`run_demo`, no dashboard) in this one warm process,
alternating, and prints the process's CPU (user + system) and wall time with the load average: CPU is what
a busy machine does not inflate much, wall what the user waits.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predictions.demo import run as demo


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train(folder: Path, threads: int, steps: int) -> tuple[float, float]:
    """CPU and wall seconds of one shortened demo run on `threads` torch threads."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    demo.run_demo(db_path=folder / f"t{threads}-{wall}.db", epochs=1, steps_per_epoch=steps, progress=False,
                  rounds_per_epoch=2, threads=threads)  # fmt: skip
    return cpu_seconds() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        train(Path(folder), 1, 10)  # imports and first-call costs out of the figures
        print("| torch threads | CPU | wall | load (1 min) |\n|---|---|---|---|")
        for _ in range(args.repeat):
            for threads in args.threads:
                cpu, wall = train(Path(folder), threads, args.steps)
                print(f"| {threads} | {cpu:.1f} s | {wall:.1f} s | {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
