"""Metrics in a store's data: user scorers' values as JSON on the way in, as columns on the way out.

The built-in metrics are table columns (`predictions.scoring.metrics.REGISTRY`); a user scorer's
values live in the row's `scores` JSON object by name. Both stores summarise them per round as
`{name: {avg, min, max, count}}`; these helpers turn that into `avg_<name>`, `min_<name>` and
`max_<name>` columns, and a row's `scores` into a column per metric, so the dashboard treats every
metric alike. The column lists of every frame a store returns live here too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from predictions.scoring.metrics import METRICS, PRIMARY_METRIC, REGISTRY, Metric
from predictions.scoring.names import is_custom_name

AGGREGATES = ("avg", "min", "max")

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
SERIES_COLUMNS = ("step", "name", "value")
"""A job's logged training series (loss, eval loss, learning rate), long form, ordered by step."""
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
SAMPLE_SUMMARY_COLUMNS = (
    "sample_index",
    "first_value",
    "latest_value",
    "latest_step",
    "min_value",
    "min_earlier",
    "last_zero_step",
)
"""One row per sample of a job, for one metric: its first and latest scored value, the latest scored
step, its lowest value, its lowest before the latest round, and the last step it was 0 (a CER of 0 is a
right answer); null where the sample has no scored value. Steps are floats, NaN where there is none."""
GROUP_COLUMNS = ("epoch", "step", "group", "sample_count", *(f"avg_{name}" for name in METRICS))
"""A group-by trends frame's fixed columns; each user scorer adds its `avg_<name>` column."""
SORTABLE_COLUMNS = ("sample_index", "step", "epoch", *METRICS)

ROLLOUT_COLUMNS = (
    "job_id",
    "step",
    "generation",
    "group_index",
    "completion_index",
    "prompt_id",
    "prompt",
    "completion",
    "rewards",
    "reward",
    "completion_tokens",
    "truncated",
    "ground_truth",
    *METRICS,
    "text_replacements",
    "created_at",
)
"""A rollouts frame's fixed columns (`rewards` holds a dict by reward function); user scorers add theirs."""
ROLLOUT_SUMMARY_COLUMNS = (
    "step",
    "rollout_count",
    "group_count",
    "zero_std_groups",
    "avg_reward",
    "var_reward",
    "min_reward",
    "max_reward",
    "avg_completion_tokens",
    "var_completion_tokens",
    "min_completion_tokens",
    "max_completion_tokens",
    "truncated_count",
    "scored_count",
    *(f"avg_{name}" for name in METRICS),
)
"""What both stores keep per step (population variances: a standard deviation is not plain SQL)."""
ROLLOUT_STEP_COLUMNS = tuple(c.replace("var_", "std_") for c in ROLLOUT_SUMMARY_COLUMNS)
"""A rollout trends frame: the summary with standard deviations instead of variances."""
REWARD_TREND_COLUMNS = ("step", "name", "count", "avg", "std", "min", "max")
ROLLOUT_PROMPT_COLUMNS = ("prompt_id", "prompt", "ground_truth", "rollout_count", "first_step", "last_step")

