"""Tags and notes on the dashboard (AppTest, real stores): the owner edits them in the sidebar, everyone
who sees the job sees them as text (picker, Trends, Compare), and the picker's search finds a job by
name, id, model or tag."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from predictions.store import SQLiteStore
from tests.helpers import prediction_rows
from tests.helpers_app import APP, assert_no_exception
from tests.pg_fixtures import EMAIL_A, PASSWORD, USER_A, service_store

HOSTILE = "**bold** <img src=x onerror=alert(1)> [link](http://127.0.0.1:9/x)\nsecond line"


def write_job(store, job_id: str, **details) -> None:
    store.start_job(job_id, name=job_id, **details)
    store.write_predictions(prediction_rows(job_id, steps=(1, 2), samples=2, prediction="a", truth="a"))


def save(at: AppTest) -> None:
    """Click the sidebar form's Save and run."""
    (button,) = [button for button in at.sidebar.button if button.label == "Save"]
    button.click().run()


def test_the_owner_edits_tags_and_note_in_the_sidebar_and_they_show_as_text(open_app, tmp_path):
    store = SQLiteStore(tmp_path / "p.db")
    write_job(store, "other", tags=["sweep"])
    write_job(store, "run-1", tags=["baseline"])
    store.close()
    at = open_app(tmp_path / "p.db", job="run-1")
    tags = at.sidebar.multiselect(key="details_tags")
    assert tags.value == ["baseline"] and tags.options == ["baseline", "sweep"]  # every listed job's tags
    tags.set_value(["sweep", "new <b>tag</b>"])
    at.sidebar.text_area(key="details_note").input(HOSTILE)
    save(at)
    assert_no_exception(at)
    (job,) = [job for job in SQLiteStore(tmp_path / "p.db").list_jobs() if job.id == "run-1"]
    assert (job.tags, job.note) == (("sweep", "new <b>tag</b>"), HOSTILE.strip())
    assert "Saved the tags and note of run\\-1." in [s.value for s in at.sidebar.success]
    assert at.sidebar.selectbox(key="job").options == ["● run-1 [sweep] [new <b>tag</b>]", "● other [sweep]"]
    assert at.caption[0].value == "● run\\-1 \\[sweep\\] \\[new \\<b\\>tag\\</b\\>\\]"  # escaped: text
    assert at.text[0].value == HOSTILE.strip()  # the note as text, never Markdown
    at.sidebar.selectbox(key="job").set_value("other").run()  # the form follows the picked job
    assert at.sidebar.multiselect(key="details_tags").value == ["sweep"]
    assert at.sidebar.text_area(key="details_note").value == ""


def test_a_refused_edit_says_why_and_changes_nothing(open_app, tmp_path):
    store = SQLiteStore(tmp_path / "p.db")
    write_job(store, "run-1", tags=["baseline"])
    store.close()
    at = open_app(tmp_path / "p.db", job="run-1")
    at.sidebar.multiselect(key="details_tags").set_value(["x" * 41])
    save(at)
    assert_no_exception(at)
    assert "up to 40 characters" in at.sidebar.error[0].value
    assert SQLiteStore(tmp_path / "p.db").list_jobs()[0].tags == ("baseline",)


def test_the_picker_finds_a_job_by_tag_name_id_or_model(open_app, tmp_path):
    store = SQLiteStore(tmp_path / "many.db")
    for i in range(12):
        model = "gpt-small" if i else "llama-tiny"
        store.start_job(f"run-{i:02d}", name=f"trial {i}", model=model, tags=["sweep-a" if i else "golden"])
    store.close()
    at = open_app(tmp_path / "many.db", job="run-05")
    search = at.sidebar.text_input(key="job_search")
    assert search.placeholder == "name, id, model or tag"
    search.input("GOLDEN").run()
    assert at.sidebar.selectbox(key="job").options == [
        "● trial 5 [sweep-a]",
        "● trial 0 [golden]",
    ]  # picked stays
    at.sidebar.selectbox(key="job").set_value("run-00").run()
    assert at.query_params["job"] == "run-00"
    at.sidebar.text_input(key="job_search").input("sweep-a").run()
    assert len(at.sidebar.selectbox(key="job").options) == 12  # 11 tagged, and the picked one
    assert "11 jobs match, most recent first." in [c.value for c in at.sidebar.caption]
    at.sidebar.text_input(key="job_search").input("LLAMA").run()  # the model, found by the store too
    assert at.sidebar.selectbox(key="job").options == ["● trial 0 [golden]"]


def test_compare_shows_the_tags_and_notes_of_the_compared_runs(open_app, tmp_path):
    store = SQLiteStore(tmp_path / "p.db")
    write_job(store, "a", tags=["baseline"], note=HOSTILE)
    write_job(store, "b")
    store.close()
    at = open_app(tmp_path / "p.db", job="b", page="pages/compare.py")
    assert "Tags and notes" in [header.value for header in at.subheader]
    (frame,) = [df.value for df in at.dataframe if "note" in df.value.columns]
    assert frame.to_dict("records") == [
        {"job": "b", "tags": "", "note": ""},
        {"job": "a", "tags": "baseline", "note": HOSTILE.strip()},
    ]


def test_on_supabase_only_the_owner_gets_the_form_and_an_admin_reads_them(postgrest, monkeypatch):
    writer = service_store(postgrest, USER_A)
    write_job(writer, "ada-run", tags=["baseline"], note="ada's words")
    writer.close()
    monkeypatch.setenv("SUPABASE_URL", postgrest.url)
    monkeypatch.delenv("PREDICTIONS_INGEST_KEY", raising=False)
    monkeypatch.delenv("PREDICTIONS_USER_ID", raising=False)
    monkeypatch.setenv("SUPABASE_KEY", postgrest.service_key)  # an admin: every owner's jobs, owner of none
    admin = AppTest.from_file(APP, default_timeout=60).run()
    assert_no_exception(admin)
    assert admin.sidebar.selectbox(key="job").options == ["● ada-run [baseline]"]
    assert admin.text[0].value == "ada's words"
    assert not admin.sidebar.multiselect and not [
        e for e in admin.sidebar.expander if e.label == "Tags and note"
    ]
    monkeypatch.setenv("SUPABASE_KEY", postgrest.anon_key)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="sign_in_email").input(EMAIL_A)
    at.text_input(key="sign_in_password").input(PASSWORD)
    at.button[0].click().run()
    at.sidebar.multiselect(key="details_tags").set_value(["keeper"])
    save(at)
    assert_no_exception(at)
    assert at.sidebar.selectbox(key="job").options == ["● ada-run [keeper]"]
