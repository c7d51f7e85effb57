"""The storage interface every backend implements, and the plain data it returns.

Backends return dataclasses and pandas data frames with the columns named here, never cursors or
client responses, so the dashboard and the tests treat SQLite and Supabase alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, make_dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from predictions.errors import ConfigError
from predictions.scorer import METRICS, PRIMARY_METRIC, REGISTRY, Metric
from predictions.store.metrics import (
    CUSTOM_NAME,
    check_metric_name,
    custom_names,
    is_custom_name,
    job_metrics,
)

LOCAL_USER_ID = "00000000-0000-0000-0000-000000000000"
"""The owner written when no user is given: the embedded store has one local user."""

JOB_STATUSES = ("running", "finished", "failed")

TREND_COLUMNS = (
    "epoch",
    "step",
    "sample_count",
    "scored_count",
    *(f"avg_{name}" for name in METRICS),
    f"min_{PRIMARY_METRIC}",
    f"max_{PRIMARY_METRIC}",
)
"""A trends frame's fixed columns; each custom metric adds its own `avg_`, `min_` and `max_` columns."""
ROUND_COLUMNS = ("epoch", "step", "sample_count", "created_at")
PREDICTION_COLUMNS = (
    "job_id",
    "epoch",
    "step",
    "sample_index",
    "prompt",
    "ground_truth",
    "prediction",
    *METRICS,
    "metadata",
    "text_replacements",
    "created_at",
)
"""A rows frame's fixed columns; each user scorer adds a column of its values, named like it."""
MATRIX_COLUMNS = ("sample_index", "epoch", "step", "value")
GROUP_COLUMNS = ("epoch", "step", "group", "sample_count", *(f"avg_{name}" for name in METRICS))
"""A group-by trends frame's fixed columns; each user scorer adds its `avg_<name>` column."""
SORTABLE_COLUMNS = ("sample_index", "step", "epoch", *METRICS)


def _row_as_dict(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__slots__}


PredictionRow = make_dataclass(
    "PredictionRow",
    [
        ("job_id", str),
        ("epoch", int),
        ("step", int),
        ("sample_index", int),
        ("prompt", str),
        ("prediction", str),
        ("ground_truth", str | None, None),
        *((name, float | None, None) for name in METRICS),
        ("user_id", str | None, None),
        ("scores", dict[str, float | None] | None, None),
        ("metadata", dict[str, Any] | None, None),
        ("text_replacements", int, 0),
    ],
    frozen=True,
    slots=True,
    namespace={
        "as_dict": _row_as_dict,
        "__doc__": """One sample's prediction in one round: a row of `training_predictions`.

    Its fields are the table's: a column per built-in metric (from the registry), `scores` for the
    values of user scorers by name, `metadata` for the sample fields kept with the row (to group by),
    `text_replacements` how many characters no store can hold (NUL, lone surrogates) became U+FFFD.
    """,
    },
)
PredictionRow.__module__ = __name__


@dataclass(frozen=True, slots=True)
class Job:
    """A training run as the job picker shows it; jobs known only from prediction rows have no name."""

    id: str
    status: str = "unknown"
    name: str | None = None
    model: str | None = None
    user_id: str | None = None
    config: dict[str, Any] | None = None
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    latest_epoch: int | None = None
    latest_step: int | None = None
    round_count: int = 0
    last_active: str | None = None
    """When the job last wrote a round or changed status (ISO-8601): how long a running job is silent."""

    @property
    def label(self) -> str:
        """What the picker shows: the name (or id), and a marker while it runs."""
        title = self.name or self.id
        return f"● {title}" if self.status == "running" else title


