"""Dashboard sign-in: an anon key, Supabase Auth's password grant through supabase-py, own jobs only."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from postgrest import APIError
from supabase_auth._sync import gotrue_client

from predictions.errors import AuthError
from predictions.store.protocol import sign_in_of, signed_in_email
from predictions.store.records import PredictionRow
from predictions.store.supabase import SupabaseStore
from predictions.store.supabase_rest import jwt_claims
from supabase import create_client
from tests.pg_fixtures import EMAIL_A, EMAIL_B, PASSWORD, USER_A, USER_B, service_store
from tests.postgrest_server import TOKEN_LIFETIME_S


@pytest.fixture
def jobs_of_two_users(postgrest):
    """One job each for users A and B, written by a training machine."""
    for user_id, job_id in ((USER_A, "ada-run"), (USER_B, "bob-run")):
        writer = service_store(postgrest, user_id)
        writer.start_job(job_id, name=job_id.title())
        writer.write_predictions([PredictionRow(job_id, 1, 10, 0, "prompt", "answer", "answer", 1.0)])
        writer.close()
    return postgrest


@pytest.fixture
def dashboard(jobs_of_two_users):
    store = SupabaseStore(jobs_of_two_users.url, jobs_of_two_users.anon_key)
    yield store
    store.close()


def test_signing_in_shows_only_that_users_jobs(dashboard):
    assert sign_in_of(dashboard) is dashboard  # Supabase implements the sign-in protocol
    assert dashboard.requires_sign_in and signed_in_email(dashboard) is None
    dashboard.sign_in(EMAIL_A, PASSWORD)
    assert not dashboard.requires_sign_in
    assert signed_in_email(dashboard) == EMAIL_A
    (job,) = dashboard.list_jobs()
    assert (job.id, job.name, job.user_id, job.latest_step) == ("ada-run", "Ada-Run", USER_A, 10)
    assert dashboard.trends("bob-run").rounds.empty


def test_the_session_token_is_the_one_supabase_auth_issued(dashboard):
    dashboard.sign_in(EMAIL_B, PASSWORD)
    session = dashboard._session.auth.get_session()
    claims = jwt_claims(session.access_token)
    assert (claims["role"], claims["sub"], claims["email"]) == ("authenticated", USER_B, EMAIL_B)
    assert [job.id for job in dashboard.list_jobs()] == ["bob-run"]


def test_a_signed_in_user_writes_rows_they_own(dashboard, jobs_of_two_users):
    dashboard.sign_in(EMAIL_A, PASSWORD)
    dashboard.start_job("laptop-run", name="From the dashboard")
    dashboard.write_predictions([PredictionRow("laptop-run", 1, 1, 0, "p", "x")])
    service = service_store(jobs_of_two_users, None)
    assert {job.id: job.user_id for job in service.list_jobs()}["laptop-run"] == USER_A
    service.close()


@pytest.mark.parametrize(
    ("email", "password", "reason"),
    [
        (EMAIL_A, "wrong password", "Invalid login credentials"),
        ("nobody@example.com", PASSWORD, "Invalid login credentials"),
        (EMAIL_A, "", "You must provide either an email or phone number and a password"),
    ],
)
def test_refused_credentials_raise_a_readable_auth_error(dashboard, email, password, reason):
    with pytest.raises(AuthError, match=f"sign-in as {email} failed: {reason}"):
        dashboard.sign_in(email, password)
    assert dashboard.requires_sign_in and dashboard.signed_in_email is None
    with pytest.raises(AuthError, match="sign in first"):
        dashboard.list_jobs()


def test_an_unreachable_auth_server_is_an_auth_error_too():
    store = SupabaseStore("http://127.0.0.1:9", "sb_publishable_test")
    with pytest.raises(AuthError, match="cannot reach Supabase Auth"):
        store.sign_in(EMAIL_A, PASSWORD)
    store.close()


def test_a_service_role_key_needs_no_sign_in(jobs_of_two_users):
    store = SupabaseStore(jobs_of_two_users.url, jobs_of_two_users.service_key)
    assert not store.requires_sign_in
    assert {job.id for job in store.list_jobs()} == {"ada-run", "bob-run"}
    store.close()


@pytest.fixture
def short_sessions(postgrest):
    """Supabase Auth issuing sessions that last `lifetime` seconds, for the length of a test."""

    def shorten(lifetime: int) -> None:
        postgrest.api.token_lifetime_s = lifetime

    yield shorten
    postgrest.api.token_lifetime_s = TOKEN_LIFETIME_S


def token_grants(server) -> int:
    return server.api.calls.count(("POST", "/auth/v1/token"))


def five_seconds_later(monkeypatch) -> None:
    """Supabase Auth's client clock, moved on 5 s: it decides by `time.time()` when to refresh a session."""
    moved = time.time() + 5
    monkeypatch.setattr(gotrue_client, "time", SimpleNamespace(time=lambda: moved))


