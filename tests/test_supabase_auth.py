"""Dashboard sign-in: an anon key, Supabase Auth's password grant through supabase-py, own jobs only."""

from __future__ import annotations

import pytest

from predictions.errors import AuthError
from predictions.store.base import PredictionRow, sign_in_of, signed_in_email
from predictions.store.supabase import SupabaseStore, jwt_claims
from tests.pg_fixtures import EMAIL_A, EMAIL_B, PASSWORD, USER_A, USER_B, service_store


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
    session = dashboard._client.auth.get_session()
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
