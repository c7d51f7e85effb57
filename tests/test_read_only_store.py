"""A store that cannot be written here (a read-only mount, a snapshot, a folder shared read-only): the
dashboard reads it, every write is refused by name, training goes on, and an outbox on a read-only
mount never costs a row (docs/reliability.md, problem 14).

Read-only for real: a read-only bind mount (mounting needs root, as the tests run here and in CI; where
`mount` is not allowed the variant skips), and files that cannot be written: by their modes for a user
other than root, and for root, whom modes do not stop, by the immutable attribute (`chattr +i`, as a
retention-locked folder), which stops root too.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from predictions.delivery import outbox_place
from predictions.delivery.writer import Writer
from predictions.errors import ReadOnlyStoreError
from predictions.store import SQLiteStore
from predictions.store.identity import sqlite_identity
from predictions.store.records import SeriesPoint
from tests.helpers import prediction_rows
from tests.helpers_app import assert_no_exception
from tests.helpers_outbox import kept, ops
from tests.helpers_training import count_rows

JOB = "shared-run"
PAGES = ("pages/samples.py", "pages/predictions.py", "pages/compare.py", "pages/rollouts.py", "pages/keys.py")
READ_ONLY_NOTE = "Read-only here"


@dataclass
class ReadOnly:
    """A folder seen read-only at `view`, whose files are written through `source` (the same files)."""

    source: Path
    view: Path
    how: str

    def writable_again(self) -> None:
        """Make the view writable (as a user fixing the mount or the modes would)."""
        if self.how == "mount":
            run(["mount", "-o", "remount,bind,rw", str(self.view)])
        else:
            unlock(self.view)


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, check=False)


@contextlib.contextmanager
def read_only_mount(source: Path, view: Path) -> Iterator[None]:
    """`view` as a read-only bind mount of `source` (mounting needs root, as the tests run here)."""
    view.mkdir()
    done = run(["mount", "--bind", str(source), str(view)])
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")
    try:
        assert run(["mount", "-o", "remount,bind,ro", str(view)]).returncode == 0
        yield
    finally:
        if run(["umount", str(view)]).returncode != 0:
            run(["umount", "--lazy", str(view)])


@contextlib.contextmanager
def read_only_modes(folder: Path) -> Iterator[None]:
    """`folder` and its files unwritable for this user (see the module's docstring), then writable again."""
    lock(folder)
    try:
        assert not os.access(folder, os.W_OK) and not os.access(folder / "p.db", os.W_OK)
        yield
    finally:
        unlock(folder)


def lock(folder: Path) -> None:
    """No write permission for a user; the immutable attribute for root (the folder too: no -wal file)."""
    if os.geteuid() == 0:
        done = run(["chattr", "+i", *(str(path) for path in folder.iterdir()), str(folder)])
        if done.returncode != 0:
            pytest.skip(f"no immutable attribute on this filesystem: {done.stderr.decode().strip()}")
        return
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)


def unlock(folder: Path) -> None:
    if os.geteuid() == 0:
        run(["chattr", "-i", str(folder)])
        run(["chattr", "-i", *(str(path) for path in folder.iterdir())])
        return
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


@pytest.fixture(params=["mount", "modes"])
def read_only(request, tmp_path) -> Iterator[ReadOnly]:
    """A folder holding a seeded store (`seed`), closed cleanly (no -wal file), then read-only."""
    source = tmp_path / "results"
    source.mkdir()
    seed(source / "p.db")
    if request.param == "mount":
        with read_only_mount(source, tmp_path / "view"):
            yield ReadOnly(source, tmp_path / "view", "mount")
    else:
        with read_only_modes(source):
            yield ReadOnly(source, source, "modes")


def seed(path: Path) -> None:
    store = SQLiteStore(path)
    store.start_job(JOB, name="shared run", model="tiny", tags=["baseline"], note="kept for review")
    store.write_predictions(prediction_rows(JOB, steps=(4, 8, 12), samples=3, prediction="a0"))
    store.write_series([SeriesPoint(JOB, 4, "loss", 1.5)])
    store.finish_job(JOB)
    store.close()


def stored(db: Path, job_id: str) -> int:
    """How many rows of the job the store at `db` holds, read as the dashboard reads it."""
    store = SQLiteStore(db)
    try:
        return store.predictions_page(job_id).total_count
    finally:
        store.close()


