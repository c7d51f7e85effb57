"""Chart builders: a data frame in, an Altair chart out. No Streamlit, no store; tested on plain frames.

Every chart keeps only the columns it draws, so the spec sent to the browser stays small, and every
point has a tooltip with the round's epoch, step and sample count: the numbers people ask about.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

METRIC_TITLES = {
    "char_error_rate": "Character error rate",
    "exact_match": "Exact match",
    "word_overlap": "Word overlap (F1)",
    "length_ratio": "Length ratio",
}
"""Titles of the four metrics, in the order the trends page shows them."""

LOWER_IS_BETTER = frozenset({"char_error_rate"})
X_TITLES = {"step": "Step", "epoch": "Epoch", "round": "Round"}
LINE_COLOR = "#4c78a8"
BAND_COLOR = "#9ecae9"


def _x(x: str) -> alt.X:
    """An integer axis for step, epoch or round number."""
    return alt.X(
        f"{x}:Q", title=X_TITLES[x], axis=alt.Axis(format="d", tickMinStep=1), scale=alt.Scale(nice=False)
    )


def _y_scale(metric: str, values: pd.Series) -> alt.Scale:
    """0 to 1 for bounded metrics; length ratio spans its data and always shows the ideal 1.0."""
    if metric != "length_ratio":
        return alt.Scale(domain=[0, 1])
    top = max(1.2, float(values.max()) * 1.05) if values.notna().any() else 2.0
    return alt.Scale(domain=[0, top])


def trend_chart(rounds: pd.DataFrame, metric: str, x: str = "step") -> alt.LayerChart:
    """One metric's average per round as a line; CER adds its min-max band, length ratio a 1.0 rule.

    `rounds` has `TREND_COLUMNS`; rounds without a score are left out rather than drawn as zero.
    """
    column = f"avg_{metric}"
    keep = ["epoch", "step", "sample_count", "scored_count", column]
    if metric == "char_error_rate":
        keep += ["min_char_error_rate", "max_char_error_rate"]
    data = rounds[keep].dropna(subset=[column]).rename(columns={column: "value"})
    tooltip = [
        alt.Tooltip("epoch:Q", title="Epoch"),
        alt.Tooltip("step:Q", title="Step"),
        alt.Tooltip("value:Q", title=METRIC_TITLES[metric], format=".3f"),
        alt.Tooltip("sample_count:Q", title="Samples"),
    ]
    base = alt.Chart(data).encode(x=_x(x))
    y = alt.Y("value:Q", title=None, scale=_y_scale(metric, data["value"]))
    layers = []
    if metric == "char_error_rate":
        tooltip += [
            alt.Tooltip("min_char_error_rate:Q", title="Best sample", format=".3f"),
            alt.Tooltip("max_char_error_rate:Q", title="Worst sample", format=".3f"),
        ]
        band = base.mark_area(color=BAND_COLOR, opacity=0.35)
        layers.append(band.encode(y=alt.Y("min_char_error_rate:Q", title=None), y2="max_char_error_rate:Q"))
    if metric == "length_ratio":
        layers.append(
            alt.Chart(pd.DataFrame({"ideal": [1.0]}))
            .mark_rule(color="#888", strokeDash=[4, 4])
            .encode(y="ideal:Q")
        )
    line = base.mark_line(color=LINE_COLOR, point=alt.OverlayMarkDef(size=28, color=LINE_COLOR))
    layers.append(line.encode(y=y, tooltip=tooltip))
    return alt.layer(*layers).properties(title=METRIC_TITLES[metric], height=230)


def heatmap_chart(frame: pd.DataFrame, selected: int | None = None) -> alt.Chart:
    """Samples (rows) by rounds (columns), coloured by CER from green (right) to red (wrong).

    A click selects a sample (the `sample` selection, on its `sample_index`); the selected sample's row
    is outlined. `frame` is `analysis.heatmap_frame`'s output.
    """
    pick = alt.selection_point(name="sample", fields=["sample_index"], on="click", clear=False)
    samples = frame["sample_index"].nunique()
    chosen = alt.datum.sample_index == (selected if selected is not None else -1)
    return (
        alt.Chart(frame[["sample_index", "round", "epoch", "step", "value"]])
        .mark_rect()
        .encode(
            x=alt.X("round:O", title="Round", axis=alt.Axis(labelOverlap=True, labelAngle=0)),
            y=alt.Y("sample_index:O", title="Sample", axis=alt.Axis(labelOverlap=True)),
            color=alt.Color(
                "value:Q",
                title="CER",
                scale=alt.Scale(scheme="redyellowgreen", reverse=True, domain=[0, 1]),
            ),
            stroke=alt.condition(chosen, alt.value("#111"), alt.value(None)),
            strokeWidth=alt.condition(chosen, alt.value(1.5), alt.value(0)),
            tooltip=[
                alt.Tooltip("sample_index:O", title="Sample"),
                alt.Tooltip("round:O", title="Round"),
                alt.Tooltip("epoch:Q", title="Epoch"),
                alt.Tooltip("step:Q", title="Step"),
                alt.Tooltip("value:Q", title="CER", format=".3f"),
            ],
        )
        .add_params(pick)
        .properties(height=min(720, max(300, 16 * samples)))
    )


def sample_chart(history: pd.DataFrame, rounds: pd.DataFrame, x: str = "step") -> alt.Chart:
    """One sample's CER per round against the job's average CER: is this sample ahead or behind?"""
    sample = history[["epoch", "step", "char_error_rate"]].rename(columns={"char_error_rate": "value"})
    average = rounds[["epoch", "step", "avg_char_error_rate"]].rename(
        columns={"avg_char_error_rate": "value"}
    )
    data = pd.concat([sample.assign(series="This sample"), average.assign(series="Job average")])
    data = data.dropna(subset=["value"])
    return (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(size=24))
        .encode(
            x=_x(x),
            y=alt.Y("value:Q", title="CER", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(range=["#e45756", "#9d9d9d"]),
                sort=["This sample", "Job average"],
            ),
            tooltip=["series:N", "epoch:Q", "step:Q", alt.Tooltip("value:Q", title="CER", format=".3f")],
        )
        .properties(height=200)
    )


def compare_chart(trends: pd.DataFrame, metric: str, x: str = "step") -> alt.Chart:
    """Several jobs' averages of one metric overlaid, one colour per job.

    `trends` is long form: `job`, `epoch`, `step`, `round`, `sample_count` and `avg_<metric>`.
    """
    column = f"avg_{metric}"
    data = trends[["job", "epoch", "step", "round", "sample_count", column]].dropna(subset=[column])
    data = data.rename(columns={column: "value"})
    return (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(size=24))
        .encode(
            x=_x(x),
            y=alt.Y("value:Q", title=METRIC_TITLES[metric], scale=_y_scale(metric, data["value"])),
            color=alt.Color(
                "job:N",
                title="Job",
                scale=alt.Scale(scheme="tableau10"),
                legend=alt.Legend(orient="right", labelLimit=240),
            ),
            tooltip=[
                alt.Tooltip("job:N", title="Job"),
                alt.Tooltip("epoch:Q", title="Epoch"),
                alt.Tooltip("step:Q", title="Step"),
                alt.Tooltip("value:Q", title=METRIC_TITLES[metric], format=".3f"),
                alt.Tooltip("sample_count:Q", title="Samples"),
            ],
        )
        .properties(title=METRIC_TITLES[metric], height=320)
    )