@dataclass(frozen=True)
class Trends:
    """Per-round aggregates, ordered by step, the overall CER improvement in %, and the job's metrics.

    `rounds` has `TREND_COLUMNS` and, per user scorer, `avg_<name>`, `min_<name>` and `max_<name>`.
    `metrics` lists every metric of the job (built-in first) and `group_fields` the sample fields
    its rows keep to group by, both from the store: the dashboard has no list of its own.
    """

    job_id: str
    rounds: pd.DataFrame
    overall_improvement: float | None
    metrics: tuple[Metric, ...] = tuple(REGISTRY.values())
    group_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class PredictionPage:
    """One page of predictions (`PREDICTION_COLUMNS`) and how many rows match the filter in all."""

    rows: pd.DataFrame
    total_count: int
    offset: int = 0
    limit: int = 50


@runtime_checkable
class Store(Protocol):
    """Where prediction rounds are kept. Every read is aggregated or paged by the backend itself."""

    description: str
    """Which store this is, for people: 'SQLite at .predictions/predictions.db'."""

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        """Upsert rows on (user_id, job_id, step, sample_index): a replayed write never duplicates a row."""

    def start_job(
        self,
        job_id: str,
        *,
        name: str | None = None,
        model: str | None = None,
        config: dict[str, Any] | None = None,
        user_id: str | None = None,
        at: str | None = None,
    ) -> None:
        """Register a job as running (again, if it existed), keeping its first start time.

        `at` (ISO-8601 UTC, default now) is when the status was set: a status set earlier than the
        job's current one is ignored, so a replayed start never undoes a later finish."""

    def finish_job(self, job_id: str, *, status: str = "finished", at: str | None = None) -> None:
        """Mark a job finished or failed, unless a later status (by `at`) is already recorded."""

    def delete_job(self, job_id: str, *, user_id: str | None = None) -> None:
        """Delete one of the caller's jobs and all its rows; StoreError when the caller has no such job.

        `user_id` names the owner where a store shows many (`Job.user_id`, for an admin's store);
        row-level security still refuses anyone but the owner.
        """

    def list_jobs(self) -> list[Job]:
        """Every visible job, most recently active first, including jobs with prediction rows only."""

    def trends(self, job_id: str) -> Trends:
        """Aggregates per round (`TREND_COLUMNS`), ordered by step, and the overall improvement."""

    def rounds(self, job_id: str) -> pd.DataFrame:
        """The prediction rounds of a job (`ROUND_COLUMNS`), ordered by step."""

    def sample_history(self, job_id: str, sample_index: int) -> pd.DataFrame:
        """One sample's rows (`PREDICTION_COLUMNS`) in every round, ordered by step."""

    def sample_matrix(self, job_id: str, metric: str = "char_error_rate") -> pd.DataFrame:
        """One metric for every sample and round (`MATRIX_COLUMNS`), in long form for a heatmap."""

    def predictions_page(
        self,
        job_id: str,
        *,
        step: int | None = None,
        wrong_only: bool = False,
        sort_by: str = "sample_index",
        descending: bool = False,
        limit: int = 50,
        offset: int = 0,
        metric_range: tuple[str, float | None, float | None] | None = None,
    ) -> PredictionPage:
        """A page of rows, optionally one round's and only wrong answers, sorted (nulls last).

        `sort_by` is a column of `SORTABLE_COLUMNS` or a user scorer's name; `metric_range` =
        (metric, low, high) keeps rows whose metric lies within (inclusive; None leaves a side open).
        """

    def group_trends(self, job_id: str, field: str) -> pd.DataFrame:
        """Per round and per value of the rows' metadata `field` (`GROUP_COLUMNS` and a user scorer's
        `avg_<name>`), ordered by step then group; rows without the field form the group None."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class SignIn(Protocol):
    """What a store serving many users adds for the dashboard: who is signed in, and signing in.

    Supabase with an anon key needs it (row-level security shows a signed-out user nothing); the
    embedded store has one local user and does not implement it.
    """

    signed_in_email: str | None
    """The signed-in user's email, None while nobody is."""

    @property
    def requires_sign_in(self) -> bool:
        """True while nobody is signed in and the store would show nothing."""

    def sign_in(self, email: str, password: str) -> None:
        """Sign in; raises `AuthError` with a message fit to show when refused or unreachable."""