INTEGER_COLUMNS = frozenset(
    {"epoch", "step", "sample_index", "sample_count", "scored_count", "text_replacements"}
    | {"generation", "group_index", "completion_index", "completion_tokens", "rollout_count", "group_count"}
    | {"zero_std_groups", "truncated_count", "count", "first_step", "last_step"}
)
FLOAT_COLUMNS = frozenset(
    {
        *METRICS,
        "value",
        *SAMPLE_SUMMARY_COLUMNS[1:],
        *(c for c in TREND_COLUMNS if c.startswith(("avg_", "min_", "max_"))),
    }
    | {"reward", "avg", "std", "min", "max"}
    | {c for c in (*ROLLOUT_SUMMARY_COLUMNS, *ROLLOUT_STEP_COLUMNS) if c.startswith(("avg_", "var_", "std_"))}
    | {c for c in ROLLOUT_SUMMARY_COLUMNS if c.startswith(("min_", "max_"))}
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


def clean_scores(values: Mapping[str, Any] | None) -> dict[str, float | None] | None:
    """Scores as JSON can carry them: numbers and bools as floats, NaN and infinities as null."""
    if not values:
        return None
    return {str(name): _number(value) for name, value in values.items()}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


_JSON_TEXT = json.JSONEncoder(default=str, allow_nan=False)
"""One encoder for every row: `json.dumps` with options builds a new one per call (a third of a
2,000-row round's write)."""


def to_json_text(value: Any) -> str | None:
    """JSON text for a SQLite column; None stays NULL."""
    return None if value is None else _JSON_TEXT.encode(value)


def from_json(value: Any) -> Any:
    """A JSON column's value: text from SQLite is parsed, jsonb from Postgres arrives parsed; a frame's
    missing value (NaN) is None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return json.loads(value) if isinstance(value, str) else value


def _parsed(values: Sequence[Any]) -> list[dict[str, Any]]:
    """JSON objects from a column; the common empty ones skip the parser (a trends read of a job
    without user scores parses one per round on every refresh)."""
    return [{} if value is None or value == "{}" else from_json(value) or {} for value in values]


def with_score_columns(rows: pd.DataFrame, scores: Sequence[Any]) -> pd.DataFrame:
    """Rows with each user scorer's values as a float column of its own, after the fixed columns."""
    parsed = _parsed(scores)
    names = sorted(filter(is_custom_name, {name for values in parsed for name in values}))  # names once
    extra = {name: np.array([values.get(name) for values in parsed], dtype="float64") for name in names}
    if "metadata" in rows.columns:
        metadata = [from_json(value) for value in rows["metadata"]]
        rows = rows.copy()
        rows["metadata"] = pd.Series(metadata, index=rows.index, dtype=object)
    return _with_columns(rows, extra)


METADATA_AT = PREDICTION_COLUMNS.index("metadata")
_METRIC_AT = tuple(PREDICTION_COLUMNS.index(name) for name in METRICS)


_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, allow_nan=False)
"""`metadata_text`'s encoder, made once (`json.dumps` with options builds one per call)."""


def metadata_text(value: Any) -> str | None:
    """Metadata as canonical JSON text (keys sorted, unicode kept): the same text from both stores,
    whichever key order Postgres's jsonb or the writer gave it, and one a user can parse."""
    if value is None:
        return None
    return _CANONICAL_JSON.encode(from_json(value))


def with_metadata_texts(records: list[tuple]) -> list[tuple]:
    """Rows of `PREDICTION_COLUMNS` values with their metadata as `metadata_text` (SQLite keeps the
    writer's text). Each distinct text is parsed once (a sample's metadata is the same in every round);
    a page whose texts are all canonical already is returned as it is, any other has its column
    replaced in one pass (a Python call per row was a fifth of the CSV's time)."""
    texts = {text: metadata_text(text) for text in {record[METADATA_AT] for record in records}}
    if all(text == canonical for text, canonical in texts.items()):
        return records
    columns = list(zip(*records, strict=True))
    columns[METADATA_AT] = tuple(map(texts.__getitem__, columns[METADATA_AT]))
    return list(zip(*columns, strict=True))


def records_values(records: Sequence[Mapping[str, Any]], scores: Sequence[str]) -> list[tuple]:
    """JSON rows' values in `PREDICTION_COLUMNS` order (metadata as `metadata_text`), then the named
    user scores' values: numbers as floats, as SQLite gives them (jsonb gives 1.0 back as 1). Built
    column by column, each column in one comprehension: a Python call per row was most of a page's
    time after the JSON parse."""
    columns = [[record.get(name) for record in records] for name in PREDICTION_COLUMNS]
    for at in _METRIC_AT:
        columns[at] = _floats(columns[at])
    columns[METADATA_AT] = [None if value is None else metadata_text(value) for value in columns[METADATA_AT]]
    given = [record.get("scores") or {} for record in records]
    columns += [_floats([values.get(name) for values in given]) for name in scores]
    return list(zip(*columns, strict=True))


def _floats(values: list[Any]) -> list[float | None]:
    """Numbers as floats, None kept."""
    return [None if value is None else float(value) for value in values]


def with_custom_aggregates(rounds: pd.DataFrame, summaries: Sequence[Any]) -> pd.DataFrame:
    """Rounds with `avg_`, `min_` and `max_` columns for every user scorer any round has values of."""
    parsed = _parsed(summaries)
    names = sorted(filter(is_custom_name, {name for summary in parsed for name in summary}))
    extra = {
        f"{aggregate}_{name}": np.array(
            [(summary.get(name) or {}).get(aggregate) for summary in parsed], dtype="float64"
        )
        for name in names
        for aggregate in AGGREGATES
    }
    return _with_columns(rounds, extra)


