"""Retake the README's screenshots: every page in headless Chromium, after `make demo`.

    make demo                        # trains the two demo runs into .predictions/ (Ctrl-C when done)
    make screenshots                 # .venv/bin/python -m devtools.screenshots

Trends, Samples, Predictions and Compare show the demo's own runs from `--db`. Three pages need data
the demo does not make, built here in a scratch folder: Samples at 1,000 samples (a seeded job), Rollouts
(a real 8-step GRPO run of a tiny model) and Keys (a signed-in user on the Supabase emulation over a
throwaway PostgreSQL). Needs the test environment (`make setup`) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from predictions.store import SQLiteStore
from predictions.store.sqlite import DEFAULT_DB_PATH
from tests.helpers_app import sqlite_env, streamlit_server
from tests.helpers_browser import CHARTS, CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 180_000


def settle(page: Page, charts: int) -> None:
    """Wait for the title, `charts` drawn charts and the end of the script run."""
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=TIMEOUT_MS)
    page.wait_for_function(
        f"n => document.querySelectorAll('{CHARTS}').length >= n", arg=charts, timeout=TIMEOUT_MS
    )
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="hidden", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1500)


def shoot(page: Page, out: Path, name: str, width: int) -> Path:
    """The whole page however tall (capped at 4,000 px), failing on any exception shown on it."""
    errors = page.locator('[data-testid="stException"]').all_inner_texts()
    if errors:
        raise RuntimeError(f"{name}: the page shows an exception: {errors[0][:300]}")
    height = page.evaluate("document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(4000, height + 60)})
    page.wait_for_timeout(800)
    path = out / f"dashboard-{name}.png"
    page.screenshot(path=path)
    page.set_viewport_size({"width": width, "height": 900})
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def demo_jobs(db: Path) -> list[str]:
    """The demo's runs, newest first; the demo writes two."""
    if not db.exists():
        raise SystemExit(f"--db {db}: no such file; run `make demo` first (it writes {DEFAULT_DB_PATH})")
    store = SQLiteStore(db)
    jobs = [job.id for job in store.list_jobs() if job.round_count > 0]
    store.close()
    if len(jobs) < 2:
        raise SystemExit(f"--db {db}: {len(jobs)} job(s) with rounds; `make demo` writes two")
    return jobs


def shoot_demo(browser, db: Path, out: Path, width: int) -> None:
    latest = demo_jobs(db)[0]  # Compare shows it beside the earlier run by default
    pages = [("", 3, "trends"), ("samples", 1, "samples"), ("predictions", 0, "predictions"),
             ("compare", 1, "compare")]  # fmt: skip
    with streamlit_server(sqlite_env(db)) as url:
        page = browser.new_page(viewport={"width": width, "height": 900})
        for path, charts, name in pages:
            page.goto(f"{url}/{path}?job={latest}")
            settle(page, charts)
            shoot(page, out, name, width)
        page.close()


def shoot_scratch(browser, scratch: Path, out: Path, width: int) -> None:
    """Samples at 1,000 samples and a GRPO job's Rollouts page, from a scratch store."""
    from tests import helpers_grpo
    from tests.seeding import write_job

    db = scratch / "scratch.db"
    store = SQLiteStore(db)
    write_job(store, "samples-1000", rounds=30, samples=1000, name="1,000 samples x 30 rounds")
    grpo = helpers_grpo.seed_grpo_job(scratch / "grpo", store, steps=8, name="grpo-tiny")
    store.close()
    with streamlit_server(sqlite_env(db)) as url:
        page = browser.new_page(viewport={"width": width, "height": 900})
        for path, job, charts, name in (("samples", "samples-1000", 1, "samples-1000"),
                                        ("rollouts", grpo, 4, "rollouts")):  # fmt: skip
            page.goto(f"{url}/{path}?job={job}")
            settle(page, charts)
            if name == "samples-1000":  # worst first is a red block at this size: show the spread
                page.get_by_text("By sample", exact=True).first.click()
                settle(page, charts)
            shoot(page, out, name, width)
        page.close()


def shoot_keys(browser, scratch: Path, out: Path, width: int) -> None:
    """The Keys page of a signed-in user holding two keys, one revoked."""
    from devtools.local_postgres import Postgres
    from tests.pg_fixtures import EMAIL_A, PASSWORD, USER_A, login_as, user_store
    from tests.postgrest_server import PostgrestTestServer

    (scratch / "pg").mkdir()
    postgres = Postgres(scratch / "pg")
    try:
        admin = postgres.migrated_database()
        with PostgrestTestServer(login_as(admin, "authenticator")) as api:
            api.add_user(EMAIL_A, PASSWORD, USER_A)
            owner = user_store(api, USER_A)
            owner.create_ingest_key("gpu-box")
            owner.create_ingest_key("old laptop")
            owner.revoke_ingest_key("old laptop")
            owner.close()
            with streamlit_server({"SUPABASE_URL": api.url, "SUPABASE_KEY": api.publishable_key}) as url:
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(f"{url}/keys")
                page.get_by_role("textbox", name="Email").fill(EMAIL_A)
                page.get_by_role("textbox", name="Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_text("Your keys").wait_for(timeout=TIMEOUT_MS)
                page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=TIMEOUT_MS)
                settle(page, 0)
                shoot(page, out, "keys", width)
                page.close()
    finally:
        postgres.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=ROOT / DEFAULT_DB_PATH, help="the demo's SQLite store")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--width", type=int, default=1400, help="viewport width in px (default 1400)")
    parser.add_argument("--only-scratch", action="store_true", help="skip the demo's pages")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="screenshots-") as scratch:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        if not args.only_scratch:
            shoot_demo(browser, args.db.resolve(), args.out, args.width)
        shoot_scratch(browser, Path(scratch), args.out, args.width)
        shoot_keys(browser, Path(scratch), args.out, args.width)
        browser.close()


if __name__ == "__main__":
    main()
