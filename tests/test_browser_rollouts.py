"""The Rollouts page in headless Chromium: `streamlit run app.py` on a store holding a real GRPO job.

The page draws its charts without an exception, a prompt's history opens with every group side by side,
and a completion holding HTML reaches the DOM as text (no dialog); nothing is cut at 1280 or 1400 px.
The README's screenshot is `make screenshots`'s (devtools/screenshots.py); tests never write into docs/.
"""

from __future__ import annotations

import pytest

from predictions.store import SQLiteStore
from tests.helpers_browser import (
    CHARTS,
    GRPO_JOB_NAME,
    ROLLOUTS_JOB,
    assert_no_exception,
    assert_nothing_cut,
    at_laptop_widths,
    exceptions,
    open_page,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]
"""The jobs are in conftest's `dashboard`: a real 8-step GRPO job and test_app_rollouts' hacked job."""
LOADED_MS = 120_000
"""Room for a machine under load: the page has five charts."""


def grpo_job(store: SQLiteStore) -> str:
    jobs = [job for job in store.list_jobs() if job.name == GRPO_JOB_NAME]
    assert jobs, f"no {GRPO_JOB_NAME} job in the shared dashboard's store"
    return jobs[0].id  # the most recent


@pytest.mark.timeout(600)
def test_the_rollouts_page_draws_a_grpo_job_and_a_prompts_history(dashboard, page):
    store = SQLiteStore(dashboard.db)
    job_id = grpo_job(store)
    open_page(page, f"{dashboard.url}/rollouts?job={job_id}", 4, LOADED_MS)
    assert exceptions(page) == []
    assert page.locator(CHARTS).count() >= 4  # rewards, length, equal-reward groups, the prompt's rewards
    assert page.get_by_text("A prompt's history").count() == 1
    first = store.rollout_prompts(job_id)["prompt_id"].iloc[0]
    groups = store.prompt_rollouts(job_id, first).groupby(["generation", "group_index"]).ngroups
    store.close()
    page.wait_for_selector(".pm-history tr", timeout=30_000)
    assert page.locator(".pm-history tr").count() == groups  # one row per group of the first prompt
    assert screenshot(page, "rollouts").stat().st_size > 20_000  # the README's: make screenshots


@pytest.mark.timeout(600)
def test_html_in_a_completion_reaches_the_dom_as_text_and_nothing_is_cut(dashboard, page):
    """The hacked job's page at 1280 px, then 1400 px: the alarm shown, the completion holding HTML as
    text, and no table, chart title or text cut at either width (test_browser_widths' checks)."""
    for width in at_laptop_widths(page, f"{dashboard.url}/rollouts?job={ROLLOUTS_JOB}", 5):
        where = f"rollouts at {width} px"
        assert page.get_by_text("Reward rose by").count() == 1, f"{where}: the alarm"
        page.wait_for_function(
            "text => document.body.innerText.includes(text)", arg="onerror", timeout=30_000
        )
        assert page.locator(".pm-history img").count() == 0  # no element: nothing to run its onerror
        assert_no_exception(page, where)
        assert page.locator(CHARTS).count() >= 5, f"{where}: charts drawn"
        assert_nothing_cut(page, where)
    assert "bold**" in page.locator(".pm-history").inner_text()
