"""The dashboard on a SQLite file, in Streamlit's AppTest (`open_app` fixture) or as a real server
(`streamlit_server`, which the browser tests use)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from streamlit.components.v2 import manifest_scanner
from streamlit.testing.v1 import AppTest

from predictions.dashboard import server as dashboard_server
from tests.helpers import free_port, wait_for_health

APP = str(Path(__file__).resolve().parents[1] / "app.py")

installed_components = functools.cache(manifest_scanner.scan_component_manifests)
"""Streamlit's scan of the installed packages for components, once per test process. Each new AppTest
scans again (`BidiComponentManager.discover_and_register_components` reads the metadata of every
installed distribution: 0.3-0.45 s of CPU, about a third of a page's AppTest run), and the installed
packages do not change during a test session. Streamlit offers no public way to share the result, so
this replaces the module function its manager calls; `test_app_pages` checks that AppTest still calls
it, so a Streamlit that stops doing so makes this visibly obsolete rather than silently wrong."""
manifest_scanner.scan_component_manifests = lambda *args, **kw: list(installed_components(*args, **kw))


def use_sqlite(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """The dashboard's environment for a SQLite file; the Supabase variables emptied so none is used."""
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    monkeypatch.setenv("SUPABASE_URL", "")
    monkeypatch.setenv("SUPABASE_KEY", "")


def open_app(
    monkeypatch: pytest.MonkeyPatch,
    db: Path,
    *,
    job: str | None = None,
    page: str | None = None,
    **query: str,
) -> AppTest:
    """`app.py` on the store file with `?job=` and `query` in the URL, then switched to `page` (a path
    relative to app.py, e.g. "pages/samples.py") as a click would; no exception allowed."""
    use_sqlite(monkeypatch, db)
    at = AppTest.from_file(APP, default_timeout=60)
    for name, value in {"job": job, **query}.items():
        if value is not None:
            at.query_params[name] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert_no_exception(at)
    return at


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


ROOT = Path(APP).parent


def sqlite_env(db: Path) -> dict[str, str]:
    """A server's environment for a SQLite file, the Supabase variables emptied so none is used."""
    return {"PREDICTIONS_DB": str(db), "SUPABASE_URL": "", "SUPABASE_KEY": ""}


@contextmanager
def streamlit_server(env: Mapping[str, str | None], port: int | None = None) -> Iterator[str]:
    """The dashboard as `predictions dashboard` starts it (its command line and settings), from the
    repository root, with `env` over this process's environment (a name given None is removed), on
    `port` (a free one by default); yields its URL once it answers."""
    port = port or free_port()
    environ = {**os.environ, **env}
    environ = {name: value for name, value in environ.items() if value is not None}
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    server = subprocess.Popen(dashboard_server.command(port), cwd=ROOT, env=environ, **output)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def click_chart(at: AppTest, key: str, selection: dict[str, list[dict]]) -> AppTest:
    """Run the app as after a click on the chart `key` with selections: its state is what the browser
    sends, `{"selection": {param: [point, ...]}}`. AppTest has no element for a chart to set that, so the
    state is added to the widget states of the next run (through AppTest's `_run`, which `run()` calls
    with them)."""
    (chart,) = [chart for chart in at.get("vega_lite_chart") if chart.key == key]
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id, state.string_value = chart.proto.id, json.dumps({"selection": selection})
    return at._run(states)
