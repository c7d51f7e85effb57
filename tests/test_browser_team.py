"""The team dashboard in a real browser, as two people use it: `streamlit run app.py` with the
publishable key against the Supabase emulation (tests/postgrest_server.py), headless Chromium.

A signed-in session lasts across a reload and a `?job=` link opened in a new tab; signing out in one
tab signs both out (a live-polling tab by itself, without a reload); revoking a key asks first; another
user's job id says so.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest

from tests.helpers_app import streamlit_server
from tests.helpers_browser import settle
from tests.pg_fixtures import EMAIL_A, PASSWORD, USER_A, USER_B, service_store, user_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIGNED_IN = f"Signed in as {EMAIL_A}"
TIMEOUT_MS = 60_000


def team_dashboard(postgrest) -> AbstractContextManager[str]:
    """`streamlit run app.py` as a team runs it: the project URL and its publishable key."""
    env = {"SUPABASE_URL": postgrest.url, "SUPABASE_KEY": postgrest.publishable_key}
    return streamlit_server({**env, "PREDICTIONS_INGEST_KEY": None, "PREDICTIONS_USER_ID": None})


def seed(postgrest) -> None:
    for user_id, job_id in ((USER_A, "ada-run"), (USER_B, "bob-run")):
        writer = service_store(postgrest, user_id)
        writer.start_job(job_id, name=job_id)
        writer.close()
    owner = user_store(postgrest, USER_A)
    owner.create_ingest_key("gpu-box")
    owner.close()


def sidebar_text(page) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text()


def wait_signed_in(page) -> None:
    page.get_by_text(SIGNED_IN).wait_for(timeout=TIMEOUT_MS)


def wait_sign_in_form(page) -> None:
    page.get_by_role("button", name="Sign in").wait_for(timeout=TIMEOUT_MS)


def session_cookies(context) -> list[dict]:
    return [cookie for cookie in context.cookies() if cookie["name"] == "predictions_session"]


def test_a_session_lasts_across_reloads_links_and_tabs_and_ends_everywhere(postgrest, chromium):
    seed(postgrest)
    with team_dashboard(postgrest) as url:
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        first = context.new_page()
        first.goto(url)
        wait_sign_in_form(first)
        first.get_by_role("textbox", name="Email").fill(EMAIL_A)
        first.get_by_role("textbox", name="Password").fill(PASSWORD)
        first.get_by_role("button", name="Sign in").click()
        wait_signed_in(first)
        first.wait_for_function("document.cookie.includes('predictions_session=')", timeout=TIMEOUT_MS)
        (cookie,) = session_cookies(context)
        assert (cookie["sameSite"], cookie["path"], cookie["httpOnly"]) == ("Strict", "/", False)

        first.reload()
        wait_signed_in(first)
        assert first.get_by_role("combobox", name="Job").input_value() == "● ada-run"  # running

        second = context.new_page()
        second.goto(f"{url}/?job=ada-run")
        wait_signed_in(second)
        assert second.get_by_role("combobox", name="Job").input_value() == "● ada-run"  # running

        second.goto(f"{url}/trends?job=bob-run")  # another user's job
        second.get_by_text("No such job, or not yours:").wait_for(timeout=TIMEOUT_MS)
        settle(second)  # the id comes in the element after the warning (counted 0 once, a moment early)
        assert second.get_by_text("bob-run", exact=True).count() == 1

        second.goto(f"{url}/keys")
        second.get_by_role("combobox", name="Key to revoke").click(timeout=TIMEOUT_MS)
        second.get_by_role("option", name="gpu-box").click()
        second.get_by_text("Revoke gpu-box? Training machines using it").wait_for(timeout=TIMEOUT_MS)
        owner = user_store(postgrest, USER_A)
        assert [key.active for key in owner.list_ingest_keys()] == [True], "asked first: nothing revoked yet"
        second.get_by_role("button", name="Yes, revoke it").click()
        second.get_by_text("Revoked gpu-box: machines using it can no longer write.").wait_for(
            timeout=TIMEOUT_MS
        )
        assert [key.active for key in owner.list_ingest_keys()] == [False]
        owner.close()

        second.get_by_role("button", name="Sign out").click()
        wait_sign_in_form(second)
        second.wait_for_function("!document.cookie.includes('predictions_session=')", timeout=TIMEOUT_MS)
        assert session_cookies(context) == []
        wait_sign_in_form(first)  # the first tab, live-polling, stops showing data by itself
        first.reload()
        wait_sign_in_form(first)
        assert SIGNED_IN not in sidebar_text(first)
        context.close()
