"""Chart builders: a data frame in, an Altair chart out. No Streamlit, no store; tested on plain frames.

Every chart keeps only the columns it draws, so the spec sent to the browser stays small, and every
point has a tooltip with the round's epoch, step and sample count: the numbers people ask about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import altair as alt
import pandas as pd

from predictions.dashboard import palette
from predictions.scoring.metrics import PRIMARY_METRIC, REGISTRY, Metric


def shown(metrics: Iterable[Metric]) -> list[Metric]:
    """Metrics in the order the dashboard shows them: the primary one first, then the others in turn."""
    metrics = list(metrics)
    return sorted(metrics, key=lambda metric: metric.name != PRIMARY_METRIC)


def as_metric(metric: Metric | str) -> Metric:
    """A Metric, given one or a built-in metric's name."""
    return metric if isinstance(metric, Metric) else REGISTRY[metric]


METRIC_TITLES = {metric.name: metric.title for metric in shown(REGISTRY.values())}
"""Titles of the built-in metrics, in the order the trends page shows them."""

X_TITLES = {"step": "Step", "epoch": "Epoch", "round": "Round"}
LINE_COLOR = palette.LINE
BAND_COLOR = "#9ecae9"


def _x(x: str) -> alt.X:
    """An integer axis for step, epoch or round number."""
    return alt.X(
        f"{x}:Q", title=X_TITLES[x], axis=alt.Axis(format="d", tickMinStep=1), scale=alt.Scale(nice=False)
    )


def _y_scale(metric: Metric, values: pd.Series) -> alt.Scale:
    """The metric's range where it has one; an open end spans the data (and shows the ideal value)."""
    low, high = metric.bounds
    if low is not None and high is not None:
        return alt.Scale(domain=[low, high])
    data_high = float(values.max()) * 1.05 if values.notna().any() else None
    if high is None and low is not None:
        floor = (metric.ideal or 0.0) * 1.2 or 1.0
        return alt.Scale(domain=[low, max(floor, data_high or 2 * floor)])
    return alt.Scale(zero=False, nice=True)


COMPARE_PLOT = 420
"""Compare's plot height in px: with the y axis on the drawn values, runs whose CER differs by 0.02 late in
training are about 11 px apart over a run from 0.9 to 0.2 (the plot was 215 px over 0 to 1: 4 px)."""
COMPARE_FRAME, LEGEND_ROW = 175, 27
"""What the chart's height holds besides the plot (title, x axis, legend title and margins), and each
legend row: Streamlit fits the whole chart, legend included, into the height the spec gives."""


def compare_height(series: int) -> int:
    """The chart height that leaves `COMPARE_PLOT` px to the plot above a legend of `series` rows."""
    return COMPARE_PLOT + COMPARE_FRAME + LEGEND_ROW * series


def _zoomed_scale(metric: Metric, values: pd.Series) -> alt.Scale:
    """The drawn values' range with a margin, within the metric's bounds: Compare is read for small
    differences between runs, not for the distance to 0."""
    values = values.dropna()
    if values.empty:
        return _y_scale(metric, values)
    low, high = float(values.min()), float(values.max())
    margin = (high - low) * 0.05 or 0.01
    bound_low, bound_high = metric.bounds
    low = low - margin if bound_low is None else max(bound_low, low - margin)
    high = high + margin if bound_high is None else min(bound_high, high + margin)
    return alt.Scale(domain=[low, high], zero=False, nice=False)


def _band(rounds: pd.DataFrame, metric: Metric) -> tuple[str, str] | None:
    """The min and max columns of a metric, when the trends have them (the primary and user metrics)."""
    low, high = f"min_{metric.name}", f"max_{metric.name}"
    return (low, high) if low in rounds.columns and high in rounds.columns else None


