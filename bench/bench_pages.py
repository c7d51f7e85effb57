"""Dashboard pages: AppTest run time of the trends and samples pages for a job of 100 rounds x 100
samples on the embedded store, cold (first view) and warm (a rerun, caches filled), side by side.

Goal: under 1.5 s each.  Run: python bench/bench_pages.py [--rounds 100 --samples 100 --repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st
import streamlit.logger
from streamlit.testing.v1 import AppTest

from bench.bench_queries import fill
from bench.common import machine, print_table
from predictions.store import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
streamlit.logger.set_log_level("error")  # AppTest's bare-mode warnings, once per page run
PAGES = ("pages/trends.py", "pages/samples.py")
JOB = "job-000"
"""The one job `bench_queries.fill` writes: a run whose CER falls round by round."""


def open_page(page: str) -> tuple[float, float]:
    """Seconds of a first run that lands on `page` with empty caches, and of one rerun of it."""
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["job"] = JOB
    start = time.perf_counter()
    at.run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    cold = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"{page}: {[e.message for e in at.exception]}")
    start = time.perf_counter()
    at.run()
    return cold, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pages.db"
        store = SQLiteStore(path)
        fill(store, jobs=1, rounds=args.rounds, samples=args.samples, custom=0)  # bench's own rows
        store.close()
        saved = dict(os.environ)
        os.environ.update(PREDICTIONS_DB=str(path), SUPABASE_URL="", SUPABASE_KEY="")
        try:
            for page in PAGES:
                runs = [open_page(page) for _ in range(args.repeat)]
                results[page] = {
                    "cold": statistics.median(cold for cold, _ in runs),
                    "warm": statistics.median(warm for _, warm in runs),
                }
        finally:
            os.environ.clear()
            os.environ.update(saved)
    rows = [(page, timings["cold"], timings["warm"]) for page, timings in results.items()]
    title = f"AppTest page run time, median s, {args.rounds} rounds x {args.samples} samples ({machine()})"
    print_table(title, ("page", "first view s", "rerun s"), rows)
    worst = max(timings["cold"] for timings in results.values())
    print(f"\nslowest first view: {worst:.2f} s (goal < 1.5 s)")
    return results


if __name__ == "__main__":
    main()
