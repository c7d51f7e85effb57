"""The writer on a real SQLite store, made really unavailable by holding its write lock elsewhere."""

from __future__ import annotations

import json
import threading
import time

from predictions.delivery.spool import replay_spool, spool_path
from predictions.delivery.writer import Writer
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow
from tests.helpers_training import count_rows, locked


def rows(step: int, job_id: str = "job", count: int = 3) -> list[PredictionRow]:
    return [
        PredictionRow(job_id, 1, step, i, f"p{i}", f"a{i}", f"a{i}", 1.0, 0.0, 1.0, 1.0) for i in range(count)
    ]


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
    writer = Writer(store, spool_path=tmp_path / "spool.jsonl")
    started = time.perf_counter()
    writer.write(rows(1))
    writer.write(rows(2))
    assert time.perf_counter() - started < 0.1
    store.gate.set()
    writer.close()
    assert store.calls == [3, 3]
    assert count_rows(tmp_path / "p.db", "job") == 6


def test_a_store_down_for_the_whole_run_spools_everything_and_replay_stores_it_once(tmp_path):
    db, spool = tmp_path / "p.db", tmp_path / "spool.jsonl"
    store = SQLiteStore(db, timeout_s=0.05)
    with locked(db):
        writer = Writer(store, spool_path=spool, retries=2, backoff_s=0.01)
        writer.start_job("job", name="Job")
        writer.write(rows(1))
        writer.write(rows(2))
        writer.finish_job("job")
        writer.close()
    ops = [json.loads(line)["op"] for line in spool.read_text().splitlines()]
    assert ops == ["start_job", "write_predictions", "write_predictions", "finish_job"]
    assert count_rows(db, "job") == 0
    assert replay_spool(store, spool).stored == 4
    assert replay_spool(store, spool).stored == 0 and not spool.exists()
    assert count_rows(db, "job") == 6
    assert store.list_jobs()[0].status == "finished"


def test_the_next_writer_replays_the_spool_on_start(tmp_path):
    db, spool = tmp_path / "p.db", tmp_path / "spool.jsonl"
    store = SQLiteStore(db, timeout_s=0.05)
    with locked(db):
        first = Writer(store, spool_path=spool, retries=1)
        first.write(rows(1))
        first.close()
    assert spool.exists()
    Writer(store, spool_path=spool).close()
    assert count_rows(db, "job") == 3 and not spool.exists()


def test_the_spool_is_replayed_when_the_store_answers_again(tmp_path):
    db, spool = tmp_path / "p.db", tmp_path / "spool.jsonl"
    store = SQLiteStore(db, timeout_s=0.05)
    writer = Writer(store, spool_path=spool, retries=1)
    with locked(db):
        writer.write(rows(1))
        writer.write(rows(2))
        deadline = time.monotonic() + 10
        while spool.exists() is False or len(spool.read_text().splitlines()) < 2:
            assert time.monotonic() < deadline, "the rounds never reached the spool"
            time.sleep(0.02)
    writer.write(rows(3))
    writer.close()
    assert count_rows(db, "job") == 9 and not spool.exists()


def test_a_replay_while_still_down_keeps_every_call(tmp_path):
    db, spool = tmp_path / "p.db", tmp_path / "spool.jsonl"
    store = SQLiteStore(db, timeout_s=0.05)
    spool.write_text(
        "".join(json.dumps({"op": "write_predictions", "rows": [r.as_dict()]}) + "\n" for r in rows(1))
    )
    with locked(db):
        assert replay_spool(store, spool).stored == 0
    assert len(spool.read_text().splitlines()) == 3
    assert [p.name for p in tmp_path.iterdir() if "replaying" in p.name] == []


def test_no_store_at_all_spools_without_raising(tmp_path):
    writer = Writer(None, spool_path=tmp_path / "spool.jsonl")
    writer.write(rows(1))
    writer.close()
    assert len((tmp_path / "spool.jsonl").read_text().splitlines()) == 1


def test_an_unwritable_spool_is_logged_not_raised(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer = Writer(None, spool_path=blocker / "spool.jsonl")  # a file where a folder should be
    writer.write(rows(1))
    writer.close()
    assert "cannot write the predictions spool" in caplog.text


def test_each_store_has_one_spool_location(tmp_path, monkeypatch, sqlite_store):
    for name in ("PREDICTIONS_SPOOL", "PREDICTIONS_DB", "SUPABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert spool_path(sqlite_store) == tmp_path / "predictions.spool.jsonl"
    assert str(spool_path(None)) == ".predictions/predictions.spool.jsonl"  # beside the default file
    monkeypatch.setenv("PREDICTIONS_DB", str(tmp_path / "other.db"))
    assert spool_path(None) == tmp_path / "other.spool.jsonl"  # a store that could not be opened
    monkeypatch.setenv("SUPABASE_URL", "https://abc.supabase.co")
    assert spool_path(None) == tmp_path / "cache/predictions/spool/abc.supabase.co.spool.jsonl"
    monkeypatch.setenv("PREDICTIONS_SPOOL", str(tmp_path / "x.jsonl"))
    assert spool_path(sqlite_store) == tmp_path / "x.jsonl"
