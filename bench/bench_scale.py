"""The dashboard at scale (issue 23): a store of 10,000 jobs plus one job of 1,000 samples x 200 rounds
with two user scores and a metadata field, against a small store (3 jobs x 100 rounds x 100 samples),
both read in the same run.

Measured: each page's server-side render time (AppTest, a rerun with caches warm, and a first view with
caches empty), `list_jobs` and `jobs_version` at 10,000 jobs, the whole big job as CSV.
Goals: every page at scale within 1.2x of the small store; list_jobs under 20 ms; CSV of 200k rows
under 5 s. The stores are built once into --folder and reused (building the big one takes minutes).
Run: python bench/bench_scale.py [--folder .bench-scale --jobs 10000 --samples 1000 --rounds 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st
import streamlit.logger
from streamlit.testing.v1 import AppTest

from bench.bench_queries import job_rows
from bench.common import machine, median_time, print_table
from predictions.dashboard import queries
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow

ROOT = Path(__file__).resolve().parent.parent
streamlit.logger.set_log_level("error")
PAGES = ("trends", "samples", "predictions", "compare", "keys")
BIG_JOB = "big-job"


def config_like_a_monitor(job: int) -> dict:
    """What the monitor records at start: its options and the rendered text of 16 samples."""
    inputs = {str(i): f"<user>question {i} of run {job}: " + "context " * 30 for i in range(16)}
    return {"num_samples": 16, "batch_size": 16, "rendering": "chat_template", "model_inputs": inputs}


def build_big(path: Path, jobs: int, samples: int, rounds: int) -> None:
    """`jobs` small jobs (a config each, two rounds of 4 samples) and the big job, written last."""
    store = SQLiteStore(path)
    batch: list[PredictionRow] = []
    for j in range(jobs):
        job_id = f"run-{j:05d}"
        store.start_job(
            job_id, name=f"experiment {j} lr sweep", model="tiny-gpt2", config=config_like_a_monitor(j)
        )
        for round_rows in job_rows(job_id, 2, 4, seed=j, custom=0):
            batch.extend(round_rows)
        if len(batch) >= 5000:
            store.write_predictions(batch)
            batch = []
        if j % 1000 == 999:
            store.finish_job(job_id)
    store.write_predictions(batch)
    store.start_job(BIG_JOB, name="big run", model="tiny-gpt2", config=config_like_a_monitor(-1))
    for round_rows in job_rows(BIG_JOB, rounds, samples, seed=1, custom=2):
        store.write_predictions(round_rows)
    store.close()


def build_small(path: Path) -> None:
    store = SQLiteStore(path)
    for j in range(3):
        job_id = BIG_JOB if j == 0 else f"small-{j}"
        store.start_job(job_id, name=f"small {j}", model="tiny-gpt2", config=config_like_a_monitor(j))
        for round_rows in job_rows(job_id, 100, 100, seed=j, custom=2):
            store.write_predictions(round_rows)
    store.close()


def page_times(db: Path, page: str, repeat: int) -> tuple[float, float]:
    """Median seconds of a first view (caches empty) and of a rerun (caches warm) of `page`."""
    os.environ.update(PREDICTIONS_DB=str(db), SUPABASE_URL="", SUPABASE_KEY="")
    colds, warms = [], []
    for _ in range(repeat):
        st.cache_data.clear()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.query_params["job"] = BIG_JOB
        at.run()
        start = time.perf_counter()
        if page != PAGES[0]:
            at.switch_page(f"pages/{page}.py")
        st.cache_data.clear()
        at.run()
        colds.append(time.perf_counter() - start)
        if at.exception:
            raise RuntimeError(f"{page}: {[e.message for e in at.exception]}")
        start = time.perf_counter()
        at.run()
        warms.append(time.perf_counter() - start)
    return statistics.median(colds), statistics.median(warms)


def cpu_ms(run, repeat: int) -> float:
    """Median CPU milliseconds of this process per call: on a shared machine it moves less than wall."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


def store_reads(db: Path, repeat: int) -> dict[str, float]:
    store = SQLiteStore(db)
    try:
        results = {
            "list_jobs ms": median_time(store.list_jobs, repeat) * 1000,
            "list_jobs CPU ms": cpu_ms(store.list_jobs, repeat),
            "jobs_version ms": median_time(store.jobs_version, repeat) * 1000,
        }
        start, cpu = time.perf_counter(), time.process_time()
        size = len(queries.job_csv(store, BIG_JOB))
        results["CSV of the big job s"] = time.perf_counter() - start
        results["CSV of the big job CPU s"] = time.process_time() - cpu
        results["CSV MB"] = size / 1e6
    finally:
        store.close()
    return results


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=ROOT / ".bench-scale")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pages", nargs="+", default=list(PAGES), choices=PAGES)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    big = args.folder / f"scale-{args.jobs}-{args.samples}x{args.rounds}.db"
    small = args.folder / "small-3x100x100.db"
    for path, build in (
        (big, lambda p: build_big(p, args.jobs, args.samples, args.rounds)),
        (small, build_small),
    ):
        if not path.exists():
            start = time.perf_counter()
            build(path.with_suffix(".part"))
            path.with_suffix(".part").rename(path)
            print(f"built {path.name} in {time.perf_counter() - start:.0f} s")
    saved = dict(os.environ)
    results: dict[str, dict] = {"reads": store_reads(big, 20), "small reads": store_reads(small, 20)}
    try:
        for page in args.pages:
            results[page] = {
                "small": page_times(small, page, args.repeat),
                "scale": page_times(big, page, args.repeat),
            }
    finally:
        os.environ.clear()
        os.environ.update(saved)
    rows = [
        (page, t["small"][1], t["scale"][1], t["scale"][1] / t["small"][1], t["small"][0], t["scale"][0])
        for page, t in results.items()
        if page in PAGES
    ]
    scale = f"{args.jobs:,} jobs + {args.samples:,} x {args.rounds} job"
    print_table(
        f"Page render, AppTest, median s: small store vs {scale} ({machine()})",
        ("page", "small warm", "scale warm", "ratio warm", "small first view", "scale first view"),
        rows,
    )
    print_table(
        f"Store reads ({scale} vs small)",
        ("read", "scale", "small"),
        [(name, value, results["small reads"][name]) for name, value in results["reads"].items()],
    )
    return results


if __name__ == "__main__":
    main()
