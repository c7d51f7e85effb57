"""The dashboard in a real browser: `streamlit run app.py` on a seeded store, headless Chromium.

Each page is opened once per job it is checked on, and every check that job needs runs there: charts
drawn, no Streamlit exception, the job kept in the link, a screenshot (artifacts/screenshots/); model
output holding HTML or Markdown reaches the DOM as text on every page and loads nothing; a heatmap click
and a sample list's row open the sample; CER cells are coloured; a round written while the page is
open shows up. A job's other pages are reached by the top navigation, as a user goes there.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from PIL import Image

from predictions.dashboard import analysis, router
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow
from tests.helpers import free_port
from tests.helpers_browser import (
    SCREENSHOTS,
    assert_charts_drawn,
    assert_no_exception,
    exceptions,
    go_to,
    open_page,
    screenshot,
    settle,
)
from tests.seeding import (
    BIG_JOB,
    COLOUR_PROBE_JOB,
    COMPARE_JOBS,
    LIVE_JOB,
    XSS_IMG,
    XSS_JOB,
    XSS_SCRIPT,
    sample_task,
    write_round,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]
"""The browser tests share one server and one seeded file (conftest's `dashboard`): one xdist worker."""

TITLES = [title for _, title, _, _ in router.PAGES[:4]]
"""The pages a job of predictions shows, in the navigation's order: Trends, Samples, Predictions, Compare."""


def assert_link_keeps_the_job(page, job: str) -> None:
    url = page.evaluate("location.href")  # page.url follows the page's own history changes late
    assert f"job={job}" in url, f"the link lost the job: {url}"


def assert_drawn_with_the_job(page, path: str, job: str, charts: int) -> None:
    """No exception or dialog, exactly `charts` charts drawn, the job kept in the link; a screenshot."""
    assert_no_exception(page, path)
    assert_charts_drawn(page, charts, path)
    assert_link_keeps_the_job(page, job)
    assert screenshot(page, path).stat().st_size > 20_000


def test_the_samples_page_draws_and_its_lists_and_heatmap_open_a_sample(dashboard, page):
    """Samples for a long job: drawn, then a sample list's row and a heatmap cell, clicked, each open
    their sample (a rerun of the same page, as a user clicks one after the other); then the job's
    Predictions, reached by the navigation, is drawn with the job kept."""
    open_page(page, f"{dashboard.url}/samples?job={BIG_JOB}", 2)
    assert "sample=0" in page.url
    assert_drawn_with_the_job(page, "samples", BIG_JOB, 2)
    select_the_third_row_of_the_most_improved_list(dashboard, page)
    click_the_heatmap_on_sample_7(page)
    assert_no_exception(page, "samples after the clicks")
    go_to(page, "Predictions", 0)
    assert_drawn_with_the_job(page, "predictions", BIG_JOB, 0)


def select_the_third_row_of_the_most_improved_list(dashboard, page) -> None:
    store = SQLiteStore(dashboard.db)
    improved = analysis.most_improved(analysis.sample_summary(store.sample_summary(BIG_JOB)))
    store.close()
    wanted = int(improved["sample_index"].iloc[2])
    assert wanted not in (0, 7)
    table = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    row_height = 35  # the header and each row of st.dataframe
    page.mouse.click(table["x"] + 16, table["y"] + row_height * 3 + row_height / 2)  # the tick box
    page.wait_for_url(f"**sample={wanted}**", timeout=30_000)
    page.wait_for_selector(f'h3:has-text("Sample {wanted}")', timeout=30_000)
    settle(page)


def click_the_heatmap_on_sample_7(page) -> None:
    rounds = 40  # seed_demo's long run: 40 rounds of 24 samples, one heatmap cell each
    cells = page.locator('[data-testid="stVegaLiteChart"]').first.locator("g.mark-rect path")
    cells.nth(7 * rounds + 20).click()
    page.wait_for_url("**sample=7**", timeout=30_000)
    page.wait_for_selector('h3:has-text("Sample 7")', timeout=30_000)
    prompt, truth = sample_task(7)
    assert page.locator('[data-testid="stCode"]').all_inner_texts()[:2] == [prompt, truth]


def test_a_fresh_server_renders_a_page_opened_by_url_first_with_the_sidebar(dashboard, page):
    """A process's first requests take Streamlit's legacy `pages/` router, which runs the page file
    without app.py: the page must still get the navigation, the sidebar and the store. (The shared
    server is restarted for it: a new process at the same address.) Then Trends, by its URL on the
    now warm server, and Compare by the navigation: every chart drawn, no exception, the job kept."""
    store = SQLiteStore(dashboard.db)
    labels = {job.id: job.label for job in store.list_jobs()}
    store.close()
    dashboard.restart()
    open_page(page, f"{dashboard.url}/samples?job={BIG_JOB}", 2)  # the new process's first page
    assert_full_page(page, "Samples", labels[BIG_JOB])
    assert page.locator('h3:has-text("Sample 0")').count() == 1
    open_page(page, f"{dashboard.url}/trends?job={COMPARE_JOBS[2]}", 4)
    assert_full_page(page, "Trends", labels[COMPARE_JOBS[2]])
    assert page.get_by_text("Improvement").count() >= 1
    assert f"/trends?job={COMPARE_JOBS[2]}" in page.url
    assert_drawn_with_the_job(page, "trends", COMPARE_JOBS[2], 4)
    go_to(page, "Compare", 1)
    assert_drawn_with_the_job(page, "compare", COMPARE_JOBS[2], 1)


def assert_full_page(page, title: str, job_label: str) -> None:
    """The page's own title, the sidebar's job picker on the job, the top navigation, no error."""
    assert page.locator('[data-testid="stMainBlockContainer"] h1').first.inner_text() == title
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_role("combobox", name="Job").input_value() == job_label
    assert "Store" in sidebar.inner_text()
    nav = [text.split()[-1] for text in page.locator('[data-testid="stTopNavLink"]').all_inner_texts()]
    assert nav == [title for _, title, _, _ in router.PAGES]  # every page, in order
    assert page.get_by_text("Page not found").count() == 0
    assert page.dialogs == [] and exceptions(page) == []


def walk_the_pages(
    page, url: str, job: str, charts: tuple[int, ...], check: Callable[[object, str], None]
) -> None:
    """Open the job's Trends by URL, then Samples, Predictions and Compare by the top navigation, each
    waited on until it has drawn at least its `charts`; then `check(page, title)` on it."""
    for title, least in zip(TITLES, charts, strict=True):
        if title == TITLES[0]:
            open_page(page, f"{url}/?job={job}", least)
        else:
            go_to(page, title, least)
        assert_link_keeps_the_job(page, job)
        check(page, title)


def test_html_in_predictions_reaches_the_dom_as_text(dashboard, page):
    """On every page of a job whose prompts and answers hold HTML (the Samples and Predictions pages
    show both literals; the others show the job's name, itself HTML)."""

    def html_is_text(page, title: str) -> None:
        literals = [XSS_IMG, XSS_SCRIPT] if title in ("Samples", "Predictions") else [XSS_IMG]
        for literal in literals:  # tables fill their accessible cells a moment after the grid is drawn
            page.wait_for_function("s => document.body.textContent.includes(s)", arg=literal, timeout=30_000)
        assert page.locator('img[src="x"]').count() == 0, title
        script = "[...document.scripts].filter(s => s.textContent.includes('alert(1)')).length"
        assert page.evaluate(script) == 0, title
        assert page.locator("main b", has_text="bold").count() == 0, title  # the job's name is escaped too
        assert_no_exception(page, title)
        if title == "Samples":
            screenshot(page, "samples-untrusted-html")

    walk_the_pages(page, dashboard.url, XSS_JOB, (0, 2, 0, 1), html_is_text)


def test_a_round_written_while_the_page_is_open_shows_up_live(dashboard, page):
    """A running job's page at `/`, left open: a round written to the store appears without a reload."""
    open_page(page, f"{dashboard.url}/?job={LIVE_JOB}", 4)
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert "8 rounds" in sidebar.inner_text()
    store = SQLiteStore(dashboard.db)
    write_round(store, LIVE_JOB, 8, rounds=8, samples=16)
    store.close()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stSidebar\"]').innerText.includes('9 rounds')",
        timeout=30_000,
    )
    assert exceptions(page) == []


