"""The dashboard at scale (issue 23): a store of 10,000 jobs plus one job of 1,000 samples x 200 rounds
with two user scores and a metadata field, against a small store (3 jobs x 100 rounds x 100 samples,
`--small`), both read in the same run.

Measured: each page's server-side render time, wall and this process's CPU (AppTest, a first view with
caches empty, then a rerun with caches warm; the two stores take turns within each repeat, so the load
of a shared machine hits both alike; medians), the store reads the dashboard makes at 10,000 jobs (the
picker's `list_jobs`, `find_job`, `jobs_version`, the Samples page's summary and one heatmap page), and
the whole big job as CSV.
Goals: every page at scale within 1.2x of the small store; list_jobs under 20 ms; CSV of 200k rows
under 5 s. The stores are built once into --folder and reused (building the big one takes minutes).
Run: python bench/bench_scale.py [--folder .bench-scale --jobs 10000 --samples 1000 --rounds 200 --repeat 5]
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
from predictions.dashboard import analysis, csv_export, queries
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


def build_small(path: Path, rounds: int = 100, samples: int = 100) -> None:
    store = SQLiteStore(path)
    for j in range(3):
        job_id = BIG_JOB if j == 0 else f"small-{j}"
        store.start_job(job_id, name=f"small {j}", model="tiny-gpt2", config=config_like_a_monitor(j))
        for round_rows in job_rows(job_id, rounds, samples, seed=j, custom=2):
            store.write_predictions(round_rows)
    store.close()


TIMES = ("first view", "first view CPU", "warm", "warm CPU")


def view_times(db: Path, page: str) -> dict[str, float]:
    """Seconds (wall, and this process's CPU) of a first view of `page` (caches empty: the job list and
    every query) and of a rerun (caches warm)."""
    os.environ.update(PREDICTIONS_DB=str(db), SUPABASE_URL="", SUPABASE_KEY="")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["job"] = BIG_JOB
    at.run()
    if page != PAGES[0]:
        at.switch_page(f"pages/{page}.py")
    times = {}
    for name in ("first view", "warm"):
        if name == "first view":
            st.cache_data.clear()
            queries.list_jobs.clear()
            queries.find_job.clear()
        start, cpu = time.perf_counter(), time.process_time()
        at.run()
        times[name], times[f"{name} CPU"] = time.perf_counter() - start, time.process_time() - cpu
        if at.exception:
            raise RuntimeError(f"{page}: {[e.message for e in at.exception]}")
    return times


def page_times(stores: dict[str, Path], page: str, repeat: int) -> dict[str, dict[str, float]]:
    """Median `view_times` of `page` per store; the stores take turns within each repeat, so the load of
    a shared machine hits both alike."""
    seen: dict[str, dict[str, list[float]]] = {name: {key: [] for key in TIMES} for name in stores}
    for _ in range(repeat):
        for name, db in stores.items():
            for key, value in view_times(db, page).items():
                seen[name][key].append(value)
    return {
        name: {key: statistics.median(values) for key, values in times.items()}
        for name, times in seen.items()
    }


def cpu_ms(run, repeat: int) -> float:
    """Median CPU milliseconds of this process per call: on a shared machine it moves less than wall."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


def store_reads(db: Path, repeat: int) -> dict[str, float]:
    """What the dashboard reads at scale, each as median wall and CPU ms; the big job as CSV once."""
    store = SQLiteStore(db)
    steps = store.trends(BIG_JOB).rounds["step"].tolist()
    samples = store.sample_summary(BIG_JOB)["sample_index"].tolist()[: analysis.HEATMAP_PAGE_SAMPLES]
    drawn = analysis.drawn_steps(steps)[0]
    reads = {
        f"list_jobs({queries.PICKER_JOBS}), the picker": lambda: store.list_jobs(limit=queries.PICKER_JOBS),
        "list_jobs(), 1,000 jobs": store.list_jobs,
        "list_jobs(search=...)": lambda: store.list_jobs(limit=queries.PICKER_JOBS, search="big run"),
        "find_job": lambda: store.find_job(BIG_JOB),
        "jobs_version": store.jobs_version,
        "sample_summary, CER": lambda: store.sample_summary(BIG_JOB),
        "sample_matrix, one heatmap page": lambda: store.sample_matrix(BIG_JOB, samples=samples, steps=drawn),
    }
    try:
        results = {}
        for name, read in reads.items():
            results[f"{name} ms"] = median_time(read, repeat) * 1000
            results[f"{name} CPU ms"] = cpu_ms(read, repeat)
        start, cpu = time.perf_counter(), time.process_time()
        size = len(csv_export.job_csv(store, BIG_JOB))
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
    parser.add_argument(
        "--small",
        type=int,
        nargs=2,
        default=[100, 100],
        metavar=("ROUNDS", "SAMPLES"),
        help="each of the small store's 3 jobs (default: 100 100)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="page views per store (medians)")
    parser.add_argument("--reads", type=int, default=20, help="calls per store read (medians)")
    parser.add_argument("--pages", nargs="+", default=list(PAGES), choices=PAGES)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    big = args.folder / f"scale-{args.jobs}-{args.samples}x{args.rounds}.db"
    small = args.folder / "small-3x{}x{}.db".format(*args.small)
    for path, build in (
        (big, lambda p: build_big(p, args.jobs, args.samples, args.rounds)),
        (small, lambda p: build_small(p, *args.small)),
    ):
        if not path.exists():
            start = time.perf_counter()
            build(path.with_suffix(".part"))
            path.with_suffix(".part").rename(path)
            print(f"built {path.name} in {time.perf_counter() - start:.0f} s")
    saved = dict(os.environ)
    results: dict[str, dict] = {
        "reads": store_reads(big, args.reads),
        "small reads": store_reads(small, args.reads),
    }
    try:
        for page in args.pages:
            results[page] = page_times({"small": small, "scale": big}, page, args.repeat)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    rows = []
    for page in args.pages:
        small_times, scale_times = results[page]["small"], results[page]["scale"]
        rows.append(
            (
                page,
                small_times["warm"],
                scale_times["warm"],
                scale_times["warm"] / small_times["warm"],
                small_times["warm CPU"],
                scale_times["warm CPU"],
                scale_times["warm CPU"] / small_times["warm CPU"],
                small_times["first view"],
                scale_times["first view"],
                small_times["first view CPU"],
                scale_times["first view CPU"],
            )
        )
    scale = f"{args.jobs:,} jobs + {args.samples:,} x {args.rounds} job"
    print_table(
        f"Page render, AppTest, median of {args.repeat} s: small store vs {scale} ({machine()})",
        (
            "page", "small warm", "scale warm", "ratio warm", "small warm CPU", "scale warm CPU", "ratio CPU",
            "small first view", "scale first view", "small first CPU", "scale first CPU",
        ),
        rows,
    )  # fmt: skip
    print_table(
        f"Store reads ({scale} vs small)",
        ("read", "scale", "small"),
        [(name, value, results["small reads"][name]) for name, value in results["reads"].items()],
    )
    return results


if __name__ == "__main__":
    main()
