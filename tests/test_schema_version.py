"""A package newer than the Supabase database's migrations fails at train begin, naming the fix.

The database here is what a user has after `pip install -U` without `supabase db push`: every
migration but the newest, on real PostgreSQL behind the PostgREST-protocol test server.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from devtools.local_postgres import Postgres, apply_migrations, migration_files
from predictions import ConfigError, PredictionsCallback, RolloutRecorder
from predictions.__main__ import main
from predictions.delivery.outbox import Key, Outbox
from predictions.errors import StoreError
from predictions.store.records import PredictionRow
from predictions.store.supabase import SupabaseStore
from predictions.store.supabase_schema import FIRST_VERSIONED, SCHEMA_MIGRATION, SCHEMA_VERSION
from tests import helpers_training as h
from tests.helpers_app import APP, assert_no_exception
from tests.helpers_outbox import kept, refused
from tests.pg_fixtures import EMAIL_A, PASSWORD, USER_A, acting_as, login_as, service_store, user_store
from tests.postgrest_server import PostgrestTestServer
from tests.test_rollout_recorder import begin

NEWEST = migration_files()[-1]
VERSION_FUNCTION = re.compile(
    r"create or replace function public\.predictions_schema_version\(\)[^;]*?select '(\d{14})'::text",
    re.IGNORECASE | re.DOTALL,
)
OLD_JOB = "old-job"


def test_the_client_needs_the_newest_migration_and_every_later_one_redefines_the_version():
    """A migration added later must redefine predictions_schema_version() to return its own version
    and move SCHEMA_MIGRATION to it; this fails until both are done."""
    assert NEWEST.name == SCHEMA_MIGRATION, (
        "set SCHEMA_MIGRATION (supabase_schema.py) to the newest migration"
    )
    versioned = [path for path in migration_files() if path.name >= FIRST_VERSIONED]
    assert versioned[0].name == FIRST_VERSIONED
    for path in versioned:
        returned = VERSION_FUNCTION.findall(path.read_text())
        assert returned == [path.name.partition("_")[0]], (
            f"{path.name} must redefine predictions_schema_version()"
        )


def test_every_api_role_reads_the_migrated_databases_version(migrated_database):
    for role in ("anon", "authenticated", "service_role"):
        with acting_as(migrated_database, role, USER_A) as conn:
            assert conn.execute("select public.predictions_schema_version()").fetchone() == (SCHEMA_VERSION,)


DELETED_RUNS = "20261207103000"
"""The migration that gave every row a `run` column: the writer sends it on every row."""


@contextmanager
def api_before(postgres: Postgres, version: str) -> Iterator[tuple[PostgrestTestServer, str]]:
    """The API over a database with the migrations before `version`, holding a job an earlier version
    wrote."""
    conninfo = postgres.create_database("predictions_behind")
    apply_migrations(conninfo, before=version)
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "insert into training_jobs (id, user_id, name) values (%s, %s, 'Old job')", (OLD_JOB, USER_A)
        )
        conn.execute(
            "insert into training_predictions (job_id, user_id, epoch, step, sample_index, prompt,"
            " prediction, ground_truth, char_error_rate, exact_match)"
            " values (%s, %s, 1, 4, 0, 'p', 'x', 'y', 0.5, 0)",
            (OLD_JOB, USER_A),
        )
    try:
        with PostgrestTestServer(login_as(conninfo, "authenticator")) as server:
            server.add_user(EMAIL_A, PASSWORD, USER_A)
            yield server, conninfo
    finally:
        postgres.drop_database(conninfo)


@pytest.fixture(scope="module")
def behind(postgres: Postgres) -> Iterator[tuple[PostgrestTestServer, str]]:
    """Upgraded without `supabase db push` since the deleted runs: rows would carry a column it lacks."""
    with api_before(postgres, DELETED_RUNS) as api:
        yield api


@pytest.fixture(scope="module")
def one_behind(postgres: Postgres) -> Iterator[tuple[PostgrestTestServer, str]]:
    """Every migration but the newest."""
    with api_before(postgres, NEWEST.name.partition("_")[0]) as api:
        yield api


def counts(conninfo: str) -> tuple[int, int, int]:
    with psycopg.connect(conninfo) as conn:
        tables = ("training_predictions", "training_jobs", "training_rollouts")
        return tuple(conn.execute(f"select count(*) from {table}").fetchone()[0] for table in tables)


@pytest.mark.parametrize("api", ["behind", "one_behind"])
def test_a_run_against_a_database_behind_the_package_fails_before_step_1_naming_the_fix(
    api, request, tmp_path, monkeypatch
):
    server, conninfo = request.getfixturevalue(api)
    outbox = tmp_path / "outbox.db"
    monkeypatch.setenv("PREDICTIONS_SPOOL", str(outbox))
    before = counts(conninfo)
    recorder = h.EventRecorder()
    callback = PredictionsCallback(
        h.pairs(6, seed=1), num_samples=3, max_new_tokens=2, store=service_store(server)
    )
    trainer = h.trainer(tmp_path, [callback, recorder])
    with pytest.raises(ConfigError, match=r"supabase db push.*supabase/migrations/<file>") as raised:
        trainer.train()
    assert f"needs every one up to {SCHEMA_MIGRATION}" in str(raised.value)
    assert trainer.state.global_step == 0 and "on_step_begin" not in recorder.events
    assert counts(conninfo) == before, "nothing written"
    assert not outbox.exists() or (kept(outbox), refused(outbox)) == ([], []), "nothing kept or quarantined"


def test_a_rollout_recorder_against_it_fails_at_train_begin(behind, tmp_path, monkeypatch):
    server, conninfo = behind
    monkeypatch.setenv("PREDICTIONS_SPOOL", str(tmp_path / "outbox.db"))
    before = counts(conninfo)
    with pytest.raises(ConfigError, match="supabase db push"):
        begin(RolloutRecorder(store=service_store(server)), tmp_path)
    assert counts(conninfo) == before


def test_what_it_would_have_answered_each_write_is_postgrests_schema_cache_error(behind):
    """Without the check, the current writer's rows name a column the database lacks: PGRST204, a
    refusal for good (the rows quarantined), and a function it lacks is PGRST202."""
    server, _ = behind
    store = service_store(server)
    with pytest.raises(StoreError) as refused_write:
        store.write_predictions([PredictionRow("job", 1, 1, 0, "p", "x", "y", run="r1")])
    assert (refused_write.value.code, str(refused_write.value).split(": ", 1)[1]) == (
        "PGRST204",
        "Could not find the 'run' column of 'training_predictions' in the schema cache (code PGRST204)",
    )
    reply = server.request(
        "POST", "/rest/v1/rpc/predictions_schema_version", json={}, headers={"apikey": server.service_key}
    )
    assert reply.status_code == 404
    assert reply.json() == {
        "code": "PGRST202",
        "message": "Could not find the function public.predictions_schema_version without parameters in the "
        "schema cache",
        "details": "Searched for the function public.predictions_schema_version without parameters or with a "
        "single unnamed json/jsonb parameter, but no matches were found in the schema cache.",
        "hint": None,
    }
    store.close()


def test_a_current_database_passes_the_check_with_one_request_once(postgrest):
    store = service_store(postgrest)
    postgrest.api.calls.clear()
    store.check_can_write(None)
    store.check_can_write(None)  # the next run of a search in the same process asks nothing
    assert postgrest.api.calls == [("POST", "/rest/v1/rpc/predictions_schema_version")]
    store.close()


def test_a_database_whose_newest_migration_is_older_names_its_version(postgrest, supabase_database):
    with psycopg.connect(supabase_database) as conn:
        conn.execute(
            "create or replace function public.predictions_schema_version() returns text language sql"
            " stable set search_path = '' as $$ select '20261207105959'::text $$"
        )
    store = service_store(postgrest)
    try:
        assert "its newest migration is 20261207105959" in store.schema_problem()
        assert "each file newer than 20261207105959" in store.schema_problem()
    finally:
        with psycopg.connect(supabase_database) as conn:
            conn.execute(VERSION_FUNCTION.search(NEWEST.read_text()).group(0) + "$$")
        store.close()
    assert service_store(postgrest).schema_problem() is None


def test_the_dashboard_says_so_once_and_still_reads_what_the_database_has(behind, monkeypatch):
    server, _ = behind
    monkeypatch.setenv("SUPABASE_URL", server.url)
    monkeypatch.setenv("SUPABASE_KEY", server.service_key)
    monkeypatch.setenv("PREDICTIONS_USER_ID", USER_A)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["job"] = OLD_JOB
    at.run()
    assert_no_exception(at)
    (warning,) = at.warning
    assert "supabase db push" in warning.value and "deleting are off" in warning.value
    assert not at.error and at.get("vega_lite_chart"), "the job's trends still read"
    assert not [e for e in at.sidebar.expander if "Delete" in e.label]


def test_spool_replay_into_it_keeps_the_calls_pending_and_names_the_fix(
    behind, tmp_path, monkeypatch, capsys
):
    """Calls kept while the store was down, replayed after the upgrade but before the push: each row
    would be refused for good (PGRST204) and quarantined; they wait for the push instead."""
    server, conninfo = behind
    for name, value in {"SUPABASE_URL": server.url, "SUPABASE_KEY": server.service_key}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREDICTIONS_USER_ID", USER_A)
    monkeypatch.setenv("PREDICTIONS_SPOOL", str(tmp_path / "outbox.db"))
    store = service_store(server)
    key = Key(*store.outbox_key())
    rows = [PredictionRow("kept", 1, 4, i, "p", "x", user_id=USER_A, run="r1").as_dict() for i in range(3)]
    Outbox(tmp_path / "outbox.db").append(key, [{"op": "write_predictions", "rows": rows}])
    before = counts(conninfo)
    assert main(["spool", "replay"]) == 2
    assert "supabase db push" in capsys.readouterr().out
    assert len(kept(tmp_path / "outbox.db", key)) == 1 and refused(tmp_path / "outbox.db") == []
    assert counts(conninfo) == before
    store.close()


def test_after_the_push_the_same_dashboard_and_store_work_without_a_restart(postgres, monkeypatch):
    with api_before(postgres, DELETED_RUNS) as (server, conninfo):
        for name, value in {"SUPABASE_URL": server.url, "SUPABASE_KEY": server.service_key}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PREDICTIONS_USER_ID", USER_A)
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["job"] = OLD_JOB
        at.run()
        store = service_store(server)
        with pytest.raises(ConfigError, match="supabase db push"):
            store.check_can_write(None)
        assert at.warning and not [e for e in at.sidebar.expander if "Delete" in e.label]
        apply_migrations(conninfo)  # what `supabase db push` does
        at.run()
        assert_no_exception(at)
        assert not at.warning and [e for e in at.sidebar.expander if "Delete" in e.label]
        store.check_can_write(None)
        store.close()


def test_a_trainer_with_an_ingest_key_is_told_too(behind):
    """The publishable key with an ingest key asks as `anon`, which may call the version function."""
    server, _ = behind
    owner = user_store(server, USER_A)
    secret = owner.create_ingest_key(f"laptop-{uuid.uuid4().hex[:8]}")
    trainer_store = SupabaseStore(server.url, server.anon_key, ingest_key=secret)
    with pytest.raises(ConfigError, match="supabase db push"):
        trainer_store.check_can_write(None)
    trainer_store.close()
    owner.close()
