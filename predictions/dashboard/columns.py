"""Column configurations the tables share: scores as bars on the shared colour scale, texts as text.

A bar's length is the value; the cell behind it takes `palette`'s colour for how good the value is,
so a half-wrong answer reads yellow on every page, as in the heatmap. `st.dataframe` draws cells as
text on a canvas, so a prediction holding HTML is shown, never parsed.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from predictions.dashboard import charts, palette
from predictions.scoring.metrics import REGISTRY, Metric

BAR_COLOUR = "#6b6b6b"
"""The bars themselves are neutral: their length is the value, the cell's colour its judgement."""
SUMMARY_ERRORS = ("first_cer", "best_cer", "latest_cer")
"""Lower-is-better summary columns (sample lists, Compare) besides the metrics themselves."""
SUMMARY_SCORES = ("latest_exact_match",)
"""Higher-is-better summary columns in [0, 1]."""


def cer(label: str = "CER", width: int | str = "medium", help: str | None = None) -> st.column_config.Column:
    """CER as a bar from 0 to 1 (its length is the error), wide enough for its header."""
    return bar(label, width, help)


def score(label: str) -> st.column_config.Column:
    """A higher-is-better score (word overlap, exact match rate) as a bar from 0 to 1."""
    return bar(label)


def bar(label: str, width: int | str = "medium", help: str | None = None) -> st.column_config.Column:
    return st.column_config.ProgressColumn(
        label, min_value=0, max_value=1, format="%.3f", color=BAR_COLOUR, width=width, help=help
    )


def text(label: str, width: int | str = "medium") -> st.column_config.Column:
    return st.column_config.TextColumn(label, width=width)


def metric_column(metric: Metric) -> st.column_config.Column:
    """A metric as a column: a 0-1 metric as a bar (coloured by `coloured`), any other as a number;
    exact match as a tick."""
    if metric.name == "exact_match":
        return st.column_config.CheckboxColumn(metric.label, width=100)
    if metric.bounds == (0.0, 1.0):
        return bar(metric.label, width=110)
    number_format = "%.2fx" if metric.ideal == 1.0 else "%.3f"
    return st.column_config.NumberColumn(metric.label, format=number_format, width=100)


def coloured(frame: pd.DataFrame, metrics: Iterable[Metric] = REGISTRY.values()) -> Styler:
    """The frame with its 0-1 metric and summary cells coloured on the shared scale, for `st.dataframe`."""
    bars = [m for m in metrics if m.bounds == (0.0, 1.0) and m.name in frame.columns]
    errors = [m.name for m in bars if m.lower_is_better] + [c for c in SUMMARY_ERRORS if c in frame]
    scores = [m.name for m in bars if not m.lower_is_better and m.name != "exact_match"]
    scores += [c for c in SUMMARY_SCORES if c in frame]
    return frame.style.map(palette.error_cell, subset=errors).map(palette.score_cell, subset=scores)


ROW_COLUMNS = {
    # pinned: a table wider than the page scrolls its scores, never which sample and round a row is
    "epoch": st.column_config.NumberColumn("Epoch", width=60, pinned=True),
    "step": st.column_config.NumberColumn("Step", width=60, pinned=True),
    "sample_index": st.column_config.NumberColumn("Sample", width=70, pinned=True),
    "prompt": text("Prompt", width=140),  # sized so the built-in metrics fit a wide page, no header cut
    "prediction": text("Prediction", width=140),
    "ground_truth": text("Ground truth", width=140),
    "text_replacements": st.column_config.NumberColumn(
        "Replaced",
        width="small",
        help="values no store can hold, changed: NUL or half an emoji to \ufffd, NaN to empty, too deep cut",
    ),
}


def prediction_columns(metrics: Iterable[Metric] = REGISTRY.values()) -> dict[str, st.column_config.Column]:
    """Rows of `training_predictions` as tables show them, a column per metric of the job."""
    return {**ROW_COLUMNS, **{metric.name: metric_column(metric) for metric in metrics}}


def table_order(metrics: Iterable[Metric] = REGISTRY.values()) -> tuple[str, ...]:
    """Which row (sample, epoch, step) first, then the question, the answer and the truth, their scores."""
    names = [metric.name for metric in charts.shown(metrics)]
    return ("sample_index", "epoch", "step", "prompt", "prediction", "ground_truth", *names)


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
    return (
        f":material/warning: {count} value(s) no store can hold changed: NUL or half an emoji stored as "
        "\ufffd, NaN or infinity as empty, too deep or too long cut (the rest of the row as written)"
    )
