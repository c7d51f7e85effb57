"""Predictions Monitor: `streamlit run app.py`. The router: navigation, the shared sidebar, the store.

Every page reads the `View` this file leaves in the session (store, jobs, picked job); the URL keeps
the page and the job (`/samples?job=<id>`), so a link opens the same view. Only the live fragment polls.
"""

from __future__ import annotations

import streamlit as st

from predictions.dashboard import queries, widgets
from predictions.errors import ConfigError, StoreError


def main() -> None:
    st.set_page_config(page_title="Predictions Monitor", page_icon=":material/monitoring:", layout="wide")
    page = widgets.navigation()
    st.sidebar.title("Predictions Monitor")
    try:
        store = widgets.open_dashboard_store()
    except (StoreError, ConfigError) as error:
        widgets.store_unreachable(error)
        return
    if not widgets.sign_in_form(store):
        widgets.store_badge(store)
        return
    widgets.signed_in_badge(store)
    try:
        jobs = tuple(queries.list_jobs(store, queries.store_key(store)))
    except StoreError as error:
        widgets.store_unreachable(error)
        return
    job = widgets.job_picker(jobs) if jobs else None
    view = widgets.View(store, jobs, job)
    st.session_state[widgets.VIEW_KEY] = view
    widgets.live_watch(view, widgets.live_controls())
    widgets.store_badge(store)
    try:
        page.run()
    except StoreError as error:
        widgets.store_unreachable(error)


main()
