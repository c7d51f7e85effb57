"""Every page at common laptop widths (1280 and 1400 px) for a job with two user scores (Rollouts for
an RL job; Keys needs a signed-in Supabase user, and its table is checked in test_dashboard_helpers): no table
runs off the page's edge, no header or chart title is cut, no other text is cut (metric cards, labels,
rows of options), and Compare's plot keeps its height whatever its legend holds.

Tables are glide-data-grid canvases: a table fits when its scroller is no wider than its view, and
its accessible header row lists the columns drawn. Chart titles are Vega SVG text, which fits when
its box lies inside the chart's SVG.
"""

from __future__ import annotations

import contextlib

import pytest

from predictions.dashboard import charts as charts_module
from tests.helpers_browser import CHARTS, ROLLOUTS_JOB, SCORES_JOB, exceptions, open_page

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]
"""The jobs are in conftest's `dashboard`: seed_demo's, one with two user scores (a gap in one) and an
RL job's rollouts (for the Rollouts page)."""

WIDTHS = (1280, 1400)
PAGES = [("", SCORES_JOB, 4), ("samples", SCORES_JOB, 2), ("predictions", SCORES_JOB, 0)]
PAGES += [("compare", SCORES_JOB, 1), ("rollouts", ROLLOUTS_JOB, 5)]
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
CUT_TEXT = """() => [...document.querySelectorAll('[data-testid="stMain"] *')]
  .filter(el => !el.closest('[data-testid="stDataFrame"], [data-testid="stVegaLiteChart"]'))
  .filter(el => el.clientWidth > 2 && el.scrollWidth > el.clientWidth + 1)
  .filter(el => getComputedStyle(el).overflowX !== 'visible')
  .map(el => `${el.innerText.replace(/\\s+/g, ' ').slice(0, 60)}: ${el.scrollWidth}/${el.clientWidth} px`)"""
"""Text cut by its box outside tables and charts: a metric card's label, value or change shortened with
an ellipsis ("Word ove…", "CER per 10…"), a widget label, a row of options scrolled sideways. Boxes of
1 or 2 px are screen-reader text, clipped on purpose."""
COMPARE_PLOT = """() => Math.max(...[...document.querySelectorAll(
  '[data-testid="stVegaLiteChart"] svg.marks .role-axis-grid')].map(g => g.getBoundingClientRect().height))"""
"""The height of Compare's plot: its tallest grid (the y axis's)."""


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("path", "job", "charts"), PAGES, ids=[p or "trends" for p, _, _ in PAGES])
def test_no_table_or_chart_title_is_cut(dashboard, chromium, width, path, job, charts):
    context = chromium.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    try:
        open_page(page, f"{dashboard.url}/{path}?job={job}", charts)
        page.wait_for_timeout(1000)  # grids size their columns a moment after the script ends
        with contextlib.suppress(Exception):  # a loaded machine draws the header rows later; wait a while
            page.wait_for_function(HEADERS_DRAWN, timeout=10_000)
        assert exceptions(page) == []
        assert page.evaluate(CUT_TABLES) == []
        assert page.locator(CHARTS).count() >= charts
        assert page.evaluate(CUT_TITLES) == []
        assert page.evaluate(CUT_TEXT) == []
        if path == "compare":  # the legend's rows come on top of the plot's height, not out of it
            assert page.evaluate(COMPARE_PLOT) >= charts_module.COMPARE_PLOT - 10
    finally:
        context.close()
