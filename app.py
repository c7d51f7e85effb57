"""Predictions Monitor: `streamlit run app.py`. The router: the page list, the shared sidebar, the store.

Every page reads the `View` this file leaves in the session (store, jobs, picked job), then this file
runs the page in the same script run; the URL keeps the page and the job (`/samples?job=<id>`), so a
link opens the same view. Only the live fragment polls.

The pages live in `app_pages/`, not `pages/`: Streamlit runs a `pages/` file on its own, without this
router, on a process's first run, and a page named after the package would shadow `import predictions`.
"""

from __future__ import annotations

import streamlit as st

from predictions.dashboard import forms, queries, widgets
from predictions.errors import ConfigError, StoreError

# Path (relative to this file), title, icon and URL path of every page; the first is the default.
# (A comment, not a docstring: Streamlit's magic would write a bare string onto every page.)
PAGES = (
    ("app_pages/trends.py", "Trends", ":material/monitoring:", "trends"),
    ("app_pages/samples.py", "Samples", ":material/grid_on:", "samples"),
    ("app_pages/predictions_table.py", "Predictions", ":material/table_rows:", "predictions"),
    ("app_pages/compare.py", "Compare", ":material/stacked_line_chart:", "compare"),
    ("app_pages/keys.py", "Keys", ":material/key:", "keys"),
)


def navigation() -> st.navigation:
    """Declare the pages in the top bar; the returned page is the one the URL names."""
    pages = [
        st.Page(path, title=title, icon=icon, url_path=url, default=index == 0)
        for index, (path, title, icon, url) in enumerate(PAGES)
    ]
    return st.navigation(pages, position="top")


def main() -> None:
    st.set_page_config(page_title="Predictions Monitor", page_icon=":material/monitoring:", layout="wide")
    page = navigation()
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
    if job is not None:
        forms.delete_job_control(store, job)
    view = widgets.View(store, jobs, job)
    st.session_state[widgets.VIEW_KEY] = view
    widgets.live_watch(view, widgets.live_controls(job))
    widgets.store_badge(store)
    try:
        page.run()
    except StoreError as error:
        widgets.store_unreachable(error)


main()
