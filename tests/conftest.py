"""Shared fixtures. `store` is parametrized over every backend: one contract suite runs on each."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from streamlit.testing.v1 import AppTest

from predictions.store import SQLiteStore, Store
from tests import helpers_app
from tests.helpers import free_port
from tests.helpers_browser import CHROMIUM, CHROMIUM_ARGS, DASHBOARD_DB, VIEWPORT, Dashboard, seed_dashboard

pytest_plugins = ["tests.pg_fixtures"]

os.environ.setdefault("OMP_NUM_THREADS", "1")
"""One OpenMP thread in every process the tests start (xdist workers, README examples, training
subprocesses, servers): the workers already fill the cores, and on a busy machine OpenMP's spinning
threads cost far more than they give (the README example: 28 s of CPU with 2 threads, 13 s with 1)."""

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
"""Python's byte-code cache on for the suite's processes even where the environment turns it off (as on
the shared test machine): else every process the tests start (two workers, their zygotes and
forkservers, the Streamlit servers, each `python -c`) compiles the package and the test modules again,
and pytest rewrites the test modules' asserts again in each worker. The caches go to `__pycache__`
beside the sources (ignored by git), as Python's default puts them; a module collected with a warm
cache costs 5 s less CPU per worker."""

os.environ.setdefault(
    "HF_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
)
"""The Hugging Face cache where it already is, but fixed: `private_cache` gives each test its own
XDG_CACHE_HOME, from which Hugging Face would derive its cache paths in each new process (at import),
so no two tests' subprocesses could share a zygote (tests/zygote.py). Nothing downloads either way."""

settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")
"""Hypothesis' timing checks measure the machine, not the code: on a loaded CI machine they failed tests
whose properties held (input generation "too slow" at load 15)."""

BACKENDS = ["sqlite", "supabase"]
"""Backends the contract suite runs on; each name needs a branch in `make_store`."""


def make_store(backend: str, request: pytest.FixtureRequest, tmp_path) -> Store:
    """A fresh, empty store of the given backend."""
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "predictions.db")
    if backend == "supabase":
        from tests.pg_fixtures import user_store

        return user_store(request.getfixturevalue("postgrest"))
    raise ValueError(f"unknown backend {backend!r}")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch) -> None:
    """Each test its own user cache dir: a Supabase store's outbox lives there, never in the real one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    backend_store = make_store(request.param, request, tmp_path)
    yield backend_store
    backend_store.close()


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[SQLiteStore]:
    backend_store = SQLiteStore(tmp_path / "predictions.db")
    yield backend_store
    backend_store.close()


@pytest.fixture
def ipython(tmp_path, monkeypatch) -> Iterator[Any]:
    """A real IPython shell in this process (its cells run with `run_cell`, its events fire as in a
    notebook), without history; gone afterwards, so no later test sees a shell."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    try:
        yield shell
    finally:
        InteractiveShell.clear_instance()


@pytest.fixture
def open_app(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """Open the app on a SQLite file at a job and a page: `open_app(db, job=..., page=..., **query)`."""

    def open_on(db: Path, **options) -> AppTest:
        return helpers_app.open_app(monkeypatch, db, **options)

    return open_on


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory) -> Iterator[Dashboard]:
    """One `streamlit run app.py` on one seeded SQLite file for every browser test that can share it.

    Session-scoped, and the modules using it share the xdist group "browser", so the server starts and
    the jobs are trained once, in one worker (the file's path is fixed: two workers would clash on it).
    """
    path = helpers_app.ROOT / DASHBOARD_DB
    for stale in path.parent.glob(f"{path.name}*"):
        stale.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    seed_dashboard(path, tmp_path_factory.mktemp("dashboard"))
    env, port = helpers_app.sqlite_env(DASHBOARD_DB), free_port()
    with ExitStack() as server:
        url = server.enter_context(helpers_app.streamlit_server(env, port))

        def restart() -> None:
            server.close()  # the stack is empty again, ready for the next server
            server.enter_context(helpers_app.streamlit_server(env, port))

        yield Dashboard(url, path, restart)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Headless Chromium, once per worker; each test takes a fresh context of it (`page`)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def browser_tab(chromium) -> Iterator[Any]:
    """One context and one tab for every browser test of a worker that needs no cookies of its own. A
    new context costs Chromium a new renderer that parses the dashboard's scripts again: about 8 s of
    CPU for a page, against 1 to 5 s for a page in the tab that already has them."""
    context = chromium.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()


@pytest.fixture
def page(browser_tab) -> Iterator[Any]:
    """The worker's tab, its JavaScript dialogs recorded from this test on, each `goto` a fresh Streamlit
    session; left blank and at its usual size afterwards (so no page keeps polling the server)."""
    browser_tab.dialogs.clear()
    yield browser_tab
    browser_tab.goto("about:blank")
    browser_tab.set_viewport_size(VIEWPORT)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first, so the xdist workers finish together: the distributed runs (two processes each),
    then the other slow tests, then the quick ones to fill the gaps. (xdist hands out its groups first,
    the largest first: the browser group starts at once whatever the order.)"""
    items.sort(
        key=lambda item: (item.path.name != "test_distributed.py", item.get_closest_marker("slow") is None)
    )
    if getattr(config.option, "loadgroup", False):
        for item in items:
            _keep_xdist_group(item)


def _keep_xdist_group(item: pytest.Item) -> None:
    """Make the `xdist_group` suffix of a test's node id stick. xdist 3.8 groups tests by an `@group` suffix
    it writes into `item._nodeid`, which pytest 9.2 no longer reads (its ids are structured: pytest-xdist
    issue 1386), so every group was silently split across the workers: each worker seeded the browser
    tests' store, started its own dashboard and Chromium (about 25 s of CPU twice). Runs after xdist's
    hook (trylast); fails loudly if the id still lacks the suffix, rather than splitting groups again."""
    names = {
        str(m.args[0] if m.args else m.kwargs.get("name", "default"))
        for m in item.iter_markers("xdist_group")
    }
    if not names:
        return
    suffix = "@" + "_".join(sorted(names))
    if not item.nodeid.endswith(suffix):
        structured = getattr(item, "_id", None)
        if structured is not None and hasattr(structured, "parse"):
            item._id = type(structured).parse(item.nodeid + suffix)
        else:
            item._nodeid = item.nodeid + suffix
    assert item.nodeid.endswith(suffix), f"xdist_group {names} not in {item.nodeid}: update _keep_xdist_group"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collecting imported (torch, transformers, Streamlit, pandas, every test module: over
    half a million objects) out of the garbage collector's sight. Every `Trainer.train()` ends with a
    full `gc.collect()` (accelerate's `free_memory`), and Python's own full collections come every so
    often: each walked all of them again, about 0.26 s a run, half of a tiny test run's CPU. Objects
    created later, in the tests, are collected as before."""
    gc.collect()
    gc.freeze()
