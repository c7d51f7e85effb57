"""What the browser tests share: headless Chromium's settings, the dashboard they all open (the
`dashboard` fixture in conftest.py), waiting for a page to be drawn, screenshots."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.helpers_app import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHARTS = '[data-testid="stVegaLiteChart"] svg.marks'
"""Drawn Altair charts (the metrics' sparklines are Vega too, outside these)."""
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DASHBOARD_DB = (
    Path("artifacts") / "browser" / os.environ.get("PYTEST_XDIST_WORKER", "main") / "predictions.db"
)
"""Relative to the repository root, so the sidebar (and the screenshots) show a short path; one file a
xdist worker, so two workers that both start the shared dashboard never seed one file twice."""


@dataclass(frozen=True)
class Dashboard:
    """A running `streamlit run app.py` and its SQLite file, which a test module may add jobs to: the
    dashboard sees a new job at once (the job list is keyed by the store's `jobs_version`)."""

    url: str
    db: Path


def open_page(page, url: str, charts: int, timeout_ms: int = 30_000) -> None:
    """Go to `url` and wait until the script has finished and `charts` Vega charts are drawn."""
    page.goto(url)
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=timeout_ms)
    page.wait_for_function(
        f"n => document.querySelectorAll('{CHARTS}').length >= n", arg=charts, timeout=timeout_ms
    )
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="hidden", timeout=timeout_ms)
    page.wait_for_timeout(500)  # let the last layout settle before a screenshot


def screenshot(page, name: str) -> Path:
    """The whole page, however tall: the viewport grows to the content for the shot."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": 1500, "height": min(4000, height + 60)})
    page.wait_for_timeout(700)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path)
    page.set_viewport_size({"width": 1500, "height": 1100})
    return path


def exceptions(page) -> list[str]:
    return page.locator('[data-testid="stException"]').all_inner_texts()


LOSS_JOB = "demo-loss"
"""The demo's Trainer run, shortened (tests/test_browser_loss.py)."""
GRPO_JOB_NAME = "grpo-tiny"
"""A real 8-step GRPO run (tests/test_browser_rollouts.py)."""
SCORES_JOB = "two-user-scores"
"""A job with two user scores, a gap in one (tests/test_browser_widths.py)."""
ROLLOUTS_JOB = "hacked"
"""test_app_rollouts' job whose reward rises while its answers get worse; one completion holds HTML."""


def seed_dashboard(path: Path, scratch: Path) -> None:
    """Every job the browser tests open, written before the server starts (the same file whichever
    tests run, in whatever order): the trained jobs first, seed_demo's last so that its learning-rate
    jobs stay the most recent (the Compare page overlays them by default)."""
    from predictions.demo.run import run_demo
    from predictions.store import SQLiteStore
    from tests import helpers_grpo as g
    from tests.seeding import seed_demo, write_colour_probe
    from tests.test_app_rollouts import hacked_job
    from tests.test_custom_metrics_contract import custom_rows

    run_demo(db_path=path, job_id=LOSS_JOB, job_name="Demo run", epochs=2, steps_per_epoch=30,
             rounds_per_epoch=3, num_samples=8, progress=False)  # fmt: skip
    store = SQLiteStore(path)
    try:
        g.seed_grpo_job(scratch, store, steps=8, name=GRPO_JOB_NAME)
        hacked_job(store, ROLLOUTS_JOB)
        quality = {"title": "Answer quality", "higher_is_better": False}
        config = {"scorers": {"quality": quality}}
        store.start_job(SCORES_JOB, name="Two user scores", model="synthetic-tiny", config=config)
        store.write_predictions(custom_rows(SCORES_JOB, rounds=6))
        store.finish_job(SCORES_JOB)
    finally:
        store.close()
    write_colour_probe(path)
    seed_demo(path)
