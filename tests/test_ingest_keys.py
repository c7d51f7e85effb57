"""Ingest keys: a trainer writes as the key's user with only the anon key; revoked keys are refused;
secrets are stored nowhere; anon and other users' keys reach nothing. Real Postgres, through the
PostgREST emulator and supabase-py."""

from __future__ import annotations

import hashlib

import httpx
import psycopg
import pytest

from predictions import PredictionsCallback
from predictions.errors import AuthError, ConfigError, StoreError
from predictions.store import open_store
from predictions.store.ingest_keys import SECRET_PREFIX
from predictions.store.records import PageQuery, PredictionRow
from predictions.store.supabase import SupabaseStore
from tests.helpers import prediction_rows
from tests.pg_fixtures import USER_A, USER_B, acting_as, user_store
from tests.test_callback import SAMPLES, begin


def rows(job_id: str, prediction: str, steps=(1, 2)) -> list[PredictionRow]:
    return prediction_rows(
        job_id, steps=steps, samples=2, prompt="prompt ", prediction=prediction, truth="truth"
    )


def trainer_env(monkeypatch, server, secret: str, key: str | None = None) -> None:
    """What a training machine sets: the URL, the anon (or publishable) key and an ingest key."""
    monkeypatch.setenv("SUPABASE_URL", server.url)
    monkeypatch.setenv("SUPABASE_KEY", key or server.anon_key)
    monkeypatch.setenv("PREDICTIONS_INGEST_KEY", secret)
    monkeypatch.delenv("PREDICTIONS_USER_ID", raising=False)


def create_key(server, user_id: str, label: str) -> str:
    owner = user_store(server, user_id)
    secret = owner.create_ingest_key(label)
    owner.close()
    return secret


@pytest.fixture
def keys(postgrest):
    """The API over empty tables, ingest keys included."""
    return postgrest


@pytest.mark.parametrize("project_key", ["anon_key", "publishable_key"])
def test_an_ingest_key_writes_as_its_owner_with_only_the_anon_key(keys, monkeypatch, tmp_path, project_key):
    secret = create_key(keys, USER_A, "gpu-box-1")
    assert secret.startswith(SECRET_PREFIX) and len(secret) > 40
    trainer_env(monkeypatch, keys, secret, getattr(keys, project_key))
    trainer = open_store(env_file=tmp_path / "absent.env")
    assert isinstance(trainer, SupabaseStore) and trainer.ingest_key_label == "gpu-box-1"
    first_request = len(keys.api.headers)  # not calls: another test may have cleared those
    trainer.start_job("run-1", name="Run one", config={"lr": 0.1})
    trainer.write_predictions(rows("run-1", "ada's answer"))
    scored = PredictionRow("run-1", 3, 3, 0, "p", "x", scores={"bleu": 0.25}, metadata={"topic": "maths"})
    trainer.write_predictions([scored])  # columns added by later migrations flow through the key too
    trainer.finish_job("run-1")
    with pytest.raises(AuthError):
        trainer.list_jobs()  # an ingest key writes; it reads nothing
    trainer.close()
    # a legacy anon key is a JWT of the anon role; a publishable key is no JWT and goes in apikey only
    jwt_key = project_key == "anon_key"
    sent = {headers.get("authorization") for headers in keys.api.headers[first_request:]}
    assert sent == ({f"Bearer {keys.anon_key}"} if jwt_key else {None})
    owner = user_store(keys, USER_A)
    (job,) = owner.list_jobs()
    assert (job.id, job.user_id, job.name, job.status, job.round_count) == (
        "run-1",
        USER_A,
        "Run one",
        "finished",
        3,
    )
    assert owner.trends("run-1").config == {"lr": 0.1}
    assert set(owner.predictions_page("run-1").rows["prediction"]) == {"ada's answer", "x"}
    (stored,) = owner.sample_history("run-1", 0).query("step == 3").to_dict("records")
    assert (stored["bleu"], stored["metadata"]) == (0.25, {"topic": "maths"})
    (listed,) = owner.list_ingest_keys()
    assert (listed.label, listed.active, listed.prefix) == ("gpu-box-1", True, secret[:12])
    assert listed.last_used_at is not None
    assert secret not in repr(listed)
    owner.close()
    other = user_store(keys, USER_B)
    assert other.list_jobs() == [] and other.list_ingest_keys() == []
    other.close()


