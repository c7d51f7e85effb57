"""Tags and a note edited in a real browser: `streamlit run app.py` on a SQLite file, headless Chromium.
A tag typed as a new option and a note holding Markdown and HTML are saved, and reach the page as text."""

from __future__ import annotations

import pytest

from predictions.store import SQLiteStore
from tests.helpers import prediction_rows
from tests.helpers_app import sqlite_env, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 60_000
NOTE = "**bold** <img src=x onerror=\"document.title='pwned'\"> [link](http://127.0.0.1:9/x)"
TAG = "<b>new</b>"


def test_the_owner_types_a_new_tag_and_a_note_and_both_show_as_text(tmp_path, chromium):
    db = tmp_path / "tags.db"
    store = SQLiteStore(db)
    store.start_job("run-1", name="run one", tags=["baseline"])
    store.write_predictions(prediction_rows("run-1", steps=(1, 2), samples=2, prediction="a", truth="a"))
    store.close()
    with streamlit_server(sqlite_env(db)) as url:
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(f"{url}/?job=run-1")
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Tags and note").click(timeout=TIMEOUT_MS)
        tags = sidebar.locator('[data-testid="stMultiSelect"] input')
        tags.fill(TAG)
        tags.press("Enter")
        sidebar.locator("textarea").fill(NOTE)
        sidebar.get_by_role("button", name="Save").click()
        sidebar.get_by_text("Saved the tags and note of run one.").wait_for(timeout=TIMEOUT_MS)
        (job,) = SQLiteStore(db).list_jobs()
        assert (job.tags, job.note) == (("baseline", TAG), NOTE)
        main = page.locator('[data-testid="stMain"]')
        main.get_by_text(NOTE).wait_for(timeout=TIMEOUT_MS)  # the note, character for character
        assert "[baseline] [<b>new</b>]" in main.inner_text()  # the label under the title, as text
        assert main.locator("img[src=x], b, a[href^='http://127.0.0.1:9']").count() == 0
        assert main.locator("strong", has_text="bold").count() == 0  # no Markdown either
        assert page.title() != "pwned"
        context.close()
