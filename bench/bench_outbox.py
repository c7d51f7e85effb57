"""The local outbox: what keeping a round costs (append, per row) and how fast a replay drains it into
SQLite and into PostgreSQL (rows/s), with leases, per-call acknowledgement and deletes as in a run;
beside it the same rounds written straight to the store, so the outbox's own share shows.

Run: python bench/bench_outbox.py [--rounds 50 --samples 64 --backend sqlite|postgres|both]
PostgreSQL: the migrated throwaway database of devtools/local_postgres.py, rows upserted with psycopg
on the natural key (the Supabase HTTP hop is not included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, print_table
from predictions.delivery.outbox import Key, Outbox
from predictions.delivery.spool import replay
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow

KEY = Key("bench:store", "bench owner")
USER_ID = "c0000000-0000-4000-8000-00000000000c"
COLUMNS = (
    *("job_id", "user_id", "epoch", "step", "sample_index", "prompt", "ground_truth", "prediction"),
    *("exact_match", "char_error_rate", "length_ratio", "word_overlap", "scores", "metadata"),
)


def round_call(step: int, samples: int) -> dict:
    extra = {"scores": {"custom": 0.5}, "metadata": {"category": "a"}}
    text = "answer " * 8
    rows = [
        PredictionRow("bench", 1, step, i, f"prompt {i}", text, text, 1.0, 0.0, 1.0, 1.0, **extra).as_dict()
        for i in range(samples)
    ]
    return {"op": "write_predictions", "rows": rows}


class PostgresUpserts:
    """Rows upserted into the migrated `training_predictions` on (user_id, job_id, step, sample_index)."""

    def __init__(self, conninfo: str):
        import psycopg

        self.conn = psycopg.connect(conninfo, autocommit=True)

    def write_predictions(self, rows) -> None:
        import json

        names, marks = ", ".join(COLUMNS), ", ".join(["%s"] * len(COLUMNS))
        sql = (
            f"INSERT INTO public.training_predictions ({names}) VALUES ({marks}) "
            "ON CONFLICT (user_id, job_id, step, sample_index) DO UPDATE SET prediction = excluded.prediction"
        )
        values = [
            (
                *(r.job_id, USER_ID, r.epoch, r.step, r.sample_index, r.prompt, r.ground_truth, r.prediction),
                *(r.exact_match, r.char_error_rate, r.length_ratio, r.word_overlap),
                *(json.dumps(r.scores), json.dumps(r.metadata)),
            )
            for r in rows
        ]
        with self.conn.transaction(), self.conn.cursor() as cursor:
            cursor.executemany(sql, values)


def measure(store, folder: Path, rounds: int, samples: int) -> dict[str, float]:
    """Append `rounds` calls one by one (as the writer does in an outage), then replay them all."""
    outbox = Outbox(folder / "bench.outbox.db")
    calls = [round_call(step, samples) for step in range(1, rounds + 1)]
    started = time.perf_counter()
    for call in calls:
        outbox.append(KEY, [call])
    appended = time.perf_counter() - started
    started = time.perf_counter()
    result = replay(store, outbox, KEY)
    replayed = time.perf_counter() - started
    assert result.stored == rounds and outbox.count(KEY) == 0, result
    started = time.perf_counter()
    for call in calls:  # the same rounds again, straight to the store: what the store itself costs
        store.write_predictions([PredictionRow(**row) for row in call["rows"]])
    direct = time.perf_counter() - started
    rows = rounds * samples
    return {
        "append ms per round": appended / rounds * 1000,
        "append us per row": appended / rows * 1e6,
        "replay rows/s": rows / replayed,
        "replay ms per round": replayed / rounds * 1000,
        "direct write ms per round": direct / rounds * 1000,
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    options = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        if options.backend in ("sqlite", "both"):
            store = SQLiteStore(Path(folder) / "bench.db")
            results["sqlite"] = measure(store, Path(folder) / "s", options.rounds, options.samples)
            store.close()
        if options.backend in ("postgres", "both"):
            from devtools.local_postgres import migrated_database_uri

            store = PostgresUpserts(migrated_database_uri())
            results["postgres"] = measure(store, Path(folder) / "p", options.rounds, options.samples)
    print(f"{machine()}; {options.rounds} rounds of {options.samples} rows")
    header = ["store", *next(iter(results.values()))]
    print_table("outbox", header, [[name, *values.values()] for name, values in results.items()])
    return results


if __name__ == "__main__":
    main()