def digest(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


# the store


def test_a_read_only_store_reads_everything_and_refuses_every_write_by_name(read_only):
    before = digest(read_only.view)
    store = SQLiteStore(read_only.view / "p.db")
    assert store.read_only is not None and "cannot be written" in store.read_only
    (job,) = store.list_jobs()
    assert (job.id, job.status, job.tags, job.note, job.round_count) == (
        JOB,
        "finished",
        ("baseline",),
        "kept for review",
        3,
    )
    rounds = store.trends(JOB).rounds
    assert rounds["step"].tolist() == [4, 8, 12]
    assert store.predictions_page(JOB).total_count == 9 and len(store.rows_after(JOB)) == 9
    assert store.training_series(JOB)["value"].tolist() == [1.5]
    writes = {
        "write_predictions": lambda: store.write_predictions(prediction_rows(JOB, steps=(16,))),
        "start_job": lambda: store.start_job("another"),
        "finish_job": lambda: store.finish_job(JOB, status="failed"),
        "set_job_details": lambda: store.set_job_details(JOB, note="changed"),
        "delete_job": lambda: store.delete_job(JOB),
        "write_series": lambda: store.write_series([SeriesPoint(JOB, 16, "loss", 1.0)]),
        "record_missing": lambda: store.record_missing(JOB, 1, run="r"),
    }
    for name, write in writes.items():
        with pytest.raises(ReadOnlyStoreError, match="is read-only here") as refused:
            write()
        assert str(read_only.view / "p.db") in str(refused.value), name
    store.close()
    assert digest(read_only.view) == before  # not a byte changed, no -wal or -shm file left
    read_only.writable_again()
    writable = SQLiteStore(read_only.view / "p.db")
    assert writable.read_only is None and writable.trends(JOB).rounds.equals(rounds)
    writable.close()


def test_a_store_in_use_elsewhere_is_read_with_its_write_ahead_log(tmp_path):
    """A run still writing the file through a writable path: the read-only view sees every row, the
    ones in the log (not yet in the file) and those written after it was opened."""
    source = tmp_path / "results"
    source.mkdir()
    writer = SQLiteStore(source / "p.db")
    writer.write_predictions(prediction_rows(JOB, steps=(4,)))
    with read_only_mount(source, tmp_path / "view"):
        reader = SQLiteStore(tmp_path / "view" / "p.db")
        assert reader.read_only is not None and reader.predictions_page(JOB).total_count == 3
        writer.write_predictions(prediction_rows(JOB, steps=(8,)))
        assert reader.trends(JOB).rounds["step"].tolist() == [4, 8]
        reader.close()
    writer.close()


def test_a_file_closed_cleanly_then_written_elsewhere_is_read_anew(tmp_path):
    """Closed cleanly, the file has no log to read and none can be made, so it is opened `immutable`;
    a run then writes it through a writable path: the next read opens it again and sees the new rows,
    while the run holds it and after it closed it."""
    source = tmp_path / "results"
    source.mkdir()
    seed(source / "p.db")
    with read_only_mount(source, tmp_path / "view"):
        reader = SQLiteStore(tmp_path / "view" / "p.db")
        assert [job.id for job in reader.list_jobs()] == [JOB]
        writer = SQLiteStore(source / "p.db")
        writer.write_predictions(prediction_rows("later", steps=(1,)))
        assert {job.id for job in reader.list_jobs()} == {JOB, "later"}
        writer.write_predictions(prediction_rows("later", steps=(2,)))
        writer.close()
        assert reader.predictions_page("later").total_count == 6
        reader.close()


def test_a_write_ahead_log_that_only_a_writable_folder_can_read_is_an_error_not_missed_rows(tmp_path):
    """A copy of a live store's file and its log, without the -shm index: SQLite could open it only
    ignoring the log (`immutable`), which would hide its rows, so the store says what to do instead."""
    live = SQLiteStore(tmp_path / "live.db")
    live.write_predictions(prediction_rows(JOB))
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "p.db").write_bytes((tmp_path / "live.db").read_bytes())
    (copy / "p.db-wal").write_bytes((tmp_path / "live.db-wal").read_bytes())
    live.close()
    refused = pytest.raises(ReadOnlyStoreError, match=r"p\.db-wal holds rows .* copy p\.db and p\.db-wal")
    with read_only_mount(copy, tmp_path / "view"), refused:
        SQLiteStore(tmp_path / "view" / "p.db")


def earlier_version(path: Path) -> None:
    """The store at `path` as an earlier version left it: without what only writes use (each row's run,
    the deleted runs, a summary's trigger, an index), which a read-only file cannot gain."""
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        for table in ("training_predictions", "training_rollouts", "training_series"):
            connection.execute(f"ALTER TABLE {table} DROP COLUMN run")
        connection.execute("DROP TABLE training_deleted_runs")
        connection.execute("DROP TRIGGER training_job_summary_on_insert")
        connection.execute("DROP INDEX idx_training_rounds_updated")


