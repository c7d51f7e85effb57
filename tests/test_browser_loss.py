"""A real Trainer run (the demo, shortened) on Trends in headless Chromium: the loss, the CER and the
learning rate drawn on one step axis. The screenshot is the README's (docs/images/dashboard-loss.png is
this test's artifacts/screenshots/trends-loss.png)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from predictions.demo.run import run_demo
from predictions.store import SQLiteStore
from tests import helpers_training  # noqa: F401  (one torch thread: the box is shared)
from tests.helpers import free_port, wait_for_health
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, SCREENSHOTS, exceptions, open_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.xdist_group("browser"),
    pytest.mark.timeout(600),
]
DB = Path("artifacts") / "browser-loss" / "predictions.db"
JOB = "demo-loss"

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright


@pytest.fixture(scope="module")
def trained_db() -> Path:
    """The demo's Trainer run, shortened: 2 epochs of 30 steps, a round and a loss log every 10."""
    path = ROOT / DB
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{path.name}*"):
        stale.unlink()
    run_demo(db_path=path, job_id=JOB, job_name="Demo run", epochs=2, steps_per_epoch=30, rounds_per_epoch=3,
             num_samples=8, progress=False)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def app_url(trained_db: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PREDICTIONS_DB": str(DB), "SUPABASE_URL": "", "SUPABASE_KEY": ""}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_trends_draws_the_trainers_loss_beside_the_cer_on_one_step_axis(app_url, trained_db):
    store = SQLiteStore(trained_db)
    series = store.training_series(JOB)
    steps = store.rounds(JOB)["step"].tolist()
    store.close()
    assert set(series["name"]) == {"loss", "learning_rate"}
    assert series[series["name"] == "loss"]["step"].tolist() == [10, 20, 30, 40, 50, 60]
    assert steps == [10, 20, 30, 40, 50, 60]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1500, "height": 3200}).new_page()  # all in view
        open_page(page, f"{app_url}/?job={JOB}", charts=5)  # four metrics, then loss + CER + rate
        assert exceptions(page) == []
        heading = page.get_by_role("heading", name="Loss and answers")
        chart = page.locator('[data-testid="stVegaLiteChart"]').filter(has=page.locator("svg.marks")).nth(4)
        page.wait_for_timeout(700)
        top, box = heading.bounding_box(), chart.bounding_box()
        clip = {"x": box["x"] - 8, "y": top["y"] - 8, "width": box["width"] + 16}
        clip["height"] = box["y"] + box["height"] - top["y"] + 16
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / "trends-loss.png"
        page.screenshot(path=path, clip=clip)
        browser.close()
    assert path.stat().st_size > 20_000
