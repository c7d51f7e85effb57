"""Shared fixtures. `store` is parametrized over every backend: one contract suite runs on each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from streamlit.testing.v1 import AppTest

from predictions.store import SQLiteStore, Store
from tests import helpers_app

pytest_plugins = ["tests.pg_fixtures"]

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
def open_app(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """Open the app on a SQLite file at a job and a page: `open_app(db, job=..., page=..., **query)`."""

    def open_on(db: Path, **options) -> AppTest:
        return helpers_app.open_app(monkeypatch, db, **options)

    return open_on
