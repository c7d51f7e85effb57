"""Trends: is the model getting better? Headline numbers, the early warning, and a chart per metric."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from predictions.dashboard import analysis, charts, columns, queries, router, widgets
from predictions.dashboard.run_panel import run_section
from predictions.scoring.metrics import Metric
from predictions.store.records import FINAL_STATUSES, Job, PageQuery, TrainerStop, Trends

HEADLINES_A_ROW = 4  # beside the sidebar at 1280 px, six a row cut labels and values ("Word ove…", "-0.3…")


def delta_colour(metric: Metric) -> str:
    """A falling CER is good, a rising score is good; a length ratio is best near its ideal 1, not high."""
    if metric.ideal is not None:
        return "off"
    return "inverse" if metric.lower_is_better else "normal"


def charted(trends: Trends) -> list[Metric]:
    """The job's metrics that have a value in some round, primary first: one headline and chart each."""
    rounds = trends.rounds
    return [m for m in charts.shown(trends.metrics) if m.column in rounds and rounds[m.column].notna().any()]


def headline(column, rounds: pd.DataFrame, metric: Metric) -> None:
    """The latest round's average of one metric, with the change since the previous round."""
    latest, delta = analysis.latest_and_delta(rounds, metric.column)
    history = analysis.sparkline(rounds[metric.column])
    change = None if delta is None else analysis.number_text(delta, signed=True)
    unchanged = change in ("+0.000", "-0.000")
    column.metric(
        widgets.plain(metric.label),  # a user scorer's title is the job's text: never Markdown
        "—" if latest is None else analysis.number_text(latest),
        delta="no change" if unchanged else change,
        delta_color="off" if unchanged else delta_colour(metric),
        delta_arrow="off" if unchanged else "auto",
        chart_data=history if len(history) > 1 else None,
        border=True,
        height="stretch",  # cards with and without a sparkline, one height
        help=widgets.plain(f"Average {metric.title.lower()}, latest round; change since the previous."),
    )


