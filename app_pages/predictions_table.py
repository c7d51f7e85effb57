"""Predictions: every row of the job, filtered by round and wrong answers, sorted by any metric, paged."""

from __future__ import annotations

import streamlit as st

from predictions.dashboard import columns, queries, widgets
from predictions.store.base import SORTABLE_COLUMNS

PAGE_SIZES = (25, 50, 100)
SORT_LABELS = {
    "sample_index": "Sample",
    "step": "Step",
    "epoch": "Epoch",
    "exact_match": "Exact match",
    "char_error_rate": "CER",
    "length_ratio": "Length ratio",
    "word_overlap": "Word overlap",
}


# Sorting by a metric shows the worst rows first: high CER and length ratio, low match and overlap.
WORST_FIRST_DESCENDING = {"char_error_rate", "length_ratio"}


def worst_first() -> None:
    """When the sort column changes, turn the direction to show the worst rows first."""
    st.session_state["table_desc"] = st.session_state["table_sort"] in WORST_FIRST_DESCENDING


def filters(view: widgets.View) -> dict:
    """Round, wrong answers only, sort column and direction, page size: the arguments of a page query."""
    rounds = queries.trends(view.store, view.ref()).rounds
    steps = [None, *rounds["step"].tolist()[::-1]]
    epochs = dict(zip(rounds["step"], rounds["epoch"], strict=True))
    cols = st.columns([3, 2, 2, 2, 2])
    step = cols[0].selectbox(
        "Round",
        steps,
        key="table_round",
        format_func=lambda s: "All rounds" if s is None else widgets.round_label(epochs[s], s),
    )
    sort_by = cols[1].selectbox(
        "Sort by", SORTABLE_COLUMNS, key="table_sort", format_func=SORT_LABELS.get, on_change=worst_first
    )
    descending = cols[2].toggle("Descending", key="table_desc")
    wrong_only = cols[3].toggle("Wrong answers only", key="table_wrong")
    limit = cols[4].selectbox("Rows a page", PAGE_SIZES, index=1, key="table_limit")
    return {
        "step": step,
        "sort_by": sort_by,
        "descending": descending,
        "wrong_only": wrong_only,
        "limit": limit,
    }


def table(view: widgets.View, chosen: dict) -> None:
    """The filtered page of rows and the pager under it; the pager restarts when a filter changes."""
    first = queries.predictions_page(view.store, view.ref(), **chosen, offset=0)
    pages = max(1, -(-first.total_count // chosen["limit"]))
    pager_key = "table_page_" + "_".join(str(value) for value in chosen.values())
    number = st.session_state.get(pager_key, 1)
    page = (
        first
        if number == 1
        else queries.predictions_page(view.store, view.ref(), **chosen, offset=(number - 1) * chosen["limit"])
    )
    shown = (
        f"rows {page.offset + 1}-{page.offset + len(page.rows)} of {page.total_count}"
        if len(page.rows)
        else ""
    )
    st.caption(f"{page.total_count} matching rows · {shown}" if shown else "No row matches these filters.")
    if chosen["wrong_only"] and page.total_count == 0 and view.job.round_count != 0:
        st.caption("Rows without a ground truth are never counted as wrong.")
    st.dataframe(
        columns.prediction_rows(page.rows),
        hide_index=True,
        column_config=columns.PREDICTION_ROWS,
        column_order=columns.TABLE_ORDER,
        height=min(640, 35 * (len(page.rows) + 1) + 3),
    )
    if pages > 1:
        st.pagination(pages, key=pager_key)


def main() -> None:
    view = widgets.require_job()
    st.title("Predictions")
    st.caption(widgets.plain(view.job.label))
    if view.job.round_count == 0:
        st.info("This job has no prediction rounds yet.")
        return
    table(view, filters(view))
    st.download_button(
        "Download the whole job as CSV",
        data=lambda: queries.job_csv(view.store, view.job.id),
        file_name=f"{view.job.id}-predictions.csv",
        mime="text/csv",
        icon=":material/download:",
    )


main()
