"""Dashboard queries on a big table: the store's SQL aggregates against fetching all of a job's rows
and averaging them in Python (what the seed's trends endpoint did), side by side.

Goal: trends under 20 ms at the median on SQLite and PostgreSQL, at least 20x faster than fetch-all,
with two user scorers' values in every row (`--custom 2`), aggregated per round like the built-ins.
Run: python bench/bench_queries.py [--jobs 100 --rounds 100 --samples 100 --custom 2]
[--backend sqlite postgres]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from bench.common import machine, median_time, print_table
from predictions.store import SQLiteStore
from predictions.store.protocol import Store
from predictions.store.records import PageQuery, PredictionRow

BASELINE = "fetch all + average"
"""The baseline each backend's speedup is judged by: on Postgres, rows as JSON, as PostgREST sends them."""
SCORE_COLUMNS = "epoch, step, exact_match, char_error_rate, length_ratio, word_overlap"


def job_rows(
    job_id: str, rounds: int, samples: int, seed: int, custom: int = 2
) -> Iterator[list[PredictionRow]]:
    """One list of rows per round; CER falls as the rounds go on, like a run that learns. Each row has
    `custom` user scores (`custom_0`, ...) and a category."""
    rng = random.Random(seed)
    for step in range(1, rounds + 1):
        level = 1.0 - step / (rounds + 1)
        yield [
            PredictionRow(
                job_id, step, step * 10, i, f"prompt {i} " * 8, f"answer {rng.random():.4f} " * 6,
                f"answer {i} " * 6, float(rng.random() < 0.2), min(1.0, level * rng.random() * 2),
                rng.uniform(0.5, 1.5), 1.0 - level,
                scores={f"custom_{k}": rng.random() for k in range(custom)} or None,
                metadata={"category": f"c{i % 4}"},
            )
            for i in range(samples)
        ]  # fmt: skip


def fill(store: Store, jobs: int, rounds: int, samples: int, custom: int = 2) -> float:
    """Write the table, a round per call; returns seconds taken."""
    start = time.perf_counter()
    for j in range(jobs):
        batch: list[PredictionRow] = []
        for round_rows in job_rows(f"job-{j:03d}", rounds, samples, seed=j, custom=custom):
            batch.extend(round_rows)
            if len(batch) >= 10_000:
                store.write_predictions(batch)
                batch = []
        if batch:
            store.write_predictions(batch)
    return time.perf_counter() - start


def fetch_all_and_average(fetch: Callable[[], list]) -> pd.DataFrame:
    """The seed's way: download every scored row of the job, then group and average in the client."""
    rows = fetch()
    frame = (
        pd.DataFrame(rows)
        if rows and isinstance(rows[0], dict)
        else pd.DataFrame(rows, columns=SCORE_COLUMNS.split(", "))
    )
    return frame.groupby("step").agg(
        epoch=("epoch", "max"),
        avg_exact_match=("exact_match", "mean"),
        avg_char_error_rate=("char_error_rate", "mean"),
        avg_length_ratio=("length_ratio", "mean"),
        avg_word_overlap=("word_overlap", "mean"),
        min_char_error_rate=("char_error_rate", "min"),
        max_char_error_rate=("char_error_rate", "max"),
    )


def measure(store: Store, baselines: dict[str, Callable[[str], list]], job_id: str, repeat: int) -> dict:
    """Median milliseconds of each dashboard read for one job, and of each fetch-all baseline."""
    reads = {
        "trends": lambda: store.trends(job_id),
        "sample matrix": lambda: store.sample_matrix(job_id),
        "page (50, by CER)": lambda: store.predictions_page(
            job_id, PageQuery(sort_by="char_error_rate", descending=True)
        ),
        "group trends (category)": lambda: store.group_trends(job_id, "category"),
    }
    for name, fetch_job in baselines.items():
        reads[name] = lambda fetch_job=fetch_job: fetch_all_and_average(lambda: fetch_job(job_id))
    return {name: median_time(read, repeat) * 1000 for name, read in reads.items()}


def sqlite_backend(folder: Path) -> tuple[Store, dict[str, Callable[[str], list]]]:
    store = SQLiteStore(folder / "bench.db")

    def fetch_job(job_id: str) -> list[tuple]:
        sql = f"SELECT {SCORE_COLUMNS} FROM training_predictions WHERE job_id = ?"
        return store._query(sql, (job_id,))

    return store, {BASELINE: fetch_job}


def postgres_backend(folder: Path) -> tuple[Store, dict[str, Callable[[str], list]]]:
    from bench.postgres import postgres_store

    return postgres_store(folder)


BACKENDS = {"sqlite": sqlite_backend, "postgres": postgres_backend}


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--custom", type=int, default=2, help="user scores per row")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--backend", nargs="+", choices=sorted(BACKENDS), default=["sqlite", "postgres"])
    args = parser.parse_args(argv)
    total_rows = args.jobs * args.rounds * args.samples
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.backend:
            store, baselines = BACKENDS[name](Path(folder) / name)
            seconds = fill(store, args.jobs, args.rounds, args.samples, args.custom)
            print(f"{name}: wrote {total_rows:,} rows with {args.custom} user scores each in {seconds:.1f} s")
            results[name] = measure(store, baselines, f"job-{args.jobs // 2:03d}", args.repeat)
            store.close()
    header = ("read (one job)", *(f"{name} ms" for name in results))
    reads = list(dict.fromkeys(read for timings in results.values() for read in timings))
    rows = [(read, *(results[name].get(read, "-") for name in results)) for read in reads]
    title = f"Dashboard reads, median ms, {total_rows:,} rows over {args.jobs} jobs"
    title += f", {args.custom} user scores a row"
    print_table(f"{title} ({machine()})", header, rows)
    for name, timings in results.items():
        speedup = timings[BASELINE] / timings["trends"]
        print(
            f"{name}: trends {timings['trends']:.1f} ms (goal < 20), "
            f"{speedup:.0f}x faster than fetch-all (goal >= 20x)"
        )
    return results


if __name__ == "__main__":
    main()