def reads(store: SQLiteStore) -> list:
    """What the dashboard reads of the seeded job, as plain values to compare."""
    return [
        [(job.id, job.status, job.round_count, job.tags, job.note) for job in store.list_jobs()],
        store.trends(JOB).rounds.to_dict("list"),
        store.predictions_page(JOB).rows.to_dict("list"),
        store.training_series(JOB).to_dict("list"),
        store.sample_history(JOB, 0).to_dict("list"),
    ]


def test_a_read_only_file_an_earlier_version_wrote_is_read_as_it_is(tmp_path):
    """Upgrading must not lock anyone out of a results folder shared read-only: a file without this
    version's write-side parts reads exactly as the same store migrated, and still refuses writes."""
    source = tmp_path / "results"
    source.mkdir()
    seed(source / "p.db")
    expected = reads(SQLiteStore(source / "p.db"))
    earlier_version(source / "p.db")
    with read_only_mount(source, tmp_path / "view"):
        store = SQLiteStore(tmp_path / "view" / "p.db")
        assert reads(store) == expected
        with pytest.raises(ReadOnlyStoreError, match="read-only here"):
            store.delete_job(JOB)
        store.close()
    migrated = SQLiteStore(source / "p.db")  # writable again: migrated on opening, reads the same
    assert reads(migrated) == expected
    migrated.close()


def test_what_a_read_only_folder_cannot_give_is_said_with_what_to_do(tmp_path):
    source = tmp_path / "results"
    source.mkdir()
    old = source / "old.db"
    seed(old)
    with sqlite3.connect(old) as connection:  # a file of an earlier version: a column reads select
        connection.execute("ALTER TABLE training_predictions DROP COLUMN text_replacements")
    sqlite3.connect(source / "other.db").execute("CREATE TABLE notes (text TEXT)").connection.commit()
    with read_only_mount(source, tmp_path / "view"):
        view = tmp_path / "view"
        with pytest.raises(ReadOnlyStoreError, match=r"needs its schema updated .* to a writable folder"):
            SQLiteStore(view / "old.db")
        with pytest.raises(ReadOnlyStoreError, match="holds no predictions store"):
            SQLiteStore(view / "other.db")
        with pytest.raises(ReadOnlyStoreError, match=f"cannot create the SQLite store at {view}/sub/new.db"):
            SQLiteStore(view / "sub" / "new.db")
    assert SQLiteStore(old).list_jobs()[0].id == JOB  # writable again: migrated on opening, as ever


# the dashboard


def test_every_page_reads_a_read_only_store_says_so_once_and_offers_no_write(open_app, read_only):
    at = open_app(read_only.view / "p.db", job=JOB)
    sidebar = [caption.value for caption in at.sidebar.caption]
    assert sum(READ_ONLY_NOTE in text for text in sidebar) == 1, sidebar
    assert "tags, notes and deleting are off" in next(t for t in sidebar if READ_ONLY_NOTE in t)
    assert at.metric and at.get("vega_lite_chart")  # Trends read the rounds
    assert not [e for e in at.sidebar.expander if e.label in ("Tags and note", "Delete this job")]
    assert not [button for button in at.button if button.key == "delete_job"]
    for page in PAGES:
        at.switch_page(page).run()
        assert_no_exception(at)
        assert not at.error, (page, [error.value for error in at.error])
        assert sum(READ_ONLY_NOTE in caption.value for caption in at.sidebar.caption) == 1, page
        assert not [e for e in at.sidebar.expander if e.label in ("Tags and note", "Delete this job")]
    read_only.writable_again()  # the same file, now writable: the dashboard opens it so at the next run
    at = open_app(read_only.view / "p.db", job=JOB)
    assert {"Tags and note", "Delete this job"} <= {expander.label for expander in at.sidebar.expander}
    assert not [caption for caption in at.sidebar.caption if READ_ONLY_NOTE in caption.value]


# writing


