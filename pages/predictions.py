"""Predictions: every row of the job, filtered by round and wrong answers, sorted by any metric, paged."""

from __future__ import annotations

from dataclasses import astuple, replace

import streamlit as st

from predictions.dashboard import charts, columns, csv_export, queries, router, widgets
from predictions.scoring.metrics import Metric
from predictions.store.records import MetricRange, PageQuery

PAGE_SIZES = (25, 50, 100)
ROW_LABELS = {"sample_index": "Sample", "step": "Step", "epoch": "Epoch"}


def worst_first_descending(metric: Metric) -> bool:
    """Sorting by a metric shows the worst rows first: high CER and length ratio, low scores."""
    return metric.lower_is_better or metric.ideal is not None


def worst_first(metrics: dict[str, Metric]) -> None:
    """When the sort column changes, turn the direction to show the worst rows first."""
    metric = metrics.get(st.session_state["table_sort"])
    st.session_state["table_desc"] = metric is not None and worst_first_descending(metric)


def metric_filter(metrics: dict[str, Metric]) -> MetricRange | None:
    """Only rows whose chosen metric lies between two bounds (either may stay empty)."""
    cols = st.columns([3, 2, 2, 4])
    name = cols[0].selectbox(
        "Only rows where",
        [None, *metrics],
        key="table_filter_metric",
        format_func=lambda n: "No metric filter" if n is None else metrics[n].label,
    )
    low = cols[1].number_input("is at least", value=None, key="table_filter_low", disabled=name is None)
    high = cols[2].number_input("and at most", value=None, key="table_filter_high", disabled=name is None)
    return None if name is None else (name, low, high)


def filters(view: widgets.View) -> PageQuery:
    """Round, wrong answers, a metric's range, sort column and direction, page size: the first page's
    query; every metric of the job (built-in or the user's) can sort and filter."""
    trends = queries.trends(view.store, view.ref())
    rounds = trends.rounds
    metrics = {metric.name: metric for metric in charts.shown(trends.metrics)}
    labels = {**ROW_LABELS, **{name: metric.label for name, metric in metrics.items()}}
    steps = [None, *rounds["step"].tolist()[::-1]]
    epochs = dict(zip(rounds["step"], rounds["epoch"], strict=True))
    cols = st.columns([3, 3, 2, 3, 2])  # "Wrong answers only" and a metric to sort by, uncut at 1280 px
    step = cols[0].selectbox(
        "Round",
        steps,
        key="table_round",
        format_func=lambda s: "All rounds" if s is None else widgets.round_label(epochs[s], s),
    )
    sort_by = cols[1].selectbox(
        "Sort by",
        list(labels),
        key="table_sort",
        format_func=labels.get,
        on_change=worst_first,
        args=(metrics,),
    )
    descending = cols[2].toggle("Descending", key="table_desc")
    wrong_only = cols[3].toggle("Wrong answers only", key="table_wrong")
    limit = cols[4].selectbox("Rows a page", PAGE_SIZES, index=1, key="table_limit")
    return PageQuery(
        step=step,
        wrong_only=wrong_only,
        sort_by=sort_by,
        descending=descending,
        limit=limit,
        metric_range=metric_filter(metrics),
    )


def table(view: widgets.View, chosen: PageQuery) -> None:
    """The filtered page of rows and the pager under it; the pager restarts when a filter changes."""
    metrics = queries.trends(view.store, view.ref()).metrics
    first = queries.predictions_page(view.store, view.ref(), chosen)
    pages = max(1, -(-first.total_count // chosen.limit))
    pager_key = "table_page_" + "_".join(str(value) for value in astuple(replace(chosen, offset=0)))
    number = st.session_state.get(pager_key, 1)
    page = first if number == 1 else queries.predictions_page(view.store, view.ref(), chosen.page(number))
    shown = (
        f"rows {page.offset + 1}-{page.offset + len(page.rows)} of {page.total_count}"
        if len(page.rows)
        else ""
    )
    st.caption(f"{page.total_count} matching rows · {shown}" if shown else "No row matches these filters.")
    if chosen.wrong_only and page.total_count == 0 and view.job.round_count != 0:
        st.caption("Rows without a ground truth are never counted as wrong.")
    st.dataframe(
        columns.coloured(columns.prediction_rows(page.rows), metrics),
        hide_index=True,
        column_config=columns.prediction_columns(metrics),
        column_order=columns.with_replacements(columns.table_order(metrics), page.rows),
        height=min(640, 35 * (len(page.rows) + 1) + 3),
    )
    if pages > 1:
        st.pagination(pages, key=pager_key)


def main() -> None:
    view = router.require_job()
    st.title("Predictions")
    st.caption(widgets.plain(view.job.label))
    if view.job.round_count == 0:
        st.info(widgets.no_rounds_text(view.job, queries.trends(view.store, view.ref()).config))
        return
    table(view, filters(view))
    st.download_button(
        "Download the whole job as CSV",
        data=lambda: csv_export.job_csv(view.store, view.job.id),
        file_name=f"{view.job.id}-predictions.csv",
        mime="text/csv",
        icon=":material/download:",
    )


main()
