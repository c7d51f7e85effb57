"""PostgreSQL for the query benchmark: a migrated throwaway database, filled with COPY, read through
the same SQL functions the dashboard calls with `.rpc()`, as a signed-in user with row-level security
on, each call in its own transaction the way PostgREST runs a request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from devtools.local_postgres import migrated_database_uri
from predictions.scoring.metrics import METRICS
from predictions.store.frames import (
    GROUP_COLUMNS,
    MATRIX_COLUMNS,
    PREDICTION_COLUMNS,
    TREND_COLUMNS,
    group_frame,
    to_frame,
    with_custom_aggregates,
    with_score_columns,
)
from predictions.store.records import PageQuery, PredictionRow

SCORE_ROWS = f"SELECT epoch, step, {', '.join(METRICS)} FROM public.training_predictions WHERE job_id = %s"
USER_ID = "c0000000-0000-4000-8000-00000000000c"
WRITE_COLUMNS = (
    "job_id", "user_id", "epoch", "step", "sample_index", "prompt", "ground_truth", "prediction",
    *METRICS, "scores", "metadata",
)  # fmt: skip


class PostgresReads:
    """Just what the benchmark measures: bulk writes, and the trends, matrix and page functions."""

    def __init__(self, conninfo: str):
        self.conn = psycopg.connect(conninfo)
        self.claims = json.dumps({"role": "authenticated", "sub": USER_ID})

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        columns = ", ".join(WRITE_COLUMNS)
        with self.conn.cursor().copy(f"COPY public.training_predictions ({columns}) FROM STDIN") as copy:
            for row in rows:
                values = {**row.as_dict(), "user_id": USER_ID}
                values["scores"] = json.dumps(row.scores) if row.scores else None
                values["metadata"] = json.dumps(row.metadata) if row.metadata else None
                copy.write_row([values[c] for c in WRITE_COLUMNS])
        self.conn.commit()

    def trends(self, job_id: str):
        result = self._rpc("predictions_trends(%s)", job_id)
        records = result["rounds"]
        rounds = with_custom_aggregates(to_frame(records, TREND_COLUMNS), [r["scores"] for r in records])
        return rounds, result["overall_improvement"]

    def group_trends(self, job_id: str, field: str):
        records = self._rpc("predictions_group_trends(%s, %s)", job_id, field)
        return group_frame(to_frame(records, GROUP_COLUMNS), [r["scores"] for r in records])

    def sample_matrix(self, job_id: str, metric: str = "char_error_rate"):
        columns = self._rpc("predictions_sample_matrix(%s, %s)", job_id, metric)
        return to_frame(list(zip(*(columns[c] for c in MATRIX_COLUMNS), strict=True)), MATRIX_COLUMNS)

    def predictions_page(self, job_id: str, query: PageQuery):
        metric, low, high = query.metric_range or (None, None, None)
        arguments = {
            "p_job_id": job_id, "p_step": query.step, "p_wrong_only": query.wrong_only,
            "p_sort_by": query.sort_by, "p_descending": query.descending, "p_limit": query.limit,
            "p_offset": query.offset, "p_metric": metric, "p_low": low, "p_high": high,
        }  # fmt: skip
        call = ", ".join(f"{name} => %s" for name in arguments)
        result = self._rpc(f"predictions_page({call})", *arguments.values())
        records = result["rows"]
        rows = with_score_columns(to_frame(records, PREDICTION_COLUMNS), [r["scores"] for r in records])
        return rows, result["total_count"]

    def fetch_job(self, job_id: str) -> list[tuple]:
        """Every scored row of the job in psycopg's binary rows, through the same role and RLS."""
        with self.conn.transaction():
            self._act_as_user()
            return self.conn.execute(SCORE_ROWS, (job_id,)).fetchall()

    def fetch_job_as_json(self, job_id: str) -> list[dict]:
        """Every scored row of the job as one JSON array, the way PostgREST answers a table GET."""
        with self.conn.transaction():
            self._act_as_user()
            text = self.conn.execute(
                f"SELECT coalesce(json_agg(r), '[]')::text FROM ({SCORE_ROWS}) AS r", (job_id,)
            )
            return json.loads(text.fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def _rpc(self, call: str, *params: Any) -> Any:
        with self.conn.transaction():
            self._act_as_user()
            return self.conn.execute(f"SELECT public.{call}", params).fetchone()[0]

    def _act_as_user(self) -> None:
        """One round trip, as PostgREST does it: the role and the JWT claims for this transaction."""
        self.conn.execute(
            "SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            (self.claims,),
        )


def postgres_store(folder: Path) -> tuple[PostgresReads, dict[str, Any]]:
    """A migrated database (pgserver, or PREDICTIONS_TEST_DATABASE_URL) and its fetch-all baselines:
    rows as JSON (what the seed's endpoint got through PostgREST), and psycopg's binary rows."""
    store = PostgresReads(migrated_database_uri())
    return store, {
        "fetch all + average": store.fetch_job_as_json,
        "fetch all (binary rows) + average": store.fetch_job,
    }