def row_tint(image, row: int, row_height: int = 35) -> tuple[float, float, float] | None:
    """The mean colour of the clearly coloured pixels in a table row (header is row 0); None when the
    row has no coloured cell (yet)."""
    band = image.crop((0, row * row_height + 4, image.width, (row + 1) * row_height - 4)).convert("RGB")
    tinted = [(r, g, b) for r, g, b in band.getdata() if max(r, g, b) - min(r, g, b) > 25]
    if len(tinted) <= 200:
        return None
    return tuple(sum(channel) / len(tinted) for channel in zip(*tinted, strict=True))


def test_cer_cells_are_coloured_by_the_shared_scale_half_wrong_is_not_green(dashboard, page):
    """The Predictions grid's CER cells, read from its canvas once painted: 0.5 is not green, 0.1 is."""
    open_page(page, f"{dashboard.url}/predictions?job={COLOUR_PROBE_JOB}", 0)
    page.wait_for_function("() => document.body.textContent.includes('probe 1')", timeout=30_000)
    grid = page.locator('[data-testid="stDataFrame"]').first
    shots: list[bytes] = []
    for _ in range(40):  # the canvas is painted a frame or more after the DOM: two shots alike
        shots.append(grid.screenshot(path=SCREENSHOTS / "colour-probe.png", animations="disabled"))
        if len(shots) > 1 and shots[-1] == shots[-2]:
            break
    image = Image.open(io.BytesIO(shots[-1]))
    half_wrong, nearly_right = row_tint(image, 1), row_tint(image, 2)
    assert half_wrong and nearly_right, "a CER cell of the probe is not coloured"
    redness = [r - g for r, g, _ in (half_wrong, nearly_right)]
    assert redness[0] > redness[1] + 40, (half_wrong, nearly_right)  # 0.5 is clearly redder than 0.1
    assert nearly_right[1] > nearly_right[0], nearly_right  # 0.1 reads green
    assert half_wrong[0] >= half_wrong[1] - 10, half_wrong  # 0.5 does not read green (yellow-orange)


