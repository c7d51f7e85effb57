"""The whole big job of bench_scale's store (1,000 samples x 200 rounds, two user scores, a metadata
field: 200k rows) as the dashboard's CSV download, alone: median wall and CPU of --repeat runs.
Goal (issue 23): under 5 s. Build the store first with bench/bench_scale.py (same --folder).

Also the Supabase store's own part of the same download, without the network and the server: each page
of 1,000 rows as PostgREST's JSON text (made from the same rows beforehand, not timed), parsed as the
client parses it, turned into values (`frames.records_values`) and written as CSV lines.

Run: python bench/bench_csv.py [--db .bench-scale/scale-10000-1000x200.db --repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictions.dashboard import csv_export  # noqa: E402
from predictions.store import SQLiteStore  # noqa: E402
from predictions.store.frames import PREDICTION_COLUMNS, records_values  # noqa: E402

JSON_COLUMNS = ("metadata", "scores")
"""Columns PostgREST sends as JSON values (jsonb), not as text."""


def timed(work, repeat: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of `repeat` runs of `work`, and its last result."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def json_pages(db: Path, job_id: str) -> list[str]:
    """The job's rows as the JSON texts of PostgREST's pages (`predictions_rows_after`)."""
    names = [*PREDICTION_COLUMNS, "scores"]
    sql = f"SELECT {', '.join(names)} FROM training_predictions WHERE job_id = ? ORDER BY step, sample_index"
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute(sql, (job_id,)).fetchall()
    size, pages = csv_export.CSV_PAGE_ROWS, []
    for start in range(0, len(rows), size):
        records = [dict(zip(names, row, strict=True)) for row in rows[start : start + size]]
        for record in records:
            for name in JSON_COLUMNS:
                record[name] = None if record[name] is None else json.loads(record[name])
        pages.append(json.dumps(records))
    return pages


def supabase_csv(pages: list[str], custom: list[str]) -> str:
    """What the Supabase store and the export do with those pages: parse, values, CSV lines."""
    makers = csv_export.column_makers([*PREDICTION_COLUMNS, *custom])
    return "".join(csv_export.csv_lines(records_values(json.loads(page), custom), makers) for page in pages)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, default=ROOT / ".bench-scale" / "scale-10000-1000x200.db")
    parser.add_argument("--job", default="big-job")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    store = SQLiteStore(args.db)
    wall, cpu, text = timed(lambda: csv_export.job_csv(store, args.job), args.repeat)
    custom = [m.name for m in store.trends(args.job).metrics if m.name not in csv_export.METRICS]
    store.close()
    pages = json_pages(args.db, args.job)
    supabase_wall, supabase_cpu, _ = timed(lambda: supabase_csv(pages, custom), args.repeat)
    result = {
        "rows": text.count("\r\n") - 1,
        "MB": len(text) / 1e6,
        "wall s": wall,
        "CPU s": cpu,
        "supabase part wall s": supabase_wall,
        "supabase part CPU s": supabase_cpu,
        "load": os.getloadavg()[0],
    }
    print(", ".join(f"{name} {value:.3g}" for name, value in result.items()))
    return result


if __name__ == "__main__":
    main()