def sign_in_of(store: Store) -> SignIn | None:
    """The store's sign-in, or None for a store without users (the embedded SQLite store)."""
    return store if isinstance(store, SignIn) else None


def signed_in_email(store: Store) -> str | None:
    """Who is signed in to the store; None for a store without users or while nobody is."""
    account = sign_in_of(store)
    return account.signed_in_email if account is not None else None


def overall_improvement(avg_cers: Sequence[float | None]) -> float | None:
    """(first scored round's CER - last one's) / first * 100; None with < 2 scored rounds or first 0."""
    scored = [value for value in avg_cers if value is not None and not math.isnan(value)]
    if len(scored) < 2 or scored[0] == 0:
        return None
    return (scored[0] - scored[-1]) / scored[0] * 100.0


INTEGER_COLUMNS = frozenset(
    {"epoch", "step", "sample_index", "sample_count", "scored_count", "text_replacements"}
)
FLOAT_COLUMNS = frozenset(
    {*METRICS, "value", *(c for c in TREND_COLUMNS if c.startswith(("avg_", "min_", "max_")))}
)


def to_frame(records: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
    """A data frame with the given columns from tuples or dicts; numbers typed the same on every backend.

    Metric columns are float64 with NaN for null, so an unscored job charts and compares alike
    whether it came from SQLite or from Postgres through JSON. Built column by column with numpy:
    five times faster than `DataFrame.from_records` plus casts, which matters on every refresh.
    """
    if records and isinstance(records[0], dict):
        values = [[record.get(column) for record in records] for column in columns]
    else:
        values = list(zip(*records, strict=True)) if records else [()] * len(columns)
    data = {}
    for column, column_values in zip(columns, values, strict=True):
        if column in FLOAT_COLUMNS:
            data[column] = np.array(column_values, dtype="float64")
        elif column in INTEGER_COLUMNS:
            data[column] = np.array(column_values, dtype="int64")
        else:
            data[column] = list(column_values)
    return pd.DataFrame(data, columns=list(columns))


def check_metric(metric: str) -> str:
    """A built-in metric or a user scorer's name (any job may have one)."""
    return check_metric_name(metric)


def check_page_args(
    sort_by: str, limit: int, offset: int, metric_range: tuple[str, float | None, float | None] | None = None
) -> None:
    """Validate the arguments of `predictions_page` before they reach SQL."""
    if sort_by not in SORTABLE_COLUMNS and not is_custom_name(sort_by):
        raise ConfigError(
            f"sort_by={sort_by!r} is not sortable; valid: {', '.join(SORTABLE_COLUMNS)} "
            "or a user scorer's name"
        )
    if metric_range is not None:
        check_metric_name(metric_range[0], "metric_range")
    if not 1 <= limit <= 1000:
        raise ConfigError(f"limit={limit!r} is out of range; valid: 1 to 1000 rows a page")
    if offset < 0:
        raise ConfigError(f"offset={offset!r} is negative; valid: 0 or more")


def make_trends(
    job_id: str, rounds: pd.DataFrame, improvement: float | None, config: dict[str, Any] | None
) -> Trends:
    """Trends with the job's metric list and group fields, described by the job's recorded config."""
    config = config if isinstance(config, dict) else {}
    fields = config.get("metadata_fields") or ()
    metrics = job_metrics(custom_names(rounds), config.get("scorers"))
    return Trends(job_id, rounds, improvement, metrics, tuple(str(f) for f in fields))


def check_group_field(field: str) -> str:
    """A metadata field name: an identifier, like a user scorer's name, so it is safe as a JSON path."""
    if not isinstance(field, str) or CUSTOM_NAME.fullmatch(field) is None:
        raise ConfigError(f"field={field!r} is not a metadata field; valid: letters, digits and _")
    return field


def check_status(status: str) -> str:
    if status not in JOB_STATUSES:
        raise ConfigError(f"status={status!r} is not a job status; valid: {', '.join(JOB_STATUSES)}")
    return status
