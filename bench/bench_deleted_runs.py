"""What keeping deleted jobs deleted costs a round's write: each row names its run, and the store checks
that run against the job's deleted runs (SQLite before writing; a row trigger on Postgres) in the same
transaction. Rows without a run (an older writer) skip the check: the two are written side by side, into
a store that already holds `--deleted` deletions of other jobs.

Run: python bench/bench_deleted_runs.py [--rows 1000 --rounds 30 --deleted 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_queries import job_rows
from bench.common import machine, print_table
from bench.postgres import USER_ID, postgres_store
from predictions.store import SQLiteStore
from predictions.store.sqlite import LOCAL_USER_ID


def median_ms(write, rows: int, rounds: int, tag: str) -> tuple[float, float]:
    """Median milliseconds of one round's write without a run (no check) and with one, alternated
    round by round so that other load on the machine falls on both alike."""
    times: dict[bool, list[float]] = {False: [], True: []}
    plain, checked = (job_rows(f"job-{tag}-{run}", rounds, rows, seed=1) for run in (False, True))
    for number, batches in enumerate(zip(plain, checked, strict=True)):
        for with_run in (number % 2 == 0, number % 2 == 1):
            batch = [
                dataclasses.replace(row, run="run-live" if with_run else None) for row in batches[with_run]
            ]
            start = time.perf_counter()
            write(batch)
            times[with_run].append(time.perf_counter() - start)
    return statistics.median(times[False]) * 1000, statistics.median(times[True]) * 1000


def old_deletions(count: int, user_id: str) -> list[tuple[str, str, str, str]]:
    return [(user_id, f"old-{i}", f"run-{i}", "2026-12-01T00:00:00Z") for i in range(count)]


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--deleted", type=int, default=2000)
    args = parser.parse_args(argv)
    insert = "INSERT INTO training_deleted_runs (user_id, job_id, run, deleted_at) VALUES "
    again = " ON CONFLICT DO NOTHING"  # a database a run before filled (PREDICTIONS_TEST_DATABASE_URL)
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SQLiteStore(Path(folder) / "deleted.db")  # made with its schema, then filled directly
        with closing(sqlite3.connect(Path(folder) / "deleted.db")) as conn, conn:
            conn.executemany(insert + "(?, ?, ?, ?)", old_deletions(args.deleted, LOCAL_USER_ID))
        postgres, _ = postgres_store(Path(folder))
        with postgres.conn.cursor() as cursor:
            cursor.executemany(insert + "(%s, %s, %s, %s)" + again, old_deletions(args.deleted, USER_ID))
        postgres.conn.commit()
        table = []
        for name, write in (
            ("SQLite", sqlite.write_predictions),
            ("Postgres (COPY)", postgres.write_predictions),
        ):
            plain, checked = median_ms(write, args.rows, args.rounds, name)
            table.append((name, plain, checked, checked / plain))
        sqlite.close()
        postgres.close()
    print_table(
        f"A {args.rows}-row round's write, {args.deleted} deleted runs stored ({machine()})",
        ("store", "no run ms", "with run ms", "ratio"),
        table,
    )
    return table


if __name__ == "__main__":
    main()
