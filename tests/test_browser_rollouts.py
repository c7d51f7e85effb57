"""The Rollouts page in headless Chromium: `streamlit run app.py` on a store holding a real GRPO job.

The page draws its charts without an exception, a prompt's history opens with every group side by side,
and a completion holding HTML reaches the DOM as text (no dialog). The screenshot is the README's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from predictions.store import SQLiteStore
from tests import helpers_grpo as g
from tests.helpers import wait_for_health
from tests.test_app_rollouts import hacked_job
from tests.test_browser import (
    CHARTS,
    ROOT,
    browser,  # noqa: F401 (a fixture)
    exceptions,
    free_port,
    page,  # noqa: F401 (a fixture)
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DB = Path("artifacts") / "browser-rollouts" / "predictions.db"


def open_page(page, url: str, charts: int, timeout_ms: int = 120_000) -> None:  # noqa: F811
    """As tests/test_browser.py's, with room for a machine under load: the page has five charts."""
    page.goto(url)
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=timeout_ms)
    page.wait_for_function(
        f"n => document.querySelectorAll('{CHARTS}').length >= n", arg=charts, timeout=timeout_ms
    )
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="hidden", timeout=timeout_ms)
    page.wait_for_timeout(500)


@pytest.fixture(scope="module")
def rollouts_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The dashboard on a store with a real 8-step GRPO job and the hacked job; (url, GRPO job id)."""
    path = ROOT / DB
    shutil.rmtree(path.parent, ignore_errors=True)
    store = SQLiteStore(path)
    hacked_job(store)
    job_id = g.seed_grpo_job(tmp_path_factory.mktemp("grpo"), store, steps=8, name="grpo-tiny")
    store.close()
    port = free_port()
    env = {**os.environ, "PREDICTIONS_DB": str(DB), "SUPABASE_URL": "", "SUPABASE_KEY": ""}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, server)
        yield url, job_id
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.timeout(600)
def test_the_rollouts_page_draws_a_grpo_job_and_a_prompts_history(rollouts_app, page):  # noqa: F811
    url, job_id = rollouts_app
    open_page(page, f"{url}/rollouts?job={job_id}", 4)
    assert exceptions(page) == []
    assert page.locator(CHARTS).count() >= 4  # rewards, length, equal-reward groups, the prompt's rewards
    assert page.get_by_text("A prompt's history").count() == 1
    store = SQLiteStore(ROOT / DB)
    first = store.rollout_prompts(job_id)["prompt_id"].iloc[0]
    groups = store.prompt_rollouts(job_id, first).groupby(["generation", "group_index"]).ngroups
    store.close()
    page.wait_for_selector(".pm-history tr", timeout=30_000)
    assert page.locator(".pm-history tr").count() == groups  # one row per group of the first prompt
    path = screenshot(page, "rollouts")
    assert path.stat().st_size > 20_000
    shutil.copy(path, ROOT / "docs" / "images" / "dashboard-rollouts.png")


@pytest.mark.timeout(600)
def test_html_in_a_completion_reaches_the_dom_as_text(rollouts_app, page):  # noqa: F811
    url, _ = rollouts_app
    open_page(page, f"{url}/rollouts?job=hacked", 4)
    assert page.get_by_text("Reward rose by").count() == 1  # the alarm
    page.wait_for_function("text => document.body.innerText.includes(text)", arg="onerror", timeout=30_000)
    page.wait_for_timeout(500)
    assert page.dialogs == [] and page.locator(".pm-history img").count() == 0
    assert "bold**" in page.locator(".pm-history").inner_text()
