"""Every page at common laptop widths (1280 and 1400 px) for a job with two user scores (Rollouts for
an RL job; Keys needs a signed-in Supabase user, and its table is checked in test_dashboard_helpers): no table
runs off the page's edge, no header or chart title is cut.

Tables are glide-data-grid canvases: a table fits when its scroller is no wider than its view, and
its accessible header row lists the columns drawn. Chart titles are Vega SVG text, which fits when
its box lies inside the chart's SVG.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from predictions.store import SQLiteStore
from tests.seeding import seed_demo
from tests.test_app_rollouts import hacked_job
from tests.test_browser import (
    CHARTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    exceptions,
    open_page,
    streamlit_server,
    sync_playwright,
)
from tests.test_custom_metrics_contract import custom_rows

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parents[1]
DB = Path("artifacts") / "browser-widths" / "predictions.db"
JOB = "two-user-scores"
WIDTHS = (1280, 1400)
ROLLOUTS_JOB = "hacked"
PAGES = [("", JOB, 4), ("samples", JOB, 2), ("predictions", JOB, 0), ("compare", JOB, 1)]
PAGES += [("rollouts", ROLLOUTS_JOB, 5)]
"""Url path, job, charts drawn at least."""

HEADERS_DRAWN = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
  .every(table => !table.querySelector('.dvn-scroller') || table.querySelectorAll('th').length > 0)"""
"""Every grid has drawn its header row (a cut is reported by the column names)."""

CUT_TABLES = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')].flatMap(table => {
  const scroller = table.querySelector('.dvn-scroller');
  const heads = [...table.querySelectorAll('th')].map(th => th.textContent);
  const wide = scroller && scroller.scrollWidth > scroller.clientWidth + 1;
  const scrolls = ['Sample', 'Epoch', 'Step'].every(h => heads.includes(h));  // pinned: the row is known
  return wide && !scrolls
    ? [`${heads.join(' | ')}: ${scroller.scrollWidth} px of columns in ${scroller.clientWidth} px`] : [];
})"""
"""Tables that run off the edge; a table of rows may scroll its scores while its row's sample, epoch
and step stay pinned on screen (a job's six metrics cannot fit 1280 px beside the texts)."""
CUT_TITLES = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg.marks')]
.flatMap(svg => {
  const view = svg.getBoundingClientRect();
  return [...svg.querySelectorAll('.role-title-text, .role-axis-title text, .role-legend-title text')]
    .filter(text => { const box = text.getBoundingClientRect();
                      return box.left < view.left - 4 || box.right > view.right + 4
                             || text.textContent.endsWith('…'); })
    .map(text => `${text.textContent}: ${Math.round(text.getBoundingClientRect().left - view.left)} px`);
})"""
"""Chart titles outside their chart or shortened by Vega. The box of a rotated axis title is its whole
line (leading included), which may pass the edge by 2 px while its letters do not: 4 px allowed."""


@pytest.fixture(scope="module")
def widths_url() -> Iterator[str]:
    """The demo's jobs plus one with two user scores (a gap in one), the most recent job."""
    path = ROOT / DB
    for stale in path.parent.glob(f"{path.name}*"):
        stale.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    seed_demo(path)
    store = SQLiteStore(path)
    hacked_job(store, ROLLOUTS_JOB)  # an RL job's rollouts, for the Rollouts page
    quality = {"title": "Answer quality", "higher_is_better": False}
    store.start_job(
        JOB, name="Two user scores", model="synthetic-tiny", config={"scorers": {"quality": quality}}
    )
    store.write_predictions(custom_rows(JOB, rounds=6))
    store.finish_job(JOB)
    store.close()
    with streamlit_server(DB) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("path", "job", "charts"), PAGES, ids=[p or "trends" for p, _, _ in PAGES])
def test_no_table_or_chart_title_is_cut(widths_url, browser, width, path, job, charts):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    try:
        open_page(page, f"{widths_url}/{path}?job={job}", charts)
        page.wait_for_timeout(1000)  # grids size their columns a moment after the script ends
        with contextlib.suppress(Exception):  # a loaded machine draws the header rows later; wait a while
            page.wait_for_function(HEADERS_DRAWN, timeout=10_000)
        assert exceptions(page) == []
        assert page.evaluate(CUT_TABLES) == []
        assert page.locator(CHARTS).count() >= charts
        assert page.evaluate(CUT_TITLES) == []
    finally:
        context.close()
