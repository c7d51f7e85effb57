"""A job's tags and note on both stores: set from training where the job has none, replaced by its
owner only, kept through a resume, storable whatever the text (hypothesis), refused to anyone else by
row-level security (the PostgREST test server over real PostgreSQL)."""

from __future__ import annotations

import itertools
import sqlite3

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from predictions import PredictionsConfig
from predictions.delivery.writer import Writer
from predictions.errors import ConfigError, StoreError
from predictions.store import SQLiteStore
from predictions.store.job_details import MAX_NOTE_CHARS, MAX_TAG_CHARS, MAX_TAGS, check_note, check_tags
from predictions.store.records import LOCAL_USER_ID, Job
from predictions.store.storable import storable_details
from tests.conftest import make_store
from tests.pg_fixtures import USER_A, USER_B, service_store, user_store

ANY_CHAR = st.characters(exclude_categories=())
"""Every code point, surrogates and NUL included."""
TEXT = st.text(ANY_CHAR, max_size=50) | st.sampled_from(
    ["![x](http://127.0.0.1:9/a.png)", "<b>x</b>", "\x00"]
)
JOBS = itertools.count()


def job(store, job_id: str) -> Job:
    (found,) = [listed for listed in store.list_jobs() if listed.id == job_id]
    return found


def test_tags_and_a_note_from_the_start_are_listed_and_a_resume_keeps_the_edited_ones(store):
    store.start_job("run-1", name="Run one", tags=["baseline", "lr 3e-4"], note="first try")
    assert (job(store, "run-1").tags, job(store, "run-1").note) == (("baseline", "lr 3e-4"), "first try")
    store.set_job_details("run-1", tags=["keeper"], note="best so far")
    store.start_job("run-1", tags=["baseline"], note="first try")  # resumed, or the start replayed
    assert (job(store, "run-1").tags, job(store, "run-1").note) == (("keeper",), "best so far")
    store.set_job_details("run-1", note="")  # tags left as they are
    assert (job(store, "run-1").tags, job(store, "run-1").note) == (("keeper",), "")
    store.set_job_details("run-1", tags=[])
    store.start_job("run-1", tags=["again"])  # cleared on purpose: a start does not bring them back
    assert (job(store, "run-1").tags, job(store, "run-1").note) == ((), "")


def test_a_job_started_without_them_gets_them_from_a_later_start_and_edits_show_in_the_poll(store):
    store.start_job("plain")
    assert (job(store, "plain").tags, job(store, "plain").note) == ((), None)
    store.finish_job("plain")
    store.start_job("plain", tags=["resumed"], note="now with a note")
    assert job(store, "plain").tags == ("resumed",) and job(store, "plain").note == "now with a note"
    before = store.jobs_version()
    store.set_job_details("plain", tags=["edited"])
    assert store.jobs_version() != before  # the dashboard's poll sees an edit in another session


def test_no_such_job_and_bad_values_are_refused_with_what_is_valid(store):
    with pytest.raises(StoreError, match="no job 'ghost'"):
        store.set_job_details("ghost", tags=["x"])
    store.start_job("real")
    with pytest.raises(ConfigError, match=f"at most {MAX_TAGS} non-empty strings of up to {MAX_TAG_CHARS}"):
        store.set_job_details("real", tags=["x" * (MAX_TAG_CHARS + 1)])
    with pytest.raises(ConfigError, match="a single tag goes in a list"):
        store.set_job_details("real", tags="baseline")
    with pytest.raises(ConfigError, match=f"up to {MAX_NOTE_CHARS:,} characters"):
        store.set_job_details("real", note="n" * (MAX_NOTE_CHARS + 1))
    assert (job(store, "real").tags, job(store, "real").note) == ((), None)


@pytest.mark.parametrize(("backend", "examples"), [("sqlite", 150), ("supabase", 40)])
def test_any_tags_and_note_are_stored_as_checked_and_made_storable(request, backend, examples, tmp_path):
    store = make_store(backend, request, tmp_path)
    store.start_job("tagged")

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tags=st.lists(TEXT, max_size=MAX_TAGS + 2), note=TEXT)
    @example(tags=["a\x00", "a\ud800", " a\n b ", "a  b"], note="line\x00\nline\ud83d")  # two become one
    def stored_as_shown(tags, note):
        try:
            expected = storable_details(check_tags(tags), check_note(note))
        except ConfigError:
            with pytest.raises(ConfigError):
                store.set_job_details("tagged", tags=tags, note=note)
            return
        store.set_job_details("tagged", tags=tags, note=note)
        listed = job(store, "tagged")
        assert (list(listed.tags), listed.note) == expected
        assert all("\x00" not in tag and len(tag) <= MAX_TAG_CHARS for tag in listed.tags)

    stored_as_shown()
    store.close()


def test_the_writer_makes_tags_from_training_storable(tmp_path):
    store = SQLiteStore(tmp_path / "w.db")
    writer = Writer(store)
    writer.start_job("w", name="w", tags=["nul\x00", "ok"], note="half \ud83d emoji")
    writer.close()
    listed = job(store, "w")
    assert (listed.tags, listed.note) == (("nul\ufffd", "ok"), "half \ufffd emoji")
    store.close()


def test_the_options_are_checked_at_construction_and_kept_out_of_the_config():
    config = PredictionsConfig(tags=[" lr sweep ", "lr sweep", "base\nline"], note="  why  ")
    assert (config.tags, config.note) == (("lr sweep", "base line"), "why")
    assert "tags" not in config.as_dict() and "note" not in config.as_dict()
    with pytest.raises(ConfigError, match=r"tags has tag '', which is invalid"):
        PredictionsConfig(tags=["ok", "   "])
    with pytest.raises(ConfigError, match="tags has 21 tags"):
        PredictionsConfig(tags=[f"t{i}" for i in range(21)])
    with pytest.raises(ConfigError, match=r"note=3 is invalid"):
        PredictionsConfig(note=3)


