"""Run every benchmark at full size, one after another, printing Markdown for docs/benchmarks.md.

Run: python bench/run_all.py  (or `make bench`); each script also runs alone with its own options.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = (
    "bench_scoring",
    "bench_generation",
    "bench_write_stall",
    "bench_round_blocking",
    "bench_rollouts",
    "bench_round_writes",
    "bench_deleted_runs",
    "bench_outbox",
    "bench_queries",
    "bench_pages",
    "bench_diff",
    "bench_charts",
)


def main() -> int:
    folder = Path(__file__).resolve().parent
    failed = []
    for name in SCRIPTS:
        print(f"\n## {name}\n\n`python bench/{name}.py`", flush=True)
        if subprocess.run([sys.executable, str(folder / f"{name}.py")], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