def test_a_writer_on_a_read_only_store_says_so_once_and_keeps_every_call(read_only, tmp_path, caplog):
    """Refused as a whole, not row by row: one ERROR naming the path, every call in the outbox (set
    elsewhere), nothing quarantined, no wait at close; stored once the store can be written."""
    outbox = tmp_path / "elsewhere" / "outbox.db"
    writer = Writer(SQLiteStore(read_only.view / "p.db"), spool_path=outbox, backoff_s=0.01)
    with caplog.at_level(logging.ERROR):
        writer.start_job("later")
        writer.write(prediction_rows("later", steps=(1, 2)))
        writer.finish_job("later")
        writer.close(timeout_s=30)
    refusals = [r.getMessage() for r in caplog.records if "Writing stops for this run" in r.getMessage()]
    assert len(refusals) == 1 and f"{read_only.view / 'p.db'} is read-only here" in refusals[0]
    assert str(outbox) in refusals[0] and "LOST" not in caplog.text
    assert "quarantined" not in caplog.text
    read_only.writable_again()
    replayed = Writer(SQLiteStore(read_only.view / "p.db"), spool_path=outbox)
    replayed.close(timeout_s=30)
    assert count_rows(read_only.view / "p.db", "later") == 6
    assert SQLiteStore(read_only.view / "p.db").find_job("later").status == "finished"


def test_an_outbox_on_a_read_only_mount_costs_no_row_of_a_store_that_answers(tmp_path, caplog):
    """PREDICTIONS_SPOOL on a read-only mount (docs/reliability.md, problem 3): every row is stored."""
    source = tmp_path / "spool"
    source.mkdir()
    with read_only_mount(source, tmp_path / "view"):
        db = tmp_path / "p.db"
        writer = Writer(SQLiteStore(db), spool_path=tmp_path / "view" / "outbox.db")
        with caplog.at_level(logging.WARNING):
            writer.start_job("run")
            for step in (1, 2, 3):
                writer.write(prediction_rows("run", steps=(step,)))
            writer.finish_job("run")
            writer.close(timeout_s=30)
        assert count_rows(db, "run") == 9 and SQLiteStore(db).find_job("run").status == "finished"
        assert "LOST" not in caplog.text and not list((tmp_path / "view").iterdir())


def test_a_writer_whose_default_outbox_is_read_only_too_keeps_every_call_in_the_user_cache(
    read_only, caplog, monkeypatch
):
    """The outbox of a SQLite store is beside it by default, so on a read-only mount it is read-only
    too: the run keeps its calls in a fallback outbox in the user cache, says so once at its start,
    and the next run of the store, once it can be written, replays them."""
    monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
    db = read_only.view / "p.db"
    fallback = outbox_place.fallback_path(sqlite_identity(db)[0])
    assert fallback.is_relative_to(Path(os.environ["XDG_CACHE_HOME"]) / "predictions" / "outbox")
    with caplog.at_level(logging.WARNING):
        writer = Writer(SQLiteStore(db), backoff_s=0.01)
        writer.start_job("later")
        writer.write(prediction_rows("later"))
        writer.finish_job("later")
        writer.close(timeout_s=300)
    assert writer.spool_path == fallback and ops(fallback) == ["start_job", "write_predictions", "finish_job"]
    (warning,) = [r for r in caplog.records if "no outbox can be kept" in r.getMessage()]
    assert warning.levelno == logging.WARNING and caplog.records.index(warning) == 0  # at the start
    assert (
        str(read_only.view / "p.outbox.db") in warning.getMessage() and str(fallback) in warning.getMessage()
    )
    assert f"PREDICTIONS_DB={db} python -m predictions spool replay" in warning.getMessage()
    (refusal,) = [r.getMessage() for r in caplog.records if "Writing stops for this run" in r.getMessage()]
    assert str(fallback) in refusal and "PREDICTIONS_SPOOL" not in refusal and "LOST" not in caplog.text
    read_only.writable_again()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Writer(SQLiteStore(db)).close(timeout_s=30)  # the next run of this store
    assert count_rows(db, "later") == 3 and SQLiteStore(db).find_job("later").status == "finished"
    assert kept(fallback) == [] and not caplog.records  # its own outbox can be kept again: no warning


def test_an_outbox_the_user_set_on_a_read_only_mount_stays_there_and_says_how_to_keep_the_rows(
    tmp_path, caplog, monkeypatch
):
    """PREDICTIONS_SPOOL is the user's choice: never moved to the fallback. The one ERROR says to set
    it to a writable folder, and the rows are named LOST at close, not waited on."""
    source = tmp_path / "results"
    source.mkdir()
    seed(source / "p.db")
    monkeypatch.setenv("PREDICTIONS_SPOOL", str(tmp_path / "view" / "chosen.db"))
    with read_only_mount(source, tmp_path / "view"), caplog.at_level(logging.WARNING):
        writer = Writer(SQLiteStore(tmp_path / "view" / "p.db"), backoff_s=0.01)
        writer.write(prediction_rows("later"))
        writer.close(timeout_s=300)
        assert writer.spool_path == tmp_path / "view" / "chosen.db"
    (refusal,) = [r.getMessage() for r in caplog.records if "Writing stops for this run" in r.getMessage()]
    assert "set PREDICTIONS_SPOOL to a file in a writable folder" in refusal
    assert (
        "LOST 1 call(s)" in caplog.text and "3 row(s) of job 'later' step 1 (sample 0, 1, 2)" in caplog.text
    )
    assert "no outbox can be kept" not in caplog.text
    assert not (Path(os.environ["XDG_CACHE_HOME"]) / "predictions").exists()


