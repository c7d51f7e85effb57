"""The router `app.py` runs: the page list, the shared sidebar and store, then the page the URL names.

Every page reads the `View` the router leaves in the session with `current_view()`. Streamlit runs a
file of `pages/` on its own, without `app.py`, while a server process has not yet seen a call to
`st.navigation` (its legacy folder router: the very first script runs of a process, and every AppTest
run). Such a page finds no view and calls `run()` itself: the same navigation, sidebar and page as from
`app.py`, in the same script run (so a click is not lost to a rerun); the outer run then stops.
"""

from __future__ import annotations

import streamlit as st

from predictions.dashboard import forms, queries, upgrade, widgets
from predictions.errors import ConfigError, StoreError

VIEW_KEY = "_predictions_view"

# Path (relative to app.py), title, icon and URL path of every page; the first is the default, at `/`.
# Each file is named after its URL path: Streamlit's legacy router finds pages by file name.
PAGES = (
    ("pages/trends.py", "Trends", ":material/monitoring:", "trends"),
    ("pages/samples.py", "Samples", ":material/grid_on:", "samples"),
    ("pages/predictions.py", "Predictions", ":material/table_rows:", "predictions"),
    ("pages/compare.py", "Compare", ":material/stacked_line_chart:", "compare"),
    ("pages/rollouts.py", "Rollouts", ":material/casino:", "rollouts"),
    ("pages/keys.py", "Keys", ":material/key:", "keys"),
)
HOME_URL_PATH = "home"
"""The default page's internal path: Streamlit serves it at `/`, and its own URL path answers by a
hidden page, so `/trends` opens Trends too (a default page and another cannot share a URL path)."""


def navigation() -> st.Page:
    """Declare the pages in the top bar; the returned page is the one the URL names."""
    (home, title, icon, url), *others = PAGES
    pages = [
        st.Page(home, title=title, icon=icon, url_path=HOME_URL_PATH, default=True),
        *(st.Page(path, title=title, icon=icon, url_path=url) for path, title, icon, url in others),
        st.Page(home, title=title, icon=icon, url_path=url, visibility="hidden"),
    ]
    return st.navigation(pages, position="top")


def sidebar() -> widgets.View | None:
    """The store, sign-in, job picker and live controls; None when there is nothing a page can show."""
    st.sidebar.title("Predictions Monitor")
    try:
        store = widgets.open_dashboard_store()
    except (StoreError, ConfigError) as error:
        widgets.store_unreachable(error)
        return None
    behind = upgrade.notice(store)
    if not widgets.sign_in_form(store):
        widgets.store_badge(store)
        return None
    widgets.signed_in_badge(store)
    try:
        version = queries.jobs_version(store)
        recent = queries.list_jobs(store, queries.store_key(store), version)
        widgets.new_job_notice(recent)
        job, jobs = widgets.job_picker(store, version, recent) if recent else (None, ())
    except StoreError as error:
        if behind:
            upgrade.read_failed(error)
        else:
            widgets.store_unreachable(error)
        return None
    if job is not None:
        widgets.job_lines(store, job)
    if job is not None and widgets.read_only(store) is None and not behind:  # no form that could only fail
        forms.job_details_control(store, job, (*recent, *jobs))  # tags to offer: recent and searched jobs
        forms.delete_job_control(store, job)
    wanted = st.query_params.get("job")
    view = widgets.View(store, jobs, job, wanted if job is None and wanted else None, behind)
    widgets.live_watch(view, version, widgets.live_controls(job))
    widgets.store_badge(store)
    return view


def run() -> None:
    """One script run of the dashboard: navigation, sidebar, then the page with the view it reads."""
    st.set_page_config(page_title="Predictions Monitor", page_icon=":material/monitoring:", layout="wide")
    page = navigation()
    view = sidebar()
    if view is None:
        return
    st.session_state[VIEW_KEY] = view
    try:
        page.run()
    except StoreError as error:
        if view.schema_problem:
            upgrade.read_failed(error)
        else:
            widgets.store_unreachable(error)


def current_view() -> widgets.View:
    """The view the router prepared for this run, taken so that a later run cannot see a stale one.

    None there means Streamlit's legacy folder router ran this page without `app.py`: route this run
    here (the page runs again inside, with the view), then end the outer run.
    """
    view = st.session_state.pop(VIEW_KEY, None)
    if view is None:
        run()
        st.stop()
    return view


def require_job() -> widgets.View:
    """The view, or the empty state and a stop when there is no job to show."""
    view = current_view()
    if view.missing_job is not None:
        widgets.missing_job(view.missing_job)
        st.stop()
    if view.job is None:
        widgets.no_jobs(view.store)
        st.stop()
    return view