def test_a_signed_in_session_is_refreshed_before_it_expires(jobs_of_two_users, short_sessions, monkeypatch):
    short_sessions(14)  # refreshed once less than 10 s (supabase-py's margin) are left
    dashboard = SupabaseStore(jobs_of_two_users.url, jobs_of_two_users.publishable_key)
    before = token_grants(jobs_of_two_users)
    dashboard.sign_in(EMAIL_A, PASSWORD)
    first = dashboard._session.auth.get_session().access_token
    assert [job.id for job in dashboard.list_jobs()] == ["ada-run"]
    assert token_grants(jobs_of_two_users) == before + 1
    short_sessions(TOKEN_LIFETIME_S)  # the renewed session must not be due itself, however slow the machine
    five_seconds_later(monkeypatch)
    assert [job.id for job in dashboard.list_jobs()] == ["ada-run"]
    assert token_grants(jobs_of_two_users) == before + 2
    renewed = jobs_of_two_users.api.headers[-1]["authorization"].removeprefix("Bearer ")
    # the second grant is the refresh; the request carries the session's current token (within one
    # second the emulator may mint the same token text again, so the text alone cannot tell)
    assert renewed == dashboard._session.auth.get_session().access_token and first
    assert jwt_claims(renewed)["sub"] == USER_A
    dashboard.close()


def test_a_given_session_outlives_its_access_token(jobs_of_two_users, short_sessions):
    short_sessions(-60)  # a session whose access token expired a minute ago
    session = jobs_of_two_users.session(EMAIL_B)
    short_sessions(TOKEN_LIFETIME_S)  # the renewed session lasts, however slow this machine is
    trainer = SupabaseStore(
        jobs_of_two_users.url,
        jobs_of_two_users.anon_key,
        access_token=session["access_token"],
        refresh_token=session["refresh_token"],
    )
    assert trainer.signed_in_email == EMAIL_B
    trainer.write_predictions([PredictionRow("bob-run", 2, 20, 0, "prompt", "later answer")])
    assert trainer.rounds("bob-run")["step"].tolist() == [10, 20]
    trainer.close()
    stale = SupabaseStore(
        jobs_of_two_users.url, jobs_of_two_users.anon_key, access_token=session["access_token"]
    )
    with pytest.raises(AuthError, match="JWT expired"):
        stale.list_jobs()  # without its refresh token a session cannot be renewed
    stale.close()
    with pytest.raises(AuthError, match="the given session failed: Invalid Refresh Token"):
        SupabaseStore(
            jobs_of_two_users.url,
            jobs_of_two_users.anon_key,
            access_token=session["access_token"],
            refresh_token="used-or-unknown",
        )


def test_new_api_keys_travel_in_the_apikey_header_only(jobs_of_two_users):
    server = jobs_of_two_users
    raw = create_client(server.url, server.publishable_key)
    with pytest.raises(APIError, match="Expected 3 parts in JWT; got 1"):
        raw.rpc("predictions_list_jobs", {}).execute()  # supabase-py alone sends the key as a JWT
    admin = SupabaseStore(server.url, server.secret_key)
    assert {job.id for job in admin.list_jobs()} == {"ada-run", "bob-run"}
    assert "authorization" not in server.api.headers[-1]
    assert server.api.headers[-1]["apikey"] == server.secret_key
    admin.close()
    dashboard = SupabaseStore(server.url, server.publishable_key)
    with pytest.raises(AuthError, match="sign in first"):
        dashboard.list_jobs()
    before_sign_in = len(server.api.headers)
    dashboard.sign_in(EMAIL_B, PASSWORD)
    for auth_request in server.api.headers[before_sign_in:]:  # Supabase Auth gets the key as apikey only
        assert "authorization" not in auth_request and auth_request["apikey"] == server.publishable_key
    assert [job.id for job in dashboard.list_jobs()] == ["bob-run"]
    sent = server.api.headers[-1]
    assert sent["apikey"] == server.publishable_key
    assert jwt_claims(sent["authorization"].removeprefix("Bearer "))["sub"] == USER_B
    dashboard.close()


def test_a_kept_session_resumes_in_another_store_and_a_sign_out_ends_it_everywhere(jobs_of_two_users):
    """What the dashboard does for a reload or a new tab (browser_session), without the browser."""
    url, key = jobs_of_two_users.url, jobs_of_two_users.publishable_key
    first, second, late = (SupabaseStore(url, key) for _ in range(3))
    first.sign_in(EMAIL_A, PASSWORD)
    kept = first.session_tokens()
    second.resume(*kept)
    assert second.signed_in_email == EMAIL_A and [job.id for job in second.list_jobs()] == ["ada-run"]
    assert second.still_signed_in()
    first.sign_out()
    assert first.requires_sign_in
    assert not second.still_signed_in() and second.requires_sign_in
    with pytest.raises(AuthError):
        late.resume(*kept)
    assert late.requires_sign_in
    for store in (first, second, late):
        store.close()