def trend_chart(rounds: pd.DataFrame, metric: Metric | str, x: str = "step") -> alt.LayerChart:
    """One metric's average per round as a line, with its min-max band when known and a rule at its
    ideal value (a length ratio of 1).

    `rounds` has `TREND_COLUMNS` (and a user metric's columns); rounds without a score are left out
    rather than drawn as zero.
    """
    metric = as_metric(metric)
    column, band = metric.column, _band(rounds, metric)
    keep = ["epoch", "step", "sample_count", "scored_count", column, *(band or ())]
    data = rounds[keep].dropna(subset=[column]).rename(columns={column: "value"})
    tooltip = [
        alt.Tooltip("epoch:Q", title="Epoch"),
        alt.Tooltip("step:Q", title="Step"),
        alt.Tooltip("value:Q", title=metric.title, format=".3f"),
        alt.Tooltip("sample_count:Q", title="Samples"),
    ]
    base = alt.Chart(data).encode(x=_x(x))
    y = alt.Y("value:Q", title=None, scale=_y_scale(metric, data["value"]))
    layers = []
    if band:
        best, worst = band if metric.lower_is_better else band[::-1]
        tooltip += [
            alt.Tooltip(f"{best}:Q", title="Best sample", format=".3f"),
            alt.Tooltip(f"{worst}:Q", title="Worst sample", format=".3f"),
        ]
        area = base.mark_area(color=BAND_COLOR, opacity=0.35)
        layers.append(area.encode(y=alt.Y(f"{band[0]}:Q", title=None), y2=f"{band[1]}:Q"))
    if metric.ideal is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"ideal": [metric.ideal]}))
            .mark_rule(color="#888", strokeDash=[4, 4])
            .encode(y="ideal:Q")
        )
    line = base.mark_line(color=LINE_COLOR, point=alt.OverlayMarkDef(size=28, color=LINE_COLOR))
    layers.append(line.encode(y=y, tooltip=tooltip))
    return alt.layer(*layers).properties(title=metric.title, height=230)


def heatmap_chart(
    frame: pd.DataFrame, selected: int | None = None, metric: Metric | str = PRIMARY_METRIC
) -> alt.Chart:
    """Samples (rows) by rounds (columns), coloured by a metric on the shared scale: green good, red bad.

    A click selects a sample (the `sample` selection, on its `sample_index`); the selected sample's row
    is outlined. `frame` is `analysis.heatmap_frame`'s output; with a `rank` column, samples are listed
    in that order (worst first) instead of by index.
    """
    metric = as_metric(metric)
    scale = palette.error_scale(metric.lower_is_better, metric.bounds)
    pick = alt.selection_point(name="sample", fields=["sample_index"], on="click", clear=False)
    samples = frame["sample_index"].nunique()
    chosen = alt.datum.sample_index == (selected if selected is not None else -1)
    ranked = "rank" in frame.columns
    order = alt.EncodingSortField("rank", op="min") if ranked else "ascending"
    return (
        alt.Chart(frame[["sample_index", "round", "epoch", "step", "value", *(["rank"] if ranked else [])]])
        .mark_rect()
        .encode(
            x=alt.X("round:O", title="Round", axis=alt.Axis(labelOverlap=True, labelAngle=0)),
            y=alt.Y("sample_index:O", title="Sample", sort=order, axis=alt.Axis(labelOverlap=True)),
            color=alt.Color("value:Q", title=metric.label, scale=scale),
            stroke=alt.condition(chosen, alt.value("#111"), alt.value(None)),
            strokeWidth=alt.condition(chosen, alt.value(1.5), alt.value(0)),
            tooltip=[
                alt.Tooltip("sample_index:O", title="Sample"),
                alt.Tooltip("round:O", title="Round"),
                alt.Tooltip("epoch:Q", title="Epoch"),
                alt.Tooltip("step:Q", title="Step"),
                alt.Tooltip("value:Q", title=metric.label, format=".3f"),
            ],
        )
        .add_params(pick)
        .properties(height=min(720, max(300, 16 * samples)))
    )


def sample_chart(history: pd.DataFrame, rounds: pd.DataFrame, x: str = "step") -> alt.LayerChart:
    """One sample's CER per round against the job's average CER: is this sample ahead or behind?

    The job average is drawn first, grey and dashed, so the sample's own line stays visible on top
    where the two meet (both at 1.0 early in a run). Neither colour judges: the y axis does.
    """
    sample = history[["epoch", "step", "char_error_rate"]].rename(columns={"char_error_rate": "value"})
    average = rounds[["epoch", "step", "avg_char_error_rate"]].rename(
        columns={"avg_char_error_rate": "value"}
    )
    series = alt.Color(
        "series:N",
        title=None,
        scale=alt.Scale(domain=["This sample", "Job average"], range=[palette.LINE, palette.AVERAGE]),
    )
    tooltip = ["series:N", "epoch:Q", "step:Q", alt.Tooltip("value:Q", title="CER", format=".3f")]
    y = alt.Y("value:Q", title="CER", scale=alt.Scale(domain=[0, 1]))
    layers = [
        alt.Chart(frame.assign(series=name).dropna(subset=["value"]))
        .mark_line(point=alt.OverlayMarkDef(size=size), strokeDash=dash, strokeWidth=width)
        .encode(x=_x(x), y=y, color=series, tooltip=tooltip)
        for frame, name, size, dash, width in (
            (average, "Job average", 16, [4, 3], 1.5),
            (sample, "This sample", 30, [1, 0], 2.5),
        )
    ]
    return alt.layer(*layers).properties(height=200)