def headline_metrics(rounds: pd.DataFrame, trends: Trends) -> None:
    """Every metric's latest average with its change, then the overall improvement and the velocity."""
    metrics = charted(trends)
    slots = [*metrics, None, None]
    grid = [st.columns(HEADLINES_A_ROW) for _ in range(-(-len(slots) // HEADLINES_A_ROW))]
    cells = [cell for row in grid for cell in row]
    for cell, metric in zip(cells, metrics, strict=False):
        headline(cell, rounds, metric)
    columns = cells[len(metrics) : len(metrics) + 2]
    if analysis.scored(rounds).empty:
        return
    improvement = trends.overall_improvement
    columns[-2].metric(
        "Improvement",
        "—" if improvement is None else f"{improvement:.1f}%",
        border=True,
        height="stretch",
        delta="since round 1",
        delta_color="off",
        delta_arrow="off",
        help="How much the average CER fell from the first round to the latest, in percent of the first.",
    )
    velocity = analysis.learning_velocity(rounds)
    columns[-1].metric(
        "Velocity",
        "—" if velocity is None else f"{velocity.change:+.3f}",
        delta=None if velocity is None else f"CER per {velocity.unit}",
        delta_color="off",
        delta_arrow="off",
        border=True,
        height="stretch",
        help=f"Slope of the average CER over the last {analysis.VELOCITY_WINDOW} rounds, in CER per 100 "
        "training steps: below zero, the answers are getting better.",
    )


def regression_banner(rounds: pd.DataFrame, job: Job, trends: Trends) -> None:
    """The early warning: the latest round is clearly worse than the best one, judged by the metric the
    job's early-stop rule watches (CER unless `stop_metric` chose another). A job that already stopped
    says so instead, with its reason and the best round (for a stop by another callback, whose metric is
    the Trainer's, not a round's, the answers' best round beside the Trainer's best)."""
    metric = analysis.watched_metric(trends, job)
    if job.status == "stopped":
        best = analysis.best_round(rounds, metric)
        value = None if best is None else analysis.number_text(float(best[metric.column]))
        whose = "answers' best round" if isinstance(job.stop_reason, TrainerStop) else "best round"
        found = f" The {whose} was step {int(best['step'])} ({metric.label} {value})." if value else ""
        st.warning(widgets.plain(widgets.stop_text(job, trends.config) + found), icon=":material/front_hand:")
        return
    found = analysis.regression_warning(rounds, metric)
    if found is None:
        return
    latest = widgets.round_label(found.latest_epoch, found.latest_step)
    best = widgets.round_label(found.best_epoch, found.best_step)
    if job.status in FINAL_STATUSES:  # a run that has ended cannot be stopped: its checkpoint is left
        advice = (
            f"The run has {job.status}: prefer the checkpoint from step {found.best_step}, if it was saved."
        )
    else:
        advice = f"Consider stopping the run or keeping the checkpoint from step {found.best_step}."
    number = analysis.number_text
    st.warning(
        widgets.plain(  # a user scorer's title is the job's text: never Markdown
            f"The latest round ({latest}) has an average {metric.label} of {number(found.latest_value)}, "
            f"{number(found.worse_by)} worse than the best round ({best}, {number(found.best_value)}). "
            + advice
        ),
        icon="⚠️",
    )


def trend_charts(rounds: pd.DataFrame, metrics: list[Metric]) -> str:
    """A chart per metric, two a row, against step or epoch; returns the x axis chosen."""
    x = st.segmented_control(
        "X axis", ["step", "epoch"], default="step", key="trends_x", format_func=str.title
    )
    data = analysis.last_round_per_epoch(rounds) if x == "epoch" else rounds
    if x == "epoch" and len(data) < len(rounds):
        st.caption("By epoch, each point is the epoch's last round.")
    for start in range(0, len(metrics), 2):
        for column, metric in zip(st.columns(2), metrics[start : start + 2], strict=False):
            chart = charts.trend_chart(data, metric, x or "step")
            column.vega_lite_chart(spec=chart, key=f"trend_{metric.name}")
    return x or "step"


def loss_section(view: widgets.View, trends: Trends) -> None:
    """The Trainer's loss, the answers' CER and the learning rate on one step axis, and a warning when
    the loss keeps falling while the answers get worse (the model learns the training set, not the task),
    judged by the metric the early-stop rule watches."""
    series = queries.training_series(view.store, view.ref())
    if series.empty:
        return
    st.subheader("Loss and answers")
    rounds, metric = trends.rounds, analysis.watched_metric(trends, view.job)
    found = analysis.loss_divergence(rounds, series, metric.column, metric.lower_is_better)
    if found is not None:
        number, moved = analysis.number_text, "rose" if metric.lower_is_better else "fell"
        st.warning(
            widgets.plain(
                f"Training loss fell from {found.loss_from:.3f} to {found.loss_to:.3f} over steps "
                f"{found.first_step} to {found.last_step} while the answers' average {metric.label} "
                f"{moved} from {number(found.metric_from)} to {number(found.metric_to)}: the model may be "
                f"fitting the training data rather than the task. Consider the checkpoint from step "
                f"{found.first_step}."
            ),
            icon=":material/trending_down:",
        )
    st.vega_lite_chart(spec=charts.loss_chart(series, rounds, metric), key="trends_loss")


def group_trends(view: widgets.View, trends: Trends, metrics: list[Metric], x: str) -> None:
    """One metric split by a sample field the job keeps (its `metadata_fields`): a line per group."""
    if not trends.group_fields:
        return
    st.subheader("By group")
    left, right = st.columns(2)
    field = left.selectbox("Group by", trends.group_fields, key="trends_group_by")
    by_name = {metric.name: metric for metric in metrics}
    name = right.selectbox(
        "Metric", list(by_name), key="trends_group_metric", format_func=lambda n: by_name[n].title
    )
    groups = queries.group_trends(view.store, view.ref(), field)
    groups = groups.assign(group=groups["group"].fillna("(none)"))
    if x == "epoch":
        groups = groups.groupby(["group", "epoch"], sort=False).tail(1)
    st.vega_lite_chart(spec=charts.compare_chart(groups, by_name[name], x, by="group"), key="trends_groups")


def latest_answers(view: widgets.View, rounds: pd.DataFrame, *, worst: bool = True) -> None:
    """The latest round's worst (or, unscored or all right, first) answers: the numbers above in words.

    Worst answers are wrong ones only: a round with three wrong answers lists three, never a right one.
    """
    latest = rounds.iloc[-1]
    all_right = latest["avg_exact_match"] == 1.0
    worst = worst and not all_right
    sort_by = "char_error_rate" if worst else "sample_index"
    query = PageQuery(step=int(latest["step"]), sort_by=sort_by, descending=worst, wrong_only=worst, limit=5)
    page = queries.predictions_page(view.store, view.ref(), query)
    st.subheader("Worst answers in the latest round" if worst else "Answers in the latest round")
    if all_right:
        st.success(
            "Every answer in the latest round matches its ground truth exactly.",
            icon=":material/check_circle:",
        )
    shown = ["sample_index", "prompt", "prediction", "ground_truth", "char_error_rate"]
    st.dataframe(
        columns.coloured(columns.prediction_rows(page.rows)[shown]),
        hide_index=True,
        column_config=columns.prediction_columns(),
    )


def main() -> None:
    view = router.require_job()
    st.title("Trends")
    st.caption(widgets.plain(view.job.label))
    widgets.missing_notice(view.job)
    if view.job.note:
        st.text(view.job.note)  # its owner's words, as text: never Markdown
    trends = queries.trends(view.store, view.ref())
    run_section(view.job, trends.config)
    rounds = trends.rounds
    if rounds.empty:
        st.info(widgets.no_rounds_text(view.job, trends.config))
        if trends.config.get("kind") == "rollouts":
            st.page_link("pages/rollouts.py", label="This job's RL rollouts", icon=":material/casino:")
        return
    metrics = charted(trends)
    if not metrics:
        st.info(
            "This job's samples have no ground truth, so there are no scores to chart. "
            "Its predictions are on the Samples and Predictions pages.",
            icon="📝",
        )
        latest_answers(view, rounds, worst=False)
        return
    headline_metrics(rounds, trends)
    regression_banner(rounds, view.job, trends)
    if len(analysis.scored(rounds)) == 1:
        st.info("Only one round so far: trend lines appear after the next round.", icon="⏳")
    x = trend_charts(rounds, metrics)
    loss_section(view, trends)
    group_trends(view, trends, metrics, x)
    latest_answers(view, rounds)


main()
