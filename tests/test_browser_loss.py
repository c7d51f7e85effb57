"""A real Trainer run (the demo, shortened) on Trends in headless Chromium: the loss, the CER and the
learning rate drawn on one step axis (the README's screenshot of Trends is `make screenshots`'s)."""

from __future__ import annotations

import pytest

from predictions.store import SQLiteStore
from tests.helpers_browser import LOSS_JOB, SCREENSHOTS, exceptions, open_page

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]
"""The job is the demo's Trainer run, shortened: 2 epochs of 15 steps, a round every 5 steps and the
demo's loss log every 10 (conftest's `dashboard` trains it: 4 s of CPU, 7.5 s for 2 x 30 steps)."""


def test_trends_draws_the_trainers_loss_beside_the_cer_on_one_step_axis(dashboard, page):
    store = SQLiteStore(dashboard.db)
    series = store.training_series(LOSS_JOB)
    steps = store.rounds(LOSS_JOB)["step"].tolist()
    store.close()
    assert set(series["name"]) == {"loss", "learning_rate"}
    assert series[series["name"] == "loss"]["step"].tolist() == [10, 20, 30]
    assert steps == [5, 10, 15, 20, 25, 30]  # the loss's steps among the rounds': one step axis
    page.set_viewport_size({"width": 1500, "height": 3200})  # all in view
    open_page(page, f"{dashboard.url}/?job={LOSS_JOB}", charts=5)  # four metrics, then loss + CER + rate
    assert exceptions(page) == []
    heading = page.get_by_role("heading", name="Loss and answers")
    chart = page.locator('[data-testid="stVegaLiteChart"]').filter(has=page.locator("svg.marks")).nth(4)
    top, box = heading.bounding_box(), chart.bounding_box()
    clip = {"x": box["x"] - 8, "y": top["y"] - 8, "width": box["width"] + 16}
    clip["height"] = box["y"] + box["height"] - top["y"] + 16
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "trends-loss.png"
    page.screenshot(path=path, clip=clip)
    assert path.stat().st_size > 20_000
