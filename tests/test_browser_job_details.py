"""Tags and a note edited in a real browser: `streamlit run app.py` on a SQLite file (conftest's shared
`dashboard`), headless Chromium. A tag typed as a new option and a note holding Markdown and HTML are
saved, and reach the page as text."""

from __future__ import annotations

import pytest

from predictions.store import SQLiteStore
from tests.helpers import prediction_rows
from tests.helpers_browser import settle

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]
"""It adds its own job to conftest's shared `dashboard` (the job list follows the store at once)."""
JOB = "tags-run"

TIMEOUT_MS = 60_000
NOTE = "**bold** <img src=x onerror=\"document.title='pwned'\"> [link](http://127.0.0.1:9/x)"
TAG = "<b>new</b>"


def test_the_owner_types_a_new_tag_and_a_note_and_both_show_as_text(dashboard, page):
    store = SQLiteStore(dashboard.db)
    store.start_job(JOB, name="tags run", tags=["baseline"])
    store.write_predictions(prediction_rows(JOB, steps=(1, 2), samples=2, prediction="a", truth="a"))
    page.goto(f"{dashboard.url}/?job={JOB}")
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Tags and note").click(timeout=TIMEOUT_MS)
    settle(page)  # typed into as the expander opened, the tag was lost: 2-3 runs of 8, none once settled
    tags = sidebar.locator('[data-testid="stMultiSelect"] input')
    tags.fill(TAG)
    tags.press("Enter")
    # the typed option is the form's only once its chip is drawn (saving before lost it, once in a full run)
    sidebar.locator("[data-tag]", has_text=TAG).wait_for(timeout=TIMEOUT_MS)
    sidebar.locator("textarea").fill(NOTE)
    sidebar.get_by_role("button", name="Save").click()
    sidebar.get_by_text("Saved the tags and note of tags run.").wait_for(timeout=TIMEOUT_MS)
    (job,) = [job for job in store.list_jobs() if job.id == JOB]
    store.close()
    assert (job.tags, job.note) == (("baseline", TAG), NOTE)
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text(NOTE).wait_for(timeout=TIMEOUT_MS)  # the note, character for character
    assert "[baseline] [<b>new</b>]" in main.inner_text()  # the label under the title, as text
    assert main.locator("img[src=x], b, a[href^='http://127.0.0.1:9']").count() == 0
    assert main.locator("strong", has_text="bold").count() == 0  # no Markdown either
    assert page.title() != "pwned"