@pytest.mark.slow
@pytest.mark.parametrize("spool", ["set elsewhere", "not set"])
def test_training_with_its_store_on_a_read_only_mount_goes_on_and_keeps_every_round(
    tmp_path, caplog, capsys, monkeypatch, spool
):
    """PREDICTIONS_DB on a read-only mount, PREDICTIONS_SPOOL elsewhere or not set (its default place,
    beside the store, is read-only too): training runs to its end, one ERROR names the path as
    read-only, no row is lost, every round waits in the outbox (without PREDICTIONS_SPOOL the user
    cache's fallback, named in one WARNING), `spool` lists them, and `spool replay` stores them once the
    mount is writable, finding the fallback by itself."""
    from predictions import PredictionsCallback
    from predictions.__main__ import main
    from tests import helpers_training as h

    source = tmp_path / "results"
    source.mkdir()
    seed(source / "p.db")
    db = tmp_path / "view" / "p.db"
    outbox = tmp_path / "elsewhere" / "outbox.db"
    if spool == "not set":
        monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
        outbox = outbox_place.fallback_path(sqlite_identity(db)[0])
    else:
        monkeypatch.setenv("PREDICTIONS_SPOOL", str(outbox))
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    monkeypatch.setenv("SUPABASE_URL", "")
    monkeypatch.setenv("SUPABASE_KEY", "")
    with read_only_mount(source, tmp_path / "view"):
        callback = PredictionsCallback(h.pairs(12), num_samples=3, max_new_tokens=2)
        trainer = h.trainer(tmp_path, [callback], epochs=2)
        with caplog.at_level(logging.WARNING):
            trainer.train()
        assert trainer.state.global_step == 8 and stored(db, callback.job_id) == 0
        (refusal,) = [
            r.getMessage() for r in caplog.records if "Writing stops for this run" in r.getMessage()
        ]
        assert f"{db} is read-only here" in refusal and str(outbox) in refusal
        assert "LOST" not in caplog.text
        fallbacks = [r.getMessage() for r in caplog.records if "no outbox can be kept" in r.getMessage()]
        assert fallbacks == ([] if spool == "set elsewhere" else [fallbacks[0]])
        assert all(str(outbox) in warning and "spool replay" in warning for warning in fallbacks)
        capsys.readouterr()
        assert main(["spool"]) == 1  # rounds of yours wait
        listed = capsys.readouterr().out
        assert f"outbox {outbox}:" in listed and "(you): 4 call(s)" in listed and "(6 rows)" in listed
        run(["mount", "-o", "remount,bind,rw", str(tmp_path / "view")])
        assert main(["spool", "replay"]) == 0
        assert count_rows(db, callback.job_id) == 6 and kept(outbox) == []
        assert SQLiteStore(db).find_job(callback.job_id).status == "finished"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.xdist_group("browser")  # the worker whose Chromium is already running
def test_chromium_shows_a_read_only_store_once_and_no_form_that_writes(page, tmp_path):
    """The real dashboard (`streamlit run app.py`) on a store on a read-only mount, in headless Chromium."""
    from tests.helpers_app import sqlite_env, streamlit_server
    from tests.helpers_browser import settle

    source = tmp_path / "results"
    source.mkdir()
    seed(source / "p.db")
    db = tmp_path / "view" / "p.db"
    with read_only_mount(source, db.parent), streamlit_server(sqlite_env(db)) as url:
        page.goto(f"{url}/samples?job={JOB}")
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text(READ_ONLY_NOTE).wait_for(timeout=60_000)
        settle(page)
        assert sidebar.get_by_text(READ_ONLY_NOTE).count() == 1
        assert "sample=0" in page.url  # the page read the job's samples and picked the first
        assert sidebar.get_by_text("Tags and note").count() == 0
        assert sidebar.get_by_text("Delete this job").count() == 0
        assert (
            page.get_by_text("Traceback").count() == 0 and page.get_by_text("cannot be reached").count() == 0
        )
