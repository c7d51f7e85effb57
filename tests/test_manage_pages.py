"""Deleting a job from the sidebar, and the Keys page, in Streamlit's AppTest on real stores."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.errors import AppTestError

from predictions.errors import AuthError
from predictions.store import SQLiteStore, open_store
from tests.helpers import prediction_rows
from tests.helpers_app import APP, assert_no_exception, use_sqlite
from tests.pg_fixtures import EMAIL_A, PASSWORD, USER_A, USER_B, service_store, user_store

KEYS = "pages/keys.py"


def write_job(store, job_id: str, prediction: str = "answer") -> None:
    store.start_job(job_id, name=job_id)
    store.write_predictions(
        prediction_rows(job_id, steps=(10,), samples=2, epoch=1, prediction=prediction, truth="answer")
    )


def button(at: AppTest, label: str):
    (found,) = [b for b in at.button if b.label == label]
    return found


@pytest.fixture
def sqlite_app(tmp_path, monkeypatch):
    path = tmp_path / "predictions.db"
    store = SQLiteStore(path)
    for job_id in ("keep", "junk"):
        write_job(store, job_id)
    store.close()
    use_sqlite(monkeypatch, path)
    return path


def test_a_job_is_deleted_from_the_sidebar_only_once_its_id_is_typed(sqlite_app):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["job"] = "junk"
    at.run()
    assert at.sidebar.selectbox(key="job").value == "junk"
    with pytest.raises(AppTestError, match="disabled"):
        at.sidebar.button(key="delete_job").click()
    assert [job.id for job in SQLiteStore(sqlite_app).list_jobs()] == ["junk", "keep"]
    at.sidebar.text_input(key="delete_confirm").input("keep").run()
    assert at.sidebar.button(key="delete_job").disabled, "the id of another job confirms nothing"
    at.sidebar.text_input(key="delete_confirm").input("junk").run()
    at.sidebar.button(key="delete_job").click().run()
    assert_no_exception(at)
    assert at.sidebar.selectbox(key="job").options == ["● keep"]
    store = SQLiteStore(sqlite_app)
    assert [job.id for job in store.list_jobs()] == ["keep"]
    assert store.predictions_page("junk").total_count == 0
    store.close()


def test_the_keys_page_of_the_embedded_store_says_it_needs_none(sqlite_app):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(KEYS).run()
    assert_no_exception(at)
    assert "the embedded SQLite store needs none" in at.info[0].value


@pytest.fixture
def signed_in_app(postgrest, monkeypatch):
    """The dashboard with the anon key, signed in as user A."""
    monkeypatch.setenv("SUPABASE_URL", postgrest.url)
    monkeypatch.setenv("SUPABASE_KEY", postgrest.publishable_key)
    monkeypatch.delenv("PREDICTIONS_INGEST_KEY", raising=False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="sign_in_email").input(EMAIL_A)
    at.text_input(key="sign_in_password").input(PASSWORD)
    at.button[0].click().run()
    assert_no_exception(at)
    return at


def test_keys_are_created_shown_once_listed_and_revoked_on_the_keys_page(
    postgrest, signed_in_app, monkeypatch
):
    at = signed_in_app
    at.switch_page(KEYS).run()
    assert "No keys yet." in [caption.value for caption in at.caption]
    at.text_input[0].input("gpu-box-1")
    button(at, "Create key").click().run()
    assert_no_exception(at)
    (shown,) = [code.value for code in at.code if code.value.startswith("PREDICTIONS_INGEST_KEY=")]
    secret = shown.removeprefix("PREDICTIONS_INGEST_KEY=")
    listed = at.dataframe[0].value
    assert listed["Label"].tolist() == ["gpu-box-1"] and listed["Starts with"][0] == secret[:12] + "…"
    assert secret not in listed.to_string()
    monkeypatch.setenv("PREDICTIONS_INGEST_KEY", secret)
    trainer = open_store()
    write_job(trainer, "from-the-box")
    trainer.close()
    at.run()
    assert not [code for code in at.code if code.value.startswith("PREDICTIONS_INGEST_KEY=")], "shown twice"
    assert at.selectbox(key="revoke_label").value is None, "no key is picked for the user"
    at.selectbox(key="revoke_label").set_value("gpu-box-1").run()
    assert [w.value for w in at.warning] == [
        "Revoke gpu\\-box\\-1? Training machines using it stop writing at their next round."
    ]
    assert at.dataframe[0].value["Revoked"].eq("").all(), "asked first, nothing revoked yet"
    button(at, "Yes, revoke it").click().run()
    assert_no_exception(at)
    assert [s.value for s in at.success] == ["Revoked gpu\\-box\\-1: machines using it can no longer write."]
    assert at.dataframe[0].value["Revoked"].ne("").all()
    with pytest.raises(AuthError):
        open_store()
    owner = user_store(postgrest, USER_A)
    assert [job.id for job in owner.list_jobs()] == ["from-the-box"]
    owner.close()


def test_a_signed_in_user_deletes_their_own_job_and_not_a_namesakes(postgrest, monkeypatch):
    for user_id, prediction in ((USER_B, "bob's"), (USER_A, "ada's")):
        writer = service_store(postgrest, user_id)
        write_job(writer, "run-1", prediction)
        writer.close()
    monkeypatch.setenv("SUPABASE_URL", postgrest.url)
    monkeypatch.setenv("SUPABASE_KEY", postgrest.anon_key)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="sign_in_email").input(EMAIL_A)
    at.text_input(key="sign_in_password").input(PASSWORD)
    at.button[0].click().run()
    at.sidebar.text_input(key="delete_confirm").input("run-1").run()
    at.sidebar.button(key="delete_job").click().run()
    assert_no_exception(at)
    assert "No jobs yet" in at.info[0].value
    bob = user_store(postgrest, USER_B)
    assert set(bob.predictions_page("run-1").rows["prediction"]) == {"bob's"}
    bob.close()
