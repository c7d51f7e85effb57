"""Configuration mistakes a team makes with Supabase, each named once with its fix, before any request
runs: a URL copied with its API path, a key of the wrong kind in the wrong variable, a secret key with
an ingest key. And the ones only the server can tell (a wrong ingest key): its hint said once."""

from __future__ import annotations

import pytest

from predictions.errors import AuthError, ConfigError
from predictions.store import open_store
from tests.pg_fixtures import USER_A


def trainer_env(monkeypatch, url: str, key: str, ingest_key: str = "") -> None:
    monkeypatch.setenv("SUPABASE_URL", url)
    monkeypatch.setenv("SUPABASE_KEY", key)
    monkeypatch.setenv("PREDICTIONS_INGEST_KEY", ingest_key)
    monkeypatch.delenv("PREDICTIONS_USER_ID", raising=False)


@pytest.mark.parametrize("path", ["/rest/v1", "/rest/v1/", "/auth/v1"])
def test_a_url_ending_in_an_api_path_names_the_url_to_set(postgrest, monkeypatch, tmp_path, path):
    trainer_env(monkeypatch, postgrest.url + path, postgrest.publishable_key)
    with pytest.raises(ConfigError) as raised:
        open_store(env_file=tmp_path / "absent.env")
    message = str(raised.value)
    assert f"ends in {path.rstrip('/')}" in message and repr(postgrest.url) in message
    assert message.count("SUPABASE_URL") == 1


def test_an_ingest_key_given_as_the_project_key_says_where_each_goes(postgrest, monkeypatch, tmp_path):
    secret = "pmk_" + "x" * 43
    trainer_env(monkeypatch, postgrest.url, secret)
    with pytest.raises(ConfigError, match=r"SUPABASE_KEY holds an ingest key .* PREDICTIONS_INGEST_KEY"):
        open_store(env_file=tmp_path / "absent.env")


def test_a_users_session_token_given_as_the_project_key_is_named(postgrest, monkeypatch, tmp_path):
    trainer_env(monkeypatch, postgrest.url, postgrest.access_token(USER_A))
    with pytest.raises(ConfigError, match=r"a user's session token .* publishable"):
        open_store(env_file=tmp_path / "absent.env")


@pytest.mark.parametrize("secret_key", ["service_key", "secret_key"])
def test_a_secret_key_with_an_ingest_key_is_refused_before_any_request(
    postgrest, monkeypatch, tmp_path, secret_key
):
    trainer_env(monkeypatch, postgrest.url, getattr(postgrest, secret_key), "pmk_" + "y" * 43)
    calls = len(postgrest.api.calls)
    with pytest.raises(ConfigError) as raised:
        open_store(env_file=tmp_path / "absent.env")
    assert "goes with the project's publishable (anon) key" in str(raised.value)
    assert "service_role" in str(raised.value) and "not valid or was revoked" not in str(raised.value)
    assert len(postgrest.api.calls) == calls, "refused before asking the server"


def test_a_wrong_ingest_key_says_where_to_get_one_once(postgrest, monkeypatch, tmp_path):
    trainer_env(monkeypatch, postgrest.url, postgrest.publishable_key, "pmk_" + "z" * 43)
    with pytest.raises(AuthError) as raised:
        open_store(env_file=tmp_path / "absent.env")
    message = str(raised.value)
    assert "not valid or was revoked" in message
    assert message.count("Keys page") == 1, message
