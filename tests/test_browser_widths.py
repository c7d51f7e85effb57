"""Every page at common laptop widths (1280 and 1400 px) for a job with two user scores (Rollouts for an
RL job, in test_browser_rollouts; Keys needs a signed-in Supabase user, and its table is checked in
test_dashboard_helpers): no table runs off the page's edge, no header or chart title is cut, no other
text is cut (metric cards, labels, rows of options), and Compare's plot keeps its height whatever its
legend holds.

Tables are glide-data-grid canvases: a table fits when its scroller is no wider than its view, and
its accessible header row lists the columns drawn. Chart titles are Vega SVG text, which fits when
its box lies inside the chart's SVG (the checks are helpers_browser's `assert_nothing_cut`). A page is
measured only once drawn at its width (helpers_browser's `settle`): measured before its grid had drawn
its header row, a table that scrolls with pinned columns was reported as cut (": 1230 px of columns in
938 px", no column names: the header row was still empty, the widths were the final ones).
"""

from __future__ import annotations

import pytest

from predictions.dashboard import charts as charts_module
from tests.helpers_browser import (
    CHARTS,
    SCORES_JOB,
    assert_no_exception,
    assert_nothing_cut,
    walk_at_laptop_widths,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]
"""The job is in conftest's `dashboard`: one with two user scores (a gap in one)."""

PAGES = [("compare", "Compare", 1), ("", "Trends", 4), ("samples", "Samples", 2)]
PAGES += [("predictions", "Predictions", 0)]
"""Url path, title in the top navigation, charts drawn at least. Compare is opened by its URL (the other
pages are opened by theirs in test_browser), the others by the navigation. Rollouts (an RL job) is
measured where its job is opened, tests/test_browser_rollouts.py."""

COMPARE_PLOT = """() => Math.max(...[...document.querySelectorAll(
  '[data-testid="stVegaLiteChart"] svg.marks .role-axis-grid')].map(g => g.getBoundingClientRect().height))"""
"""The height of Compare's plot: its tallest grid (the y axis's)."""


def test_no_table_or_chart_title_is_cut(dashboard, page):
    """Compare opened at 1280 px, then widened to 1400 px; each other page reached by the navigation at
    the width the last one ended at, then resized to the other: every check runs at each width once the
    charts and grids are drawn at it."""
    url = f"{dashboard.url}/{PAGES[0][0]}?job={SCORES_JOB}"
    then = [(title, charts) for _, title, charts in PAGES[1:]]
    for index, width in walk_at_laptop_widths(page, url, PAGES[0][2], then):
        path, title, charts = PAGES[index]
        where = f"{title} at {width} px"
        assert f"job={SCORES_JOB}" in page.evaluate("location.href"), f"{where}: the job kept"
        assert_no_exception(page, where)
        assert page.locator(CHARTS).count() >= charts, f"{where}: charts drawn"
        assert_nothing_cut(page, where)
        if path == "compare":  # the legend's rows come on top of the plot's height, not out of it
            assert page.evaluate(COMPARE_PLOT) >= charts_module.COMPARE_PLOT - 10, f"{where}: plot height"