def test_an_older_file_gains_the_columns_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "old.db"
    created = SQLiteStore(path)
    created.start_job("old", name="Old")
    created.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX idx_training_jobs_picker")
        conn.execute("ALTER TABLE training_jobs DROP COLUMN tags")
        conn.execute("ALTER TABLE training_jobs DROP COLUMN note")
    store = SQLiteStore(path)
    assert (job(store, "old").name, job(store, "old").tags, job(store, "old").note) == ("Old", (), None)
    store.set_job_details("old", tags=["kept"])
    assert job(store, "old").tags == ("kept",) and store.owns(job(store, "old"))
    store.close()


def test_the_local_user_owns_every_job_of_a_sqlite_file(sqlite_store):
    sqlite_store.start_job("someone", user_id="11111111-1111-1111-1111-111111111111")
    listed = job(sqlite_store, "someone")
    assert listed.user_id != LOCAL_USER_ID and sqlite_store.owns(listed)


def test_only_the_owner_changes_them_and_a_teammates_admin_reads_them(postgrest):
    ada, bob = user_store(postgrest, USER_A), user_store(postgrest, USER_B)
    ada.start_job("ada-run", tags=["baseline"], note="ada's words")
    admin = service_store(postgrest, user_id=None)  # the secret key: every owner's jobs, owner of none
    (seen,) = admin.list_jobs()
    assert (seen.tags, seen.note, admin.owns(seen)) == (("baseline",), "ada's words", False)
    assert ada.owns(job(ada, "ada-run")) and not bob.owns(seen)
    with pytest.raises(StoreError, match="no job 'ada-run' of yours"):
        bob.set_job_details("ada-run", tags=["hijacked"], user_id=USER_A)  # row-level security
    with pytest.raises(StoreError, match="no job 'ada-run' of yours"):
        bob.set_job_details("ada-run", note="mine now")
    ada.set_job_details("ada-run", tags=["keeper"], note="edited")  # the owner's session token
    assert (job(ada, "ada-run").tags, job(ada, "ada-run").note) == (("keeper",), "edited")
    for store in (ada, bob, admin):
        store.close()


def test_a_direct_update_through_the_api_cannot_bypass_the_limits_or_another_owner(postgrest):
    ada = user_store(postgrest, USER_A)
    ada.start_job("ada-run", tags=["baseline"])
    headers = {"apikey": postgrest.anon_key, "Prefer": "return=minimal"}

    def call(user_id: str, arguments: dict) -> httpx.Response:
        auth = {"Authorization": f"Bearer {postgrest.access_token(user_id)}"}
        body = {"p_job_id": "ada-run", **arguments}
        return postgrest.request(
            "POST", "/rest/v1/rpc/predictions_set_job_details", json=body, headers=headers | auth
        )

    too_many = call(USER_A, {"p_tags": [f"t{i}" for i in range(MAX_TAGS + 1)]})
    assert (too_many.status_code, too_many.json()["message"]) == (400, "tags are invalid")
    too_long = call(USER_A, {"p_note": "n" * (MAX_NOTE_CHARS + 1)})
    assert too_long.json()["message"] == "the note is too long"
    refused = call(USER_B, {"p_tags": ["x"], "p_user_id": USER_A})
    assert refused.json()["message"] == "no job 'ada-run' of yours to tag"
    assert job(ada, "ada-run").tags == ("baseline",)
    ada.close()


def test_a_trainer_with_an_ingest_key_sets_them_on_its_owners_job(postgrest, monkeypatch, tmp_path):
    from predictions import open_store
    from tests.test_ingest_keys import create_key, trainer_env

    trainer_env(monkeypatch, postgrest, create_key(postgrest, USER_A, "gpu-box-1"))
    trainer = open_store(env_file=tmp_path / "absent.env")
    trainer.start_job("keyed", tags=["from the box"], note="started remotely")
    trainer.start_job("keyed", tags=["replayed"], note="ignored")  # the job has them: kept
    trainer.close()
    ada = user_store(postgrest, USER_A)
    assert (job(ada, "keyed").tags, job(ada, "keyed").note) == (("from the box",), "started remotely")
    ada.close()


def test_the_monitor_starts_its_job_with_the_options_tags_and_note(sqlite_store):
    from predictions import PredictionsMonitor
    from tests import helpers_training as h

    tok = h.tokenizer()
    pairs = [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}]
    options = {"num_samples": 2, "max_new_tokens": 2, "store": sqlite_store}
    with PredictionsMonitor(pairs, tokenizer=tok, tags=["loop", "tiny"], note="a plain loop", **options) as m:
        job_id = m.start(h.model(tok=tok))
    listed = job(sqlite_store, job_id)
    assert (listed.tags, listed.note) == (("loop", "tiny"), "a plain loop")
    assert "tags" not in sqlite_store.trends(job_id).config


def test_the_stores_search_finds_a_job_by_a_tag(store):
    store.start_job("a", name="alpha", tags=["Golden Run"])
    store.start_job("b", name="beta", tags=["other"])
    store.start_job("c", name="gamma")
    assert [found.id for found in store.list_jobs(search="golden")] == ["a"]
    assert [found.id for found in store.list_jobs(search="RUN")] == ["a"]
    assert {found.id for found in store.list_jobs(search="a")} == {"a", "b", "c"}  # names match too
