"""Chart builders: a data frame in, a Vega-Lite spec out (a dict, for `st.vega_lite_chart`). No Streamlit, no
store; tested on plain frames, and every spec against the Vega-Lite schema.

Every chart keeps only the columns it draws, so the spec sent to the browser stays small, and every
point has a tooltip with the round's epoch, step and sample count: the numbers people ask about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from predictions.dashboard import palette
from predictions.dashboard.vega import Spec, channel, chart, layer, mark, tooltip, view
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


def _x(x: str) -> Spec:
    """An integer axis for step, epoch or round number."""
    return channel(f"{x}:Q", title=X_TITLES[x], axis={"format": "d", "tickMinStep": 1}, scale={"nice": False})


def _line(color: str | None = None, size: int = 28, **properties) -> Spec:
    """A line with a point at each value, both in `color` (None: the encoded colour)."""
    coloured = {"color": color} if color else {}
    return mark("line", **coloured, point={**coloured, "size": size}, **properties)


def _y_scale(metric: Metric, values: pd.Series) -> Spec:
    """The metric's range where it has one; an open end spans the data (and shows the ideal value)."""
    low, high = metric.bounds
    if low is not None and high is not None:
        return {"domain": [low, high]}
    data_high = float(values.max()) * 1.05 if values.notna().any() else None
    if high is None and low is not None:
        floor = (metric.ideal or 0.0) * 1.2 or 1.0
        return {"domain": [low, max(floor, data_high or 2 * floor)]}
    return {"zero": False, "nice": True}


COMPARE_PLOT = 420
"""Compare's plot height in px: with the y axis on the drawn values, runs whose CER differs by 0.02 late in
training are about 11 px apart over a run from 0.9 to 0.2 (the plot was 215 px over 0 to 1: 4 px)."""
COMPARE_FRAME, LEGEND_ROW = 175, 27
"""What the chart's height holds besides the plot (title, x axis, legend title and margins), and each
legend row: Streamlit fits the whole chart, legend included, into the height the spec gives."""


def compare_height(series: int) -> int:
    """The chart height that leaves `COMPARE_PLOT` px to the plot above a legend of `series` rows."""
    return COMPARE_PLOT + COMPARE_FRAME + LEGEND_ROW * series


def _zoomed_scale(metric: Metric, values: pd.Series) -> Spec:
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
    return {"domain": [low, high], "zero": False, "nice": False}


def _band(rounds: pd.DataFrame, metric: Metric) -> tuple[str, str] | None:
    """The min and max columns of a metric, when the trends have them (the primary and user metrics)."""
    low, high = f"min_{metric.name}", f"max_{metric.name}"
    return (low, high) if low in rounds.columns and high in rounds.columns else None


def trend_chart(rounds: pd.DataFrame, metric: Metric | str, x: str = "step") -> Spec:
    """One metric's average per round as a line, with its min-max band when known and a rule at its
    ideal value (a length ratio of 1).

    `rounds` has `TREND_COLUMNS` (and a user metric's columns); rounds without a score are left out
    rather than drawn as zero.
    """
    metric = as_metric(metric)
    column, band = metric.column, _band(rounds, metric)
    keep = ["epoch", "step", "sample_count", "scored_count", column, *(band or ())]
    data = rounds[keep].dropna(subset=[column]).rename(columns={column: "value"})
    tips = [
        ("epoch:Q", "Epoch"),
        ("step:Q", "Step"),
        ("value:Q", metric.title, ".3f"),
        ("sample_count:Q", "Samples"),
    ]
    layers = []
    if band:
        best, worst = band if metric.lower_is_better else band[::-1]
        tips += [(f"{best}:Q", "Best sample", ".3f"), (f"{worst}:Q", "Worst sample", ".3f")]
        area = mark("area", color=BAND_COLOR, opacity=0.35)
        layers.append(view(data, area, x=_x(x), y=channel(f"{band[0]}:Q", title=None), y2={"field": band[1]}))
    if metric.ideal is not None:
        rule = mark("rule", color="#888", strokeDash=[4, 4])
        layers.append(view(pd.DataFrame({"ideal": [metric.ideal]}), rule, y=channel("ideal:Q")))
    y = channel("value:Q", title=None, scale=_y_scale(metric, data["value"]))
    layers.append(view(data, _line(LINE_COLOR), x=_x(x), y=y, tooltip=tooltip(*tips)))
    return chart(layer(*layers, title=metric.title, height=230))


def heatmap_chart(
    frame: pd.DataFrame, selected: int | None = None, metric: Metric | str = PRIMARY_METRIC
) -> Spec:
    """Samples (rows) by rounds (columns), coloured by a metric on the shared scale: green good, red bad.

    A click selects a sample (the `sample` selection, on its `sample_index`); the selected sample's row
    is outlined. `frame` is `analysis.heatmap_frame`'s output; with a `rank` column, samples are listed
    in that order (worst first) instead of by index.
    """
    metric = as_metric(metric)
    pick = {
        "name": "sample",
        "select": {"type": "point", "fields": ["sample_index"], "on": "click", "clear": False},
    }
    chosen = f"(datum.sample_index === {int(selected) if selected is not None else -1})"
    ranked = "rank" in frame.columns
    encoding = {
        "x": channel("round:O", title="Round", axis={"labelOverlap": True, "labelAngle": 0}),
        "y": channel(
            "sample_index:O",
            title="Sample",
            sort={"field": "rank", "op": "min"} if ranked else "ascending",
            axis={"labelOverlap": True},
        ),
        "color": channel(
            "value:Q", title=metric.label, scale=palette.error_scale(metric.lower_is_better, metric.bounds)
        ),
        "stroke": {"condition": {"test": chosen, "value": "#111"}, "value": None},
        "strokeWidth": {"condition": {"test": chosen, "value": 1.5}, "value": 0},
        "tooltip": tooltip(
            ("sample_index:O", "Sample"),
            ("round:O", "Round"),
            ("epoch:Q", "Epoch"),
            ("step:Q", "Step"),
            ("value:Q", metric.label, ".3f"),
        ),
    }
    data = frame[["sample_index", "round", "epoch", "step", "value", *(["rank"] if ranked else [])]]
    height = min(720, max(300, 16 * frame["sample_index"].nunique()))
    return chart({**view(data, mark("rect"), **encoding), "params": [pick], "height": height})


