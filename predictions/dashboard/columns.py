"""Column configurations the tables share: scores as bars coloured by meaning, texts as plain text.

`st.dataframe` draws cells as text on a canvas, so a prediction holding HTML is shown, never parsed.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import streamlit as st

from predictions.dashboard import charts
from predictions.scorer import REGISTRY, Metric


def cer(label: str = "CER") -> st.column_config.Column:
    """CER as a bar from 0 to 1: red when more than half wrong, green when mostly right."""
    return st.column_config.ProgressColumn(
        label, min_value=0, max_value=1, format="%.3f", color="auto-inverse"
    )


def score(label: str) -> st.column_config.Column:
    """A higher-is-better score (word overlap, exact match rate) as a bar: green above one half."""
    return st.column_config.ProgressColumn(label, min_value=0, max_value=1, format="%.3f", color="auto")


def text(label: str) -> st.column_config.Column:
    return st.column_config.TextColumn(label, width="medium")


def metric_column(metric: Metric) -> st.column_config.Column:
    """A metric as a column: a 0-1 metric as a bar coloured by its direction, any other as a number;
    exact match as a tick."""
    if metric.name == "exact_match":
        return st.column_config.CheckboxColumn(metric.label, width="small")
    if metric.bounds == (0.0, 1.0):
        return cer(metric.label) if metric.lower_is_better else score(metric.label)
    number_format = "%.2fx" if metric.ideal == 1.0 else "%.3f"
    return st.column_config.NumberColumn(metric.label, format=number_format, width="small")


ROW_COLUMNS = {
    "epoch": st.column_config.NumberColumn("Epoch", width="small"),
    "step": st.column_config.NumberColumn("Step", width="small"),
    "sample_index": st.column_config.NumberColumn("Sample", width="small"),
    "prompt": text("Prompt"),
    "prediction": text("Prediction"),
    "ground_truth": text("Ground truth"),
    "text_replacements": st.column_config.NumberColumn(
        "Replaced", width="small", help="characters no store can hold (NUL, half an emoji), stored as \ufffd"
    ),
}


def prediction_columns(metrics: Iterable[Metric] = REGISTRY.values()) -> dict[str, st.column_config.Column]:
    """Rows of `training_predictions` as tables show them, a column per metric of the job."""
    return {**ROW_COLUMNS, **{metric.name: metric_column(metric) for metric in metrics}}


def table_order(metrics: Iterable[Metric] = REGISTRY.values()) -> tuple[str, ...]:
    """Scores next to the row's identity, then the answer, the truth and (longest, read least) the prompt."""
    names = [metric.name for metric in charts.shown(metrics)]
    return ("sample_index", "epoch", "step", *names, "prediction", "ground_truth", "prompt")


PREDICTION_ROWS = prediction_columns()
"""The built-in metrics' rows as tables show them."""
TABLE_ORDER = table_order()


def prediction_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows ready for `prediction_columns`: exact match as a tick (empty when unscored), no bookkeeping."""
    exact = rows["exact_match"].map({1.0: True, 0.0: False}).astype("boolean")
    hidden = ("job_id", "created_at", "metadata")
    shown = rows.drop(columns=[c for c in hidden if c in rows.columns])
    return shown.assign(exact_match=exact)


def with_replacements(order: tuple[str, ...], rows: pd.DataFrame) -> tuple[str, ...]:
    """The column order, plus the count of replaced characters when a row on the page has any."""
    replaced = "text_replacements" in rows.columns and bool((rows["text_replacements"] > 0).any())
    return (*order, "text_replacements") if replaced else order


def replaced_note(count: int) -> str | None:
    """What to say under a text whose unstorable characters were replaced, or None."""
    if not count:
        return None
    return f":material/warning: {count} character(s) no store can hold (NUL, half an emoji) stored as \ufffd"
