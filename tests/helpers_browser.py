"""What the browser tests share: headless Chromium's settings, the dashboard they all open (the
`dashboard` fixture in conftest.py), waiting for a page to be drawn, screenshots."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
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
    restart: Callable[[], None]
    """Stop the server and start a fresh `streamlit run` at the same address: its next request is a new
    process's first, while the browser keeps the scripts it has cached from that address (a new
    address would cost Chromium some 3 s of CPU to fetch and compile them again)."""


VIEWPORT = {"width": 1500, "height": 1100}
"""The tab's size between tests (a test that resizes it gets it back: conftest's `page`)."""
SETTLE_FRAMES = 10
"""Animation frames a drawn layout must stay the same to count as settled."""

LAYOUT = """() => {
  const shown = selector => [...document.querySelectorAll(selector)]  // not in a closed expander or tab
    .filter(e => e.checkVisibility({contentVisibilityAuto: true, visibilityProperty: true}));
  const charts = shown('[data-testid="stVegaLiteChart"]').map(chart => {
    const svg = chart.querySelector('svg.marks');
    return [chart.clientWidth, +svg?.getAttribute('width'), +svg?.getAttribute('height')];
  });
  const grids = shown('[data-testid="stDataFrame"]').map(table => {
    const scroller = table.querySelector('.dvn-scroller');
    const heads = table.querySelectorAll('th').length;
    return [table.clientWidth, scroller?.clientWidth, scroller?.scrollWidth, heads];
  });
  const finished = document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState === 'notRunning';
  const content = '[data-testid="stDataFrame"], [data-testid="stVegaLiteChart"], img';
  const loading = document.querySelector('[data-stale="true"], [data-testid="stSkeleton"]') !== null
    || [...document.querySelectorAll('[data-testid="stFullScreenFrame"]')]
      .some(frame => !frame.querySelector(content));
  const running = !finished || loading;
  const drawn = !running && charts.every(c => c[0] === c[1])
                && grids.every(g => g[0] - g[1] <= 2 && g[3] > 0);
  const elements = document.querySelectorAll('[data-testid="stElementContainer"]').length;
  return {drawn, layout: JSON.stringify([elements, charts, grids])};
}"""
"""Whether the page is drawn at the tab's current width: the script has finished (the app's own state,
which Streamlit's status widget shows only after a while), no element is stale or still a skeleton (a
lazily loaded widget) or an empty frame (a table's data a second after the script ends); every
chart shown drawn, as wide as its frame (they all use the container's width; a resize redraws them
within about 0.2 s); every grid shown has its view as wide as its frame (it re-measures some 10 frames
after the charts) and its accessible header row drawn (a loaded machine draws it seconds late; measured
before it, a pinned table looked cut). `layout` holds every size, so a change shows."""
SETTLED = f"""frames => {{
  const now = ({LAYOUT})();
  if (!now.drawn || now.layout !== window.__pmLayout) {{
    window.__pmLayout = now.layout; window.__pmSame = 0; return false;
  }}
  return ++window.__pmSame >= frames;
}}"""
"""Polled once per animation frame: true once the page is drawn and its sizes have stayed the same
for `frames` frames."""


def settle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the page is drawn at its width and stays so, instead of sleeping."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate("() => { window.__pmLayout = null; window.__pmSame = 0; }")
    try:
        page.wait_for_function(SETTLED, arg=SETTLE_FRAMES, timeout=timeout_ms, polling="raf")
    except PlaywrightTimeout as error:
        raise AssertionError(f"the page never settled: {page.evaluate(LAYOUT)}") from error


def open_page(page, url: str, charts: int, timeout_ms: int = 60_000) -> None:
    """Go to `url` and wait until the script has finished, `charts` Vega charts are drawn and the
    layout has settled."""
    page.goto(url)
    wait_drawn(page, charts, timeout_ms)


def go_to(page, title: str, charts: int, timeout_ms: int = 60_000) -> None:
    """Open another page by its link in the top navigation, as a user does: the job stays in the URL,
    and the browser keeps the app it has loaded (a rerun, not a page load)."""
    page.locator('[data-testid="stTopNavLink"]', has_text=title).click()
    page.wait_for_function(
        "t => document.querySelector('[data-testid=\"stMainBlockContainer\"] h1')?.innerText.startsWith(t)",
        arg=title,
        timeout=timeout_ms,
    )
    wait_drawn(page, charts, timeout_ms)


def wait_drawn(page, charts: int, timeout_ms: int) -> None:
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=timeout_ms)
    page.wait_for_function(
        f"n => document.querySelectorAll('{CHARTS}').length >= n", arg=charts, timeout=timeout_ms
    )
    settle(page, timeout_ms=timeout_ms)


def resize(page, width: int, height: int) -> None:
    """Set the tab's size and wait for the page to be drawn again at it (Streamlit reflows without a
    rerun: the charts and grids redraw themselves)."""
    page.set_viewport_size({"width": width, "height": height})
    settle(page)


LAPTOP_WIDTHS = (1280, 1400)
"""Common laptop widths every page must fit (tests/test_browser_widths.py)."""


def at_laptop_widths(page, url: str, charts: int) -> Iterator[int]:
    """Open `url` at the first width, then widen the same page to each next one (Streamlit reflows
    without a rerun); yields each width once the page is drawn at it."""
    page.set_viewport_size({"width": LAPTOP_WIDTHS[0], "height": 1000})
    open_page(page, url, charts)
    for width in LAPTOP_WIDTHS:
        if width != LAPTOP_WIDTHS[0]:
            resize(page, width, 1000)
        yield width


def walk_at_laptop_widths(
    page, url: str, charts: int, then: list[tuple[str, int]]
) -> Iterator[tuple[int, int]]:
    """`at_laptop_widths` for the page at `url`, then each page of `then` (its title in the top
    navigation, its charts) reached by the navigation at the width the last one ended at and checked
    there, then at the other: every page at both widths, one page load. Yields (page index, width)."""
    for width in at_laptop_widths(page, url, charts):
        yield 0, width
    for index, (title, least) in enumerate(then, start=1):
        go_to(page, title, least)
        widths = LAPTOP_WIDTHS if page.viewport_size["width"] == LAPTOP_WIDTHS[0] else LAPTOP_WIDTHS[::-1]
        for width in widths:
            if width != page.viewport_size["width"]:
                resize(page, width, 1000)
            yield index, width


def screenshot(page, name: str) -> Path:
    """The whole page, however tall: the viewport grows to the content for the shot."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    size = page.viewport_size
    tall = {"width": 1500, "height": min(4000, height + 60)}
    if tall != size:
        resize(page, **tall)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path)
    if tall != size:
        resize(page, **size)
    return path