def compare_chart(
    trends: pd.DataFrame,
    metric: Metric | str,
    x: str = "step",
    by: str = "job",
    series: Sequence[str] | None = None,
) -> alt.Chart:
    """Several jobs' averages of one metric overlaid, one colour per job.

    `trends` is long form: `job` (or another series column, `by`), `epoch`, `step`, `sample_count`
    and `avg_<metric>`; the Trends page draws groups of one job the same way, by `group`. `series`:
    every job picked, in order (default: those in `trends`): a job keeps its colour, the one of its
    place among them, in every chart, whichever jobs have values to draw; the legend lists those.
    """
    metric = as_metric(metric)
    column, title = metric.column, by.title()
    if column not in trends.columns:
        trends = trends.assign(**{column: float("nan")})
    keep = [by, "epoch", "step", *(["round"] if "round" in trends.columns else []), "sample_count", column]
    data = trends[keep].dropna(subset=[column])
    data = data.rename(columns={column: "value"})
    places = {name: place for place, name in enumerate(dict.fromkeys([*(series or ()), *trends[by]]))}
    order = sorted(set(data[by]), key=places.__getitem__)
    colours = [palette.SERIES[places[name] % len(palette.SERIES)] for name in order]
    return (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(size=24))
        .encode(
            x=_x(x),
            y=alt.Y("value:Q", title=metric.title, scale=_zoomed_scale(metric, data["value"])),
            color=alt.Color(
                f"{by}:N",
                title=title,
                sort=order,  # legend and colours in the order given (the picked jobs'), not by name
                scale=alt.Scale(domain=order, range=colours),
                legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0),
            ),
            tooltip=[
                alt.Tooltip(f"{by}:N", title=title),
                alt.Tooltip("epoch:Q", title="Epoch"),
                alt.Tooltip("step:Q", title="Step"),
                alt.Tooltip("value:Q", title=metric.title, format=".3f"),
                alt.Tooltip("sample_count:Q", title="Samples"),
            ],
        )
        .properties(title=metric.title, height=compare_height(len(order)))
    )


SERIES_TITLES = {"loss": "Training loss", "eval_loss": "Eval loss", "learning_rate": "Learning rate"}


def loss_chart(
    series: pd.DataFrame, rounds: pd.DataFrame, metric: Metric | str = PRIMARY_METRIC
) -> alt.VConcatChart:
    """The Trainer's loss (training and eval) above the answers' metric, then the learning rate: three
    charts on one shared step axis, so 'loss falls while the answers get worse' is seen at a glance."""
    metric = as_metric(metric)
    step = alt.X(
        "step:Q", title="Step", axis=alt.Axis(format="d", tickMinStep=1), scale=alt.Scale(nice=False)
    )
    named = series.assign(series=series["name"].map(SERIES_TITLES))
    losses = named[named["name"].isin(["loss", "eval_loss"])]
    colours = {"loss": palette.LINE, "eval_loss": palette.AVERAGE}
    logged = [name for name in colours if (losses["name"] == name).any()]  # the legend lists what exists
    loss = (
        alt.Chart(losses)
        .mark_line(point=alt.OverlayMarkDef(size=16))
        .encode(
            x=step,
            y=alt.Y("value:Q", title="Loss", scale=alt.Scale(zero=False)),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(
                    domain=[SERIES_TITLES[name] for name in logged], range=[colours[name] for name in logged]
                ),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=["series:N", "step:Q", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(height=180, title="Loss")
    )
    answers = rounds[["epoch", "step", metric.column]].dropna().rename(columns={metric.column: "value"})
    quality = (
        alt.Chart(answers)
        .mark_line(color=LINE_COLOR, point=alt.OverlayMarkDef(size=28, color=LINE_COLOR))
        .encode(
            x=step,
            y=alt.Y("value:Q", title=metric.label, scale=_y_scale(metric, answers["value"])),
            tooltip=["epoch:Q", "step:Q", alt.Tooltip("value:Q", title=metric.title, format=".3f")],
        )
        .properties(height=180, title=f"Answers: {metric.title}")
    )
    rate = named[named["name"] == "learning_rate"]
    lr = (
        alt.Chart(rate)
        .mark_line(color=palette.AVERAGE)
        .encode(
            x=step,
            y=alt.Y("value:Q", title="Learning rate", axis=alt.Axis(format=".1e")),
            tooltip=["step:Q", alt.Tooltip("value:Q", title="Learning rate", format=".3e")],
        )
        .properties(height=110, title="Learning rate")
    )
    return alt.vconcat(loss, quality, lr).resolve_scale(x="shared")