@contextmanager
def image_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that answers every GET with a 1x1 PNG and records the path asked for."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []
    pixel = io.BytesIO()
    Image.new("RGB", (1, 1)).save(pixel, format="PNG")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(pixel.getvalue())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()


def test_markdown_a_job_wrote_makes_the_browser_load_nothing(dashboard, page):
    """A job whose name, scorer title and config are Markdown images pointing at a local server: on
    no page does the browser ask that server for anything (and it would: the control fetch is seen)."""
    with image_server() as (beacon, hits):
        markdown = f"![beacon]({beacon}/beacon.png)"
        scorers = {"quality": {"title": markdown, "higher_is_better": False, "bounds": [None, None]}}
        store = SQLiteStore(dashboard.db)
        config = {"scorers": scorers, "rendering": markdown, "model_inputs": {"0": "x"}}
        store.start_job("md-job", name=markdown, config=config)
        store.write_predictions(
            [
                PredictionRow("md-job", 1, step, i, "p", "x", "x", scores={"quality": 0.5})
                for step in (1, 2)
                for i in (0, 1)
            ]
        )
        store.close()
        loaded = {}

        def loads_nothing(page, title: str) -> None:
            page.wait_for_function("s => document.body.textContent.includes(s)", arg="beacon", timeout=30_000)
            assert_no_exception(page, title)
            loaded[title] = list(hits)

        walk_the_pages(page, dashboard.url, "md-job", (0, 0, 0, 0), loads_nothing)
        assert loaded == {title: [] for title in TITLES}  # no request at all
        page.evaluate("url => fetch(url).then(r => r.status)", f"{beacon}/control.png")
        assert hits == ["/control.png"]  # the server would have seen a request: the check can fail
