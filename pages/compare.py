"""Compare: several jobs' trends overlaid, a summary per job of the metric shown, and one sample's
latest answer in each."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from predictions.dashboard import charts, columns, palette, queries, router, run_context, widgets
from predictions.scoring.metrics import PRIMARY_METRIC, Metric
from predictions.store.records import Job

DEFAULT_JOBS = 3
# An RL job's mean total reward per step, drawn like a metric (its column is `avg_reward`). A comment:
# Streamlit's magic would write a bare string onto the page.
MEAN_REWARD = Metric("reward", "Mean reward (RL rollouts)", "Mean reward", bounds=(None, None), builtin=False)


def job_names(jobs: list[Job]) -> dict[str, str]:
    """A legend name per job: its name, with the id added where two jobs share a name."""
    titles = [job.name or job.id for job in jobs]
    return {
        job.id: title if titles.count(title) == 1 else f"{title} ({job.id})"
        for job, title in zip(jobs, titles, strict=True)
    }


def pick_jobs(view: widgets.View) -> list[Job]:
    """The jobs to compare: by default the picked job and the next most recent ones."""
    by_id = {job.id: job for job in view.jobs}
    default = [view.job.id, *[i for i in by_id if i != view.job.id]][:DEFAULT_JOBS]
    listed = [*st.session_state.get("compare_jobs", default), *by_id][: queries.PICKER_JOBS]  # recent first
    options = list(dict.fromkeys(i for i in [*default, *listed] if i in by_id))
    chosen = st.multiselect(
        "Jobs", options, default=default, key="compare_jobs", format_func=lambda i: by_id[i].label
    )
    return [by_id[i] for i in chosen]


def long_trends(view: widgets.View, jobs: list[Job]) -> pd.DataFrame:
    """Every chosen job's rounds in one frame, with the job's name and each round's number."""
    names = job_names(jobs)
    frames = []
    for job in jobs:
        rounds = queries.trends(view.store, view.ref(job)).rounds
        frames.append(rounds.assign(job=names[job.id], round=range(1, len(rounds) + 1)))
    return pd.concat(frames, ignore_index=True)


def jobs_metrics(view: widgets.View, jobs: list[Job]) -> dict[str, Metric]:
    """Every metric any chosen job has, built-in or the user's, by name, in the order shown."""
    found: dict[str, Metric] = {}
    for job in jobs:
        for metric in queries.trends(view.store, view.ref(job)).metrics:
            found.setdefault(metric.name, metric)
    return {metric.name: metric for metric in charts.shown(found.values())}


def best(values: pd.Series, metric: Metric) -> float:
    """The best of a job's round averages: the lowest, the highest, or the closest to the metric's ideal."""
    if metric.ideal is not None:
        return values.loc[(values - metric.ideal).abs().idxmin()]
    return values.min() if metric.lower_is_better else values.max()


