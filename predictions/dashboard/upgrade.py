"""The dashboard over a Supabase database older than this package's migrations (upgraded with
`pip install -U`, the new migrations not pushed): one message naming the fix, and the reads that the
database can still answer go on."""

from __future__ import annotations

import streamlit as st

from predictions.dashboard.widgets import plain
from predictions.store.protocol import Store, schema_problem_of

WRITES_OFF = "Until then the pages show what this database can read; tags, notes and deleting are off."


def notice(store: Store) -> str | None:
    """Say what the database lacks and the fix, once at the top of the page; the problem, or None."""
    problem = schema_problem_of(store)
    if problem is not None:
        st.warning(f"{plain(problem)}. {WRITES_OFF}", icon=":material/upgrade:")
    return problem


def read_failed(error: Exception) -> None:
    """A read the older database cannot answer: the notice above already names the fix."""
    st.info(f"This view needs the migrations named above.\n\n{plain(error)}", icon=":material/upgrade:")
