"""Column configurations the tables share: scores as bars coloured by meaning, texts as plain text.

`st.dataframe` draws cells as text on a canvas, so a prediction holding HTML is shown, never parsed.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st


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


PREDICTION_ROWS = {
    "epoch": st.column_config.NumberColumn("Epoch", width="small"),
    "step": st.column_config.NumberColumn("Step", width="small"),
    "sample_index": st.column_config.NumberColumn("Sample", width="small"),
    "prompt": text("Prompt"),
    "prediction": text("Prediction"),
    "ground_truth": text("Ground truth"),
    "exact_match": st.column_config.CheckboxColumn("Exact", width="small"),
    "char_error_rate": cer(),
    "word_overlap": score("Word overlap"),
    "length_ratio": st.column_config.NumberColumn("Length ratio", format="%.2fx", width="small"),
}
"""Rows of `training_predictions` as tables show them; the unbounded length ratio as a number."""


SCORES = ("char_error_rate", "exact_match", "word_overlap", "length_ratio")
TABLE_ORDER = ("sample_index", "epoch", "step", *SCORES, "prediction", "ground_truth", "prompt")
"""Scores next to the row's identity, then the answer, the truth and (longest, read least) the prompt."""


def prediction_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows ready for `PREDICTION_ROWS`: exact match as a tick (empty when unscored), no bookkeeping."""
    exact = rows["exact_match"].map({1.0: True, 0.0: False}).astype("boolean")
    shown = rows.drop(columns=[c for c in ("job_id", "created_at") if c in rows.columns])
    return shown.assign(exact_match=exact)