def test_a_revoked_key_is_refused_when_the_store_opens_and_on_every_later_write(keys, monkeypatch, tmp_path):
    secret = create_key(keys, USER_A, "laptop")
    trainer_env(monkeypatch, keys, secret)
    running = open_store(env_file=tmp_path / "absent.env")
    running.write_predictions(rows("run-1", "before"))
    owner = user_store(keys, USER_A)
    owner.revoke_ingest_key("laptop")
    with pytest.raises(AuthError, match="not valid or was revoked"):
        running.write_predictions(rows("run-1", "after", steps=(3,)))
    with pytest.raises(AuthError, match="PREDICTIONS_INGEST_KEY is refused"):
        open_store(env_file=tmp_path / "absent.env")
    with pytest.raises(StoreError, match="no active ingest key 'laptop' of yours"):
        owner.revoke_ingest_key("laptop")
    (listed,) = owner.list_ingest_keys()
    assert not listed.active
    assert owner.trends("run-1").rounds["step"].tolist() == [1, 2]
    second = owner.create_ingest_key("laptop")  # a revoked key's label can be reused
    owner.revoke_ingest_key(owner.list_ingest_keys()[-1].id)  # by id, too
    trainer_env(monkeypatch, keys, second)
    with pytest.raises(AuthError):
        open_store(env_file=tmp_path / "absent.env")
    owner.close()
    running.close()


def test_a_deleted_users_key_is_refused_at_once_and_their_rows_stay(
    keys, supabase_database, monkeypatch, tmp_path
):
    """A user deleted in Supabase Auth takes their keys along (a foreign key with on delete cascade)."""
    carol = keys.add_user("carol@example.com", "carol's password")
    secret = create_key(keys, carol, "carol-box")
    trainer_env(monkeypatch, keys, secret)
    running = open_store(env_file=tmp_path / "absent.env")
    running.write_predictions(rows("carol-run", "before"))
    keys.delete_user(carol)
    with pytest.raises(AuthError, match="not valid or was revoked"):
        running.write_predictions(rows("carol-run", "after", steps=(3,)))
    with pytest.raises(AuthError, match="PREDICTIONS_INGEST_KEY is refused"):
        open_store(env_file=tmp_path / "absent.env")
    with psycopg.connect(supabase_database) as conn:
        assert conn.execute("select count(*) from ingest_keys where user_id = %s", (carol,)).fetchone() == (
            0,
        )
        kept = conn.execute(
            "select count(*) from training_predictions where user_id = %s", (carol,)
        ).fetchone()
    assert kept == (4,)
    running.close()


def test_a_wrong_key_stops_the_run_before_the_first_step(keys, monkeypatch, tmp_path):
    trainer_env(monkeypatch, keys, SECRET_PREFIX + "x" * 43)
    callback = PredictionsCallback(SAMPLES, num_samples=2)
    with pytest.raises(AuthError, match="PREDICTIONS_INGEST_KEY is refused"):
        begin(callback, tmp_path)
    monkeypatch.delenv("SUPABASE_URL")
    with pytest.raises(ConfigError, match="PREDICTIONS_INGEST_KEY is set but SUPABASE_URL"):
        open_store(env_file=tmp_path / "absent.env")


def test_the_secret_is_stored_nowhere_only_its_hash(keys, supabase_database, monkeypatch, tmp_path):
    secret = create_key(keys, USER_A, "gpu-box-1")
    trainer_env(monkeypatch, keys, secret)
    trainer = open_store(env_file=tmp_path / "absent.env")
    trainer.write_predictions(rows("run-1", "answer"))
    trainer.close()
    with psycopg.connect(supabase_database) as conn:
        tables = conn.execute(
            "select format('%I.%I', table_schema, table_name) from information_schema.tables"
            " where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE'"
        ).fetchall()
        dump = "".join(
            conn.execute(f"select coalesce(string_agg(t::text, ''), '') from {name} as t").fetchone()[0]
            for (name,) in tables
        )
        (stored,) = conn.execute("select key_hash from ingest_keys").fetchone()
    assert "public.ingest_keys" in {name for (name,) in tables} and "answer" in dump
    assert secret not in dump and secret[12:] not in dump
    assert stored == hashlib.sha256(secret.encode()).hexdigest()


