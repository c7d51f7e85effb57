"""The run's context on a page: one line and a folded table of every training argument the job recorded.

Trends and Rollouts show it above their charts (Compare sets jobs side by side instead). Values are the
job's text: the line is escaped, the table shown as text, never Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from predictions.dashboard import columns, run_context, widgets
from predictions.store.records import Job


def run_section(job: Job, config: Mapping[str, Any] | None) -> None:
    """How the job was trained: model, adapter, learning rate, epochs, batch, rows, seed in one line, and
    every recorded argument in a table, folded; nothing for a job recorded before its context was."""
    if not run_context.has_training(config):
        return  # the sidebar still names its model
    values = run_context.context(job, config)
    st.caption(widgets.plain(run_context.summary_line(values)))
    with st.expander("Run: every training argument"):
        st.dataframe(
            run_context.table(values),
            hide_index=True,
            column_config={"argument": columns.text("Argument"), "value": columns.text("Value")},
        )