def summary(jobs: list[Job], trends: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """One row per job, in the chart's order: rounds, and the first, best and latest average of `metric`."""
    rows = []
    for name in job_names(jobs).values():
        rounds = trends[trends["job"] == name]
        values = rounds[metric.column].dropna() if metric.column in rounds else pd.Series(dtype=float)
        scored = not values.empty
        rows.append(
            {
                "job": name,
                "rounds": len(rounds),
                "first": values.iloc[0] if scored else None,
                "best": best(values, metric) if scored else None,
                "latest": values.iloc[-1] if scored else None,
            }
        )
    return pd.DataFrame(rows, columns=["job", "rounds", "first", "best", "latest"])


def summary_table(frame: pd.DataFrame, metric: Metric) -> None:
    """The summary drawn as the metric is everywhere: 0-1 as coloured bars, others as numbers."""
    values = ["first", "best", "latest"]
    if metric.bounds == (0.0, 1.0):
        value_column = {v: columns.bar(f"{v.title()} {metric.label}", width=150) for v in values}
        cell = palette.error_cell if metric.lower_is_better else palette.score_cell
        shown = frame.style.map(cell, subset=values)
    else:
        number_format = "%.2fx" if metric.ideal == 1.0 else "%.3f"
        value_column = {
            v: st.column_config.NumberColumn(f"{v.title()} {metric.label}", format=number_format, width=150)
            for v in values
        }
        shown = frame
    summary_columns = {
        "job": st.column_config.TextColumn("Job", width="medium"),
        "rounds": st.column_config.NumberColumn("Rounds", width=80),
    }
    st.dataframe(shown, hide_index=True, column_config=summary_columns | value_column)


def rewards(view: widgets.View, jobs: list[Job], x: str) -> None:
    """The mean reward per step of every chosen job that has RL rollouts, overlaid."""
    names, frames = job_names(jobs), []
    for job in jobs:
        steps = queries.rollout_trends(view.store, view.ref(job)).steps
        if not steps.empty:
            extra = {"job": names[job.id], "epoch": float("nan"), "round": range(1, len(steps) + 1)}
            frames.append(steps.assign(sample_count=steps["rollout_count"], **extra))
    if frames:
        axis = "round" if x == "round" else "step"
        chart = charts.compare_chart(pd.concat(frames), MEAN_REWARD, axis, series=list(names.values()))
        st.vega_lite_chart(spec=chart, key="compare_rewards")


def same_sample(view: widgets.View, jobs: list[Job]) -> None:
    """One sample's latest answer in every chosen job, side by side in a table (text, never HTML)."""
    st.subheader("One sample across jobs")
    tracked = [
        set(queries.sample_summary(view.store, view.ref(job))["sample_index"].astype(int)) for job in jobs
    ]
    offered, shared = sorted(set().union(*tracked)), set.intersection(*tracked)
    if not offered:
        st.text("The chosen jobs track no samples.")
        return
    sample = st.selectbox(
        "Sample",
        offered,
        index=offered.index(min(shared)) if shared else 0,  # one every chosen job tracks, where there is one
        format_func=lambda index: str(index) if index in shared else f"{index} (not in every chosen job)",
        key="compare_sample",
        width=260,
    )
    names, rows = job_names(jobs), []
    for job in jobs:
        history = queries.sample_history(view.store, view.ref(job), int(sample))
        if not history.empty:
            rows.append(
                history.iloc[-1][["prediction", "ground_truth", "char_error_rate", "step"]].to_dict()
                | {"job": names[job.id]}
            )
    if not rows:
        st.text(f"No chosen job has sample {sample}.")
        return
    frame = pd.DataFrame(rows)[["job", "step", "prediction", "ground_truth", "char_error_rate"]]
    st.dataframe(
        columns.coloured(frame),
        hide_index=True,
        column_config={
            "job": st.column_config.TextColumn("Job", width="medium"),
            "step": st.column_config.NumberColumn("Step", width=70),
            "prediction": columns.text("Latest prediction"),
            "ground_truth": columns.text("Ground truth"),
            "char_error_rate": columns.cer(width=110),  # the five columns fit a 1280 px page
        },
    )


def tags_and_notes(jobs: list[Job]) -> None:
    """The chosen jobs' tags and notes side by side (text), when any of them has some."""
    if not any(job.tags or job.note for job in jobs):
        return
    st.subheader("Tags and notes")
    names = job_names(jobs)
    frame = pd.DataFrame(
        [{"job": names[job.id], "tags": ", ".join(job.tags), "note": job.note or ""} for job in jobs],
        columns=["job", "tags", "note"],
    )
    config = {"job": columns.text("Job"), "tags": columns.text("Tags"), "note": columns.text("Note", "large")}
    st.dataframe(frame, hide_index=True, column_config=config)


def run_differences(view: widgets.View, jobs: list[Job]) -> None:
    """The chosen jobs' training arguments side by side, those that differ first and ticked: why two
    curves differ is usually a learning rate, a batch size or a dataset. Jobs recorded before the run's
    context was are named, not compared (every argument would "differ" from nothing)."""
    names, contexts, without = job_names(jobs), {}, []
    for job in jobs:
        config = queries.trends(view.store, view.ref(job)).config
        if run_context.has_training(config):
            contexts[names[job.id]] = run_context.context(job, config)
        else:
            without.append(names[job.id])
    if not contexts:
        return
    st.subheader("How the runs were trained")
    frame = run_context.comparison(contexts)
    differing = int(frame["differs"].sum())
    st.caption(f"{differing} of {len(frame)} arguments differ between these jobs (ticked, listed first).")
    config = {
        "differs": st.column_config.CheckboxColumn("Differs", width=70),
        "argument": columns.text("Argument"),
    }
    config |= {name: st.column_config.TextColumn(name) for name in frame.columns[2:]}
    rows_tall = 35 * (len(frame) + 1) + 3  # every argument visible, no scroll inside the table
    st.dataframe(frame, hide_index=True, column_config=config, height=rows_tall)
    if without:
        st.caption(widgets.plain("No training arguments recorded for: " + ", ".join(without)))


def main() -> None:
    view = router.require_job()
    st.title("Compare jobs")
    jobs = pick_jobs(view)
    if not jobs:
        st.info("Pick one or more jobs to compare.")
        return
    trends = long_trends(view, jobs)
    metrics = jobs_metrics(view, jobs)
    left, right = st.columns([2, 1])  # every metric's name needs the room
    name = left.segmented_control(
        "Metric",
        list(metrics),
        default=PRIMARY_METRIC,
        key="compare_metric",
        wrap=True,  # a job with user scores has more metrics than one line holds (they scrolled, cut)
        format_func=lambda n: widgets.plain(metrics[n].title),  # options are Markdown: a title is text
    )
    x = right.segmented_control(
        "X axis", ["step", "epoch", "round"], default="step", key="compare_x", format_func=str.title
    )
    metric = metrics[name or PRIMARY_METRIC]
    if metric.column not in trends or trends[metric.column].isna().all():
        st.info(
            f"None of these jobs has a scored round of {widgets.plain(metric.title.lower())}, so there is "
            "nothing to overlay.",
            icon="📝",
        )
    else:
        drawn = trends.groupby(["job", "epoch"], sort=False).tail(1) if x == "epoch" else trends
        chart = charts.compare_chart(drawn, metric, x or "step", series=list(job_names(jobs).values()))
        st.vega_lite_chart(spec=chart, key="compare_chart")  # a job's colour is its place among the picked
    rewards(view, jobs, x or "step")
    summary_table(summary(jobs, trends, metric), metric)
    tags_and_notes(jobs)
    run_differences(view, jobs)
    same_sample(view, jobs)


main()