def test_another_users_key_writes_only_that_users_own_jobs(keys, monkeypatch, tmp_path):
    ada = user_store(keys, USER_A)
    ada.start_job("run-1", name="Ada's run")
    ada.write_predictions(rows("run-1", "ada's answer"))
    trainer_env(monkeypatch, keys, create_key(keys, USER_B, "bob-box"))
    bob_trainer = open_store(env_file=tmp_path / "absent.env")
    bob_trainer.start_job("run-1", name="Bob's run")
    bob_trainer.write_predictions(rows("run-1", "bob's answer", steps=(1, 2, 3)))
    bob_trainer.write_predictions([PredictionRow("run-1", 9, 9, 0, "p", "planted", user_id=USER_A)])
    bob_trainer.finish_job("run-1", status="failed")
    bob_trainer.close()
    (job,) = ada.list_jobs()
    assert (job.name, job.status, job.round_count) == ("Ada's run", "running", 2)
    assert set(ada.predictions_page("run-1").rows["prediction"]) == {"ada's answer"}
    with pytest.raises(StoreError, match="no active ingest key 'bob-box' of yours"):
        ada.revoke_ingest_key("bob-box")
    ada.close()
    bob = user_store(keys, USER_B)
    (job,) = bob.list_jobs()
    assert (job.name, job.status, job.round_count) == ("Bob's run", "failed", 4)
    bobs = bob.predictions_page("run-1", PageQuery(limit=100)).rows
    assert set(bobs["prediction"]) == {"bob's answer", "planted"}
    bob.close()


def call(server, function: str, arguments: dict, token: str | None = None) -> httpx.Response:
    headers = {"apikey": server.anon_key}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return server.request("POST", f"/rest/v1/rpc/{function}", json=arguments, headers=headers)


def test_anon_reaches_nothing_and_the_key_table_is_closed(keys, supabase_database):
    secret = create_key(keys, USER_A, "gpu-box-1")
    token_b = keys.access_token(USER_B)
    for function, arguments in [
        ("ingest_key_create", {"p_label": "mine", "p_secret": "s" * 40}),
        ("ingest_key_list", {}),
        ("ingest_key_revoke", {"p_key": "gpu-box-1"}),
    ]:
        response = call(keys, function, arguments)
        assert (response.status_code, response.json()["code"]) == (401, "42501"), function
    for function, arguments in [
        ("ingest_key_owner", {"p_key": secret}),
        ("ingest_key_hash", {"p_secret": secret}),
        (
            "ingest_upsert",
            {"p_table": "training_jobs", "p_conflict": "{user_id,id}", "p_owner": USER_B, "p_rows": []},
        ),
    ]:
        for token in (None, token_b):
            response = call(keys, function, arguments, token)
            assert response.status_code in (401, 403) and response.json()["code"] == "42501", function
    wrong = call(keys, "ingest_whoami", {"p_key": secret + "x"})
    assert (wrong.status_code, wrong.json()["message"]) == (401, "the ingest key is not valid or was revoked")
    assert call(keys, "ingest_whoami", {"p_key": secret}).json()["user_id"] == USER_A
    for role, user in (("anon", None), ("authenticated", USER_A)):
        with (
            acting_as(supabase_database, role, user) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("select count(*) from ingest_keys")
    anon = SupabaseStore(keys.url, keys.anon_key)
    with pytest.raises(AuthError, match="sign in first"):
        anon.create_ingest_key("mine")
    anon.close()


def test_labels_are_checked_and_unique_among_active_keys(keys):
    owner = user_store(keys, USER_A)
    with pytest.raises(ConfigError, match="label='  ' is not a key label"):
        owner.create_ingest_key("  ")
    owner.create_ingest_key(" box ")
    with pytest.raises(StoreError, match="an active ingest key is labelled 'box' already"):
        owner.create_ingest_key("box")
    assert [key.label for key in owner.list_ingest_keys()] == ["box"]
    owner.close()


def test_rollouts_are_written_through_the_key_as_its_owner(keys, monkeypatch, tmp_path):
    from tests.test_security import rollouts

    trainer_env(monkeypatch, keys, create_key(keys, USER_A, "rl-box"))
    trainer = open_store(env_file=tmp_path / "absent.env")
    trainer.start_job("grpo-1", name="GRPO")
    trainer.write_rollouts(rollouts("grpo-1"))
    trainer.write_rollouts(rollouts("grpo-1"))  # a replay: the natural key keeps one copy
    trainer.close()
    owner = user_store(keys, USER_A)
    stored = owner.prompt_rollouts("grpo-1", "q0")
    assert stored["completion"].tolist() == ["grpo-1 completion 0", "grpo-1 completion 1"]
    assert owner.rollout_trends("grpo-1").steps["rollout_count"].tolist() == [2]
    owner.close()
    other = user_store(keys, USER_B)
    assert other.prompt_rollouts("grpo-1", "q0").empty
    other.close()