def sample_chart(history: pd.DataFrame, rounds: pd.DataFrame, x: str = "step") -> Spec:
    """One sample's CER per round against the job's average CER: is this sample ahead or behind?

    The job average is drawn first, grey and dashed, so the sample's own line stays visible on top
    where the two meet (both at 1.0 early in a run). Neither colour judges: the y axis does.
    """
    sample = history[["epoch", "step", "char_error_rate"]].rename(columns={"char_error_rate": "value"})
    average = rounds[["epoch", "step", "avg_char_error_rate"]].rename(
        columns={"avg_char_error_rate": "value"}
    )
    domain = {"domain": ["This sample", "Job average"], "range": [palette.LINE, palette.AVERAGE]}
    encoding = {
        "x": _x(x),
        "y": channel("value:Q", title="CER", scale={"domain": [0, 1]}),
        "color": channel("series:N", title=None, scale=domain),
        "tooltip": tooltip("series:N", "epoch:Q", "step:Q", ("value:Q", "CER", ".3f")),
    }
    layers = [
        view(
            frame.assign(series=name).dropna(subset=["value"]),
            mark("line", point={"size": size}, strokeDash=dash, strokeWidth=width),
            **encoding,
        )
        for frame, name, size, dash, width in (
            (average, "Job average", 16, [4, 3], 1.5),
            (sample, "This sample", 30, [1, 0], 2.5),
        )
    ]
    return chart(layer(*layers, height=200))


def compare_chart(
    trends: pd.DataFrame,
    metric: Metric | str,
    x: str = "step",
    by: str = "job",
    series: Sequence[str] | None = None,
) -> Spec:
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
    encoding = {
        "x": _x(x),
        "y": channel("value:Q", title=metric.title, scale=_zoomed_scale(metric, data["value"])),
        "color": channel(
            f"{by}:N",
            title=title,
            sort=order,  # legend and colours in the order given (the picked jobs'), not by name
            scale={"domain": order, "range": colours},
            legend={"orient": "bottom", "direction": "vertical", "labelLimit": 0},
        ),
        "tooltip": tooltip(
            (f"{by}:N", title),
            ("epoch:Q", "Epoch"),
            ("step:Q", "Step"),
            ("value:Q", metric.title, ".3f"),
            ("sample_count:Q", "Samples"),
        ),
    }
    line = view(data, _line(size=24), **encoding)
    return chart({**line, "title": metric.title, "height": compare_height(len(order))})


SERIES_TITLES = {"loss": "Training loss", "eval_loss": "Eval loss", "learning_rate": "Learning rate"}


def loss_chart(series: pd.DataFrame, rounds: pd.DataFrame, metric: Metric | str = PRIMARY_METRIC) -> Spec:
    """The Trainer's loss (training and eval) above the answers' metric, then the learning rate: three
    charts on one shared step axis, so 'loss falls while the answers get worse' is seen at a glance. A
    series the run never logged gets no chart (a search's trials log only their eval loss: an empty
    learning-rate chart stood there)."""
    metric = as_metric(metric)
    step = _x("step")
    named = series.assign(series=series["name"].map(SERIES_TITLES))
    losses = named[named["name"].isin(["loss", "eval_loss"])]
    colours = {"loss": palette.LINE, "eval_loss": palette.AVERAGE}
    logged = [name for name in colours if (losses["name"] == name).any()]  # the legend lists what exists
    legend = {"domain": [SERIES_TITLES[name] for name in logged], "range": [colours[name] for name in logged]}
    loss = view(
        losses,
        _line(size=16),
        x=step,
        y=channel("value:Q", title="Loss", scale={"zero": False}),
        color=channel("series:N", title=None, scale=legend, legend={"orient": "top"}),
        tooltip=tooltip("series:N", "step:Q", ("value:Q", None, ".4f")),
    )
    answers = rounds[["epoch", "step", metric.column]].dropna().rename(columns={metric.column: "value"})
    quality = view(
        answers,
        _line(LINE_COLOR),
        x=step,
        y=channel("value:Q", title=metric.label, scale=_y_scale(metric, answers["value"])),
        tooltip=tooltip("epoch:Q", "step:Q", ("value:Q", metric.title, ".3f")),
    )
    rates = named[named["name"] == "learning_rate"]
    lr = view(
        rates,
        mark("line", color=palette.AVERAGE),
        x=step,
        y=channel("value:Q", title="Learning rate", axis={"format": ".1e"}),
        tooltip=tooltip("step:Q", ("value:Q", "Learning rate", ".3e")),
    )
    return chart(
        {
            "vconcat": [
                *([{**loss, "height": 180, "title": "Loss"}] if logged else []),
                {**quality, "height": 180, "title": f"Answers: {metric.title}"},
                *([{**lr, "height": 110, "title": "Learning rate"}] if not rates.empty else []),
            ],
            "resolve": {"scale": {"x": "shared"}},
        }
    )
