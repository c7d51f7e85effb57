"""The dashboard in Streamlit's AppTest on a SQLite file: what the page tests share (`open_app` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


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
