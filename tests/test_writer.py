"""The writer on a real SQLite store, made really unavailable by holding its write lock elsewhere."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from predictions.delivery.outbox import Outbox
from predictions.delivery.spool import outbox_path
from predictions.delivery.writer import Writer
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow
from predictions.store.settings import StoreSettings
from tests.helpers import prediction_rows, wait_until
from tests.helpers_outbox import kept, key_of, ops, replay_into
from tests.helpers_training import count_rows, locked


def rows(step: int, job_id: str = "job", count: int = 3) -> list[PredictionRow]:
    return prediction_rows(job_id, steps=(step,), samples=count, epoch=1)


class CountingStore(SQLiteStore):
    """A real SQLite store that counts bulk calls and can be made slow, to watch the writer's thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.gate = [], threading.Event()
        self.gate.set()

    def write_predictions(self, batch):
        self.gate.wait()
        self.calls.append(len(batch))
        super().write_predictions(batch)


def test_write_returns_at_once_and_each_round_is_one_store_call(tmp_path):
    store = CountingStore(tmp_path / "p.db")
    store.gate.clear()  # the store hangs until released
    writer = Writer(store, spool_path=tmp_path / "p.outbox.db")
    writer.write(rows(1))
    writer.write(rows(2))
    assert store.calls == []  # both returned while the store still hangs on the first
    store.gate.set()
    writer.close()
    assert store.calls == [3, 3]
    assert count_rows(tmp_path / "p.db", "job") == 6


def test_after_a_spill_later_calls_follow_the_spilled_ones_so_the_last_version_of_a_row_wins(tmp_path):
    """A signal spills a round kept unscored; its scored rows come after the spill and must replace it."""
    store = CountingStore(tmp_path / "p.db")
    writer = Writer(store, spool_path=tmp_path / "p.outbox.db")
    unscored = [dataclasses.replace(row, char_error_rate=None) for row in rows(1)]
    store.gate.clear()  # the store is busy when the signal comes: the round is only in memory
    writer.write(unscored)
    wait_until(lambda: writer._inflight is not None, what="the call in flight")
    assert writer.spill() == 1
    writer.write(rows(1))  # the same round, scored after the spill
    store.gate.set()
    writer.close()
    stored = store.rows_after("job")
    assert stored["char_error_rate"].tolist() == [0.0, 0.0, 0.0]  # not the unscored copy


def test_a_store_down_for_the_whole_run_keeps_everything_and_replay_stores_it_once(tmp_path):
    db, outbox = tmp_path / "p.db", tmp_path / "p.outbox.db"
    store = SQLiteStore(db, timeout_s=0.05)
    with locked(db):
        writer = Writer(store, spool_path=outbox, retries=2, backoff_s=0.01)
        writer.start_job("job", name="Job")
        writer.write(rows(1))
        writer.write(rows(2))
        writer.finish_job("job")
        writer.close()
    assert ops(outbox) == ["start_job", "write_predictions", "write_predictions", "finish_job"]
    assert count_rows(db, "job") == 0
    assert replay_into(store, outbox).stored == 4
    assert replay_into(store, outbox).stored == 0 and kept(outbox) == []
    assert count_rows(db, "job") == 6
    assert store.list_jobs()[0].status == "finished"


def test_the_next_writer_replays_the_outbox_on_start(tmp_path):
    db, outbox = tmp_path / "p.db", tmp_path / "p.outbox.db"
    store = SQLiteStore(db, timeout_s=0.05)
    with locked(db):
        first = Writer(store, spool_path=outbox, retries=1)
        first.write(rows(1))
        first.close()
    assert len(kept(outbox)) == 1
    Writer(store, spool_path=outbox).close()
    assert count_rows(db, "job") == 3 and kept(outbox) == []


def test_the_outbox_is_replayed_when_the_store_answers_again(tmp_path):
    db, outbox = tmp_path / "p.db", tmp_path / "p.outbox.db"
    store = SQLiteStore(db, timeout_s=0.05)
    writer = Writer(store, spool_path=outbox, retries=1)
    with locked(db):
        writer.write(rows(1))
        writer.write(rows(2))
        wait_until(lambda: len(kept(outbox)) >= 2, what="both rounds in the outbox")
    writer.write(rows(3))
    writer.close()
    assert count_rows(db, "job") == 9 and kept(outbox) == []


def test_a_replay_while_still_down_keeps_every_call(tmp_path):
    db, path = tmp_path / "p.db", tmp_path / "p.outbox.db"
    store = SQLiteStore(db, timeout_s=0.05)
    Outbox(path).append(key_of(store), [{"op": "write_predictions", "rows": [r.as_dict()]} for r in rows(1)])
    with locked(db):
        result = replay_into(store, path)
    assert (result.stored, result.pending) == (0, 3) and result.errors
    assert len(Outbox(path).claim(key_of(store))) == 3  # given back at once, not held by a lease


def test_no_store_at_all_keeps_calls_without_raising(tmp_path, monkeypatch):
    monkeypatch.setenv("PREDICTIONS_DB", str(tmp_path / "never.db"))
    writer = Writer(None, spool_path=tmp_path / "p.outbox.db")
    writer.write(rows(1))
    writer.close()
    assert len(kept(tmp_path / "p.outbox.db")) == 1


def test_an_unwritable_outbox_with_no_store_is_logged_not_raised(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("PREDICTIONS_DB", str(tmp_path / "never.db"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer = Writer(None, spool_path=blocker / "p.outbox.db")  # a file where a folder should be
    writer.write(rows(1))
    writer.close(timeout_s=2)  # held rows are retried until close gives up (300 s by default)
    assert "can be neither stored nor kept" in caplog.text
    assert "LOST 1 call(s)" in caplog.text and "3 row(s) of job 'job' step 1" in caplog.text


def test_each_store_has_one_outbox_location(tmp_path, monkeypatch, sqlite_store):
    for name in ("PREDICTIONS_SPOOL", "PREDICTIONS_DB", "SUPABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert outbox_path(key_of(sqlite_store).store) == tmp_path / "predictions.outbox.db"

    def unopened() -> str:
        """The store `open_store()` would open, as the outbox names it (it is not opened)."""
        return StoreSettings.from_env().outbox_key()[0]

    assert outbox_path(unopened()) == Path(".predictions/predictions.outbox.db").resolve()  # the default file
    monkeypatch.setenv("PREDICTIONS_DB", str(tmp_path / "other.db"))
    assert outbox_path(unopened()) == tmp_path / "other.outbox.db"
    monkeypatch.setenv("SUPABASE_URL", "https://abc.supabase.co")
    monkeypatch.setenv("SUPABASE_KEY", "sb_secret_x")
    assert outbox_path(unopened()) == tmp_path / "cache/predictions/outbox.db"
    monkeypatch.setenv("PREDICTIONS_SPOOL", str(tmp_path / "x.db"))
    assert outbox_path(key_of(sqlite_store).store) == tmp_path / "x.db"