def group_frame(groups: pd.DataFrame, averages: Sequence[Any]) -> pd.DataFrame:
    """Group-by rows with an `avg_<name>` column per user scorer, from each row's {name: average}."""
    parsed = _parsed(averages)
    names = sorted({name for values in parsed for name in values})
    extra = {
        f"avg_{name}": np.array([values.get(name) for values in parsed], dtype="float64") for name in names
    }
    return _with_columns(groups, extra)


def _with_columns(frame: pd.DataFrame, extra: dict[str, Any]) -> pd.DataFrame:
    """The frame with new columns added in one concat: `assign` inserts them one by one, at a
    millisecond each, which a trends read of a job with user scores would pay on every refresh."""
    if not extra:
        return frame
    return pd.concat([frame, pd.DataFrame(extra, index=frame.index)], axis=1)


def custom_names(frame: pd.DataFrame) -> list[str]:
    """The user scorers a trends frame has columns for, in column order."""
    names = [column.removeprefix("avg_") for column in frame.columns if column.startswith("avg_")]
    return [name for name in names if name not in REGISTRY]


def job_metrics(names: Sequence[str], descriptions: Mapping[str, Any] | None) -> tuple[Metric, ...]:
    """The built-in metrics, then the job's user scorers described as the job's config recorded them."""
    described = descriptions if isinstance(descriptions, Mapping) else {}
    return (*REGISTRY.values(), *(custom_metric(name, described.get(name)) for name in names))


def custom_metric(name: str, description: Any) -> Metric:
    """A user scorer as a Metric: its title and direction when recorded, else its name, higher better."""
    described = description if isinstance(description, Mapping) else {}
    title = str(described.get("title") or name)
    bounds = described.get("bounds")
    return Metric(
        name,
        title,
        title,
        lower_is_better=not described.get("higher_is_better", True),
        bounds=tuple(bounds) if isinstance(bounds, list | tuple) and len(bounds) == 2 else (None, None),
        builtin=False,
    )


def rollout_steps_frame(records: Sequence[Any]) -> pd.DataFrame:
    """Per-step rollout aggregates (`ROLLOUT_STEP_COLUMNS`) from summary records in
    `ROLLOUT_SUMMARY_COLUMNS` order or by name: each variance becomes a standard deviation."""
    frame = to_frame(records, ROLLOUT_SUMMARY_COLUMNS)
    for column in [c for c in ROLLOUT_SUMMARY_COLUMNS if c.startswith("var_")]:
        frame[column] = np.sqrt(frame[column].clip(lower=0.0))
    return frame.rename(columns=lambda c: c.replace("var_", "std_"))


def reward_trends_frame(steps: Sequence[int], summaries: Sequence[Any]) -> pd.DataFrame:
    """Long form (`REWARD_TREND_COLUMNS`) from each step's `{name: {count, avg, var, min, max}}` JSON."""
    records = []
    for step, summary in zip(steps, _parsed(summaries), strict=True):
        for name in sorted(summary):
            values = summary[name] or {}
            variance = values.get("var")
            std = math.sqrt(max(variance, 0.0)) if variance is not None else None
            records.append((step, name, values.get("count") or 0, values.get("avg"), std))
            records[-1] += (values.get("min"), values.get("max"))
    return to_frame(records, REWARD_TREND_COLUMNS)


def rollout_frame(records: Sequence[Any], scores: Sequence[Any]) -> pd.DataFrame:
    """Rollout rows (`ROLLOUT_COLUMNS`): `rewards` parsed into dicts, `truncated` as booleans, each user
    scorer's values as a column of its own."""
    frame = to_frame(records, ROLLOUT_COLUMNS)
    rewards = [_reward_values(from_json(value) or {}) for value in frame["rewards"]]
    frame["rewards"] = pd.Series(rewards, dtype=object)
    frame["truncated"] = pd.Series([bool(value) for value in frame["truncated"]], dtype=bool)
    return with_score_columns(frame, scores)


def _reward_values(rewards: dict[str, Any]) -> dict[str, float | None]:
    """Rewards as floats (Postgres's jsonb gives a whole number back as an int)."""
    return {name: None if value is None else float(value) for name, value in rewards.items()}