def exceptions(page) -> list[str]:
    return page.locator('[data-testid="stException"]').all_inner_texts()


def assert_no_exception(page, where: str = "") -> None:
    """No Streamlit exception box on the page, and no JavaScript dialog was opened."""
    assert exceptions(page) == [], f"{where}: Streamlit exceptions"
    assert page.dialogs == [], f"{where}: a dialog opened"


def assert_charts_drawn(page, charts: int, where: str = "") -> None:
    drawn = page.locator(CHARTS).count()
    assert drawn == charts, f"{where}: {drawn} charts drawn, {charts} expected"


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


SHORT_PLOTS = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg.marks')]
.flatMap(svg => {
  const grids = [...svg.querySelectorAll('.role-axis-grid')].map(g => g.getBoundingClientRect().height);
  const title = svg.querySelector('.role-title-text');
  const plot = Math.max(0, ...grids);
  return grids.length && plot < 90 ? [`${title ? title.textContent : 'chart'}: ${Math.round(plot)} px`] : [];
})"""
"""Charts whose plot is squeezed below 90 px (Streamlit fits a chart, legend included, into its spec's
height: the rollouts' reward chart had 65 px for its lines under a legend)."""


def assert_nothing_cut(page, where: str) -> None:
    """No table runs off the edge, no chart title and no other text is cut, no plot squeezed: each check
    named on failure."""
    checks = {"tables cut": CUT_TABLES, "chart titles cut": CUT_TITLES, "text cut": CUT_TEXT}
    for name, check in {**checks, "plots squeezed": SHORT_PLOTS}.items():
        assert page.evaluate(check) == [], f"{where}: {name}"


LOSS_JOB = "demo-loss"
"""The demo's Trainer run, shortened to 2 epochs of 15 steps (tests/test_browser_loss.py)."""
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

    run_demo(db_path=path, job_id=LOSS_JOB, job_name="Demo run", epochs=2, steps_per_epoch=15,
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
