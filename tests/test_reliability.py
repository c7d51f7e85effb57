"""Nothing lost, nothing stuck: faults injected for real into the writer, the outbox and both stores.

Poison rows the stores really refuse, wrongly typed outbox entries, a store locked or hanging, status calls
replayed out of order. The Trainer-level versions are in tests/test_reliability_training.py.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from predictions.delivery.outbox import Outbox
from predictions.delivery.spool import replay
from predictions.delivery.writer import Writer
from predictions.errors import StoreError, StoreUnavailableError, is_transient
from predictions.store import SQLiteStore
from predictions.store.records import PageQuery, PredictionRow
from predictions.store.storable import storable, storable_row
from tests.helpers import prediction_rows, wait_until
from tests.helpers_outbox import kept, key_of, replay_into
from tests.helpers_training import count_rows, locked


def rows(step: int, job_id: str = "job", count: int = 4, poison: int | None = None) -> list[PredictionRow]:
    """A round; the row at `poison` has no prompt, which both stores refuse (NOT NULL) for good."""
    return prediction_rows(job_id, steps=(step,), samples=count, epoch=1, poison=poison)


def stored_indexes(store, job_id: str = "job") -> list[tuple[int, int]]:
    frame = store.predictions_page(job_id, PageQuery(limit=1000)).rows
    return sorted(zip(frame["step"].tolist(), frame["sample_index"].tolist(), strict=True))


def when(seconds: float) -> str:
    return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)).isoformat()


# storable text


def test_nul_and_lone_surrogates_become_the_replacement_character_and_are_counted():
    assert storable("a\x00b\ud83dc 🙂") == ("a\ufffdb\ufffdc 🙂", 2)
    row = PredictionRow("job", 1, 1, 0, "p\x00", "x\udc00y", "t")
    clean = storable_row(row)
    assert (clean.prompt, clean.prediction, clean.text_replacements) == ("p\ufffd", "x\ufffdy", 2)
    assert storable_row(clean) == clean  # applying it twice changes nothing


def test_both_stores_hold_replaced_text_and_show_the_count(store):
    unstorable = [
        storable_row(PredictionRow("job", 1, 1, 0, "p", "nul\x00", "t")),
        storable_row(PredictionRow("job", 1, 1, 1, "p", "half \ud83d emoji", "t")),
    ]
    store.write_predictions(unstorable)
    frame = store.sample_history("job", 0)
    assert frame["prediction"].tolist() == ["nul\ufffd"] and frame["text_replacements"].tolist() == [1]
    assert store.sample_history("job", 1)["prediction"].tolist() == ["half \ufffd emoji"]


def test_each_store_refuses_raw_unstorable_text_for_good(store):
    raw = "\x00" if "Supabase" in store.description else "\ud83d"
    with pytest.raises(StoreError) as refused:
        store.write_predictions([PredictionRow("job", 1, 1, 0, "p", raw, "t")])
    assert not is_transient(refused.value)


# permanent errors: split, quarantined, never blocking


def test_a_refused_row_is_quarantined_and_the_rest_of_its_round_stored(store, tmp_path, caplog):
    path = tmp_path / "p.outbox.db"
    writer = Writer(store, spool_path=path, backoff_s=0.01)
    with caplog.at_level(logging.ERROR):
        writer.write(rows(1, poison=2))
        writer.write(rows(2))
        writer.close()
    assert stored_indexes(store) == [(1, 0), (1, 1), (1, 3), *((2, i) for i in range(4))]
    (refused,) = Outbox(path).quarantined()
    assert [r["sample_index"] for r in refused.call["rows"]] == [2] and "prompt" in refused.error
    assert refused.key == key_of(store) and kept(path) == []
    assert "refused 1 row(s) of job 'job' step 1 (sample 2) for good" in caplog.text
    assert str(path) in caplog.text


def test_a_refused_call_in_the_outbox_never_blocks_the_calls_after_it(store, tmp_path):
    path = tmp_path / "p.outbox.db"
    poison = {"op": "write_predictions", "rows": [r.as_dict() for r in rows(1, count=1, poison=0)]}
    good = [{"op": "write_predictions", "rows": [r.as_dict() for r in rows(step)]} for step in (2, 3)]
    Outbox(path).append(key_of(store), [poison, *good])
    result = replay_into(store, path)
    assert (result.stored, result.pending) == (3, 0)
    assert len(stored_indexes(store)) == 8 and kept(path) == []
    assert len(Outbox(path).quarantined()) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"op": "write_predictions", "rows": 7},
        {"op": "write_predictions", "rows": [7]},
        {"op": "write_predictions", "rows": [{"job_id": "job", "step": 1}]},
        {"op": "write_predictions", "rows": [{**rows(9)[0].as_dict(), "surprise": 1}]},
        {"op": "start_job", "job_id": 5},
        {"op": "drop_table"},
        "not even a call",
    ],
)
def test_a_wrongly_typed_entry_is_quarantined_and_every_other_call_stored(store, tmp_path, bad):
    path = tmp_path / "p.outbox.db"
    outbox = Outbox(path)
    good = {"op": "write_predictions", "rows": [r.as_dict() for r in rows(1)]}
    outbox.append(key_of(store), [good, bad, good])  # a string entry stands for any unreadable text
    writer = Writer(store, spool_path=path)
    writer.write(rows(2))
    writer.close()
    assert len(stored_indexes(store)) == 8 and kept(path) == []
    (refused,) = outbox.quarantined()
    assert "malformed call" in refused.error
    Writer(store, spool_path=path).close()  # a retry never quarantines it again
    assert len(outbox.quarantined()) == 1


# the outbox


def test_replaying_the_same_call_twice_stores_each_row_once(store, tmp_path):
    path = tmp_path / "p.outbox.db"
    call = {"op": "write_predictions", "rows": [r.as_dict() for r in rows(1)]}
    Outbox(path).append(key_of(store), [call, call])  # a replay killed after storing, before deleting
    assert replay_into(store, path).stored == 2
    assert store.rounds("job")["sample_count"].tolist() == [4]


def test_a_killed_replayers_lease_expires_and_its_entries_are_replayed(store, tmp_path):
    now = [1000.0]
    outbox = Outbox(tmp_path / "p.outbox.db", clock=lambda: now[0])
    key = key_of(store)
    outbox.append(key, [{"op": "write_predictions", "rows": [r.as_dict() for r in rows(1)]}])
    assert len(outbox.claim(key, lease_s=60)) == 1  # then the replayer is killed: no ack, no release
    assert outbox.claim(key) == [] and outbox.count(key) == 1  # leased: not sent twice meanwhile
    now[0] += 61
    assert replay(store, outbox, key).stored == 1
    assert outbox.count(key) == 0 and len(stored_indexes(store)) == 4


def test_an_entry_is_deleted_only_after_the_store_acknowledged_it(sqlite_store, tmp_path):
    class Refusing(SQLiteStore):
        def write_predictions(self, batch):
            raise StoreUnavailableError("down")

    outbox = Outbox(tmp_path / "p.outbox.db")
    key = key_of(sqlite_store)
    outbox.append(key, [{"op": "write_predictions", "rows": [r.as_dict() for r in rows(1)]}])
    assert replay(Refusing(tmp_path / "predictions.db"), outbox, key).pending == 1
    assert replay(sqlite_store, outbox, key).stored == 1 and outbox.count(key) == 0


# outages


def test_a_store_that_cannot_be_opened_yet_is_opened_later_and_gets_every_row(tmp_path):
    db = tmp_path / "p.db"
    tries = []

    def open_later():
        tries.append(1)
        if len(tries) < 3:
            raise StoreUnavailableError("locked, say")
        return SQLiteStore(db)

    writer = Writer(None, open_store=open_later, spool_path=tmp_path / "p.outbox.db", backoff_s=0.01)
    writer.start_job("job")
    writer.write(rows(1))
    writer.write(rows(2))
    writer.finish_job("job")
    writer.close()
    assert count_rows(db, "job") == 8 and len(tries) >= 3
    assert SQLiteStore(db).list_jobs()[0].status == "finished"


def test_the_outbox_is_retried_with_backoff_while_no_round_comes(tmp_path):
    db, path = tmp_path / "p.db", tmp_path / "p.outbox.db"
    store = SQLiteStore(db, timeout_s=0.05)
    writer = Writer(store, spool_path=path, retries=1, backoff_s=0.05)
    with locked(db):
        writer.write(rows(1))
        wait_until(lambda: len(kept(path)) == 1)
    wait_until(lambda: count_rows(db, "job") == 4)  # no further call: the retry alone stores it
    writer.close()


def test_a_status_set_later_wins_whatever_order_the_calls_arrive_in(store):
    store.start_job("job", at=when(0))
    store.finish_job("job", status="finished", at=when(10))
    store.start_job("job", name="replayed late", at=when(1))  # a start spooled during an outage
    (job,) = store.list_jobs()
    assert (job.status, job.name) == ("finished", "replayed late") and job.finished_at is not None
    store.finish_job("job", status="failed", at=when(5))
    assert store.list_jobs()[0].status == "finished"
    store.start_job("job", at=when(20))  # a real restart, later
    assert (store.list_jobs()[0].status, store.list_jobs()[0].finished_at) == ("running", None)


def test_a_finish_after_an_outage_leaves_the_job_finished(tmp_path):
    db, path = tmp_path / "p.db", tmp_path / "p.outbox.db"
    store = SQLiteStore(db, timeout_s=0.05)
    with locked(db):
        writer = Writer(store, spool_path=path, retries=1)
        writer.start_job("job")
        writer.write(rows(1))
        writer.close()
    (start,) = [call for call in kept(path) if call["op"] == "start_job"]
    finish = {"op": "finish_job", "job_id": "job", "status": "finished", "run": start["run"], "seq": 2}
    Outbox(tmp_path / "elsewhere.db").append(key_of(store), [{**finish, "at": start["at"]}])
    replay_into(store, tmp_path / "elsewhere.db")  # the run's finish lands first
    replay_into(store, path)
    assert store.list_jobs()[0].status == "finished" and count_rows(db, "job") == 4


# close() and a store that hangs


class HangingStore(SQLiteStore):
    """A real SQLite store whose writes wait on a gate, like a server that stops answering."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def write_predictions(self, batch):
        self.gate.wait()
        super().write_predictions(batch)


def test_a_close_that_times_out_keeps_every_queued_call(tmp_path, caplog):
    db, path = tmp_path / "p.db", tmp_path / "p.outbox.db"
    store = HangingStore(db)
    writer = Writer(store, spool_path=path)
    for step in (1, 2, 3):
        writer.write(rows(step))
    writer.finish_job("job")
    writer.close(timeout_s=0.3)
    assert "4 queued call(s) written to the outbox" in caplog.text
    store.gate.set()
    writer.close()  # its thread, unblocked, replays too: wait for it, then replay what is left
    replay_into(SQLiteStore(db), path)
    assert count_rows(db, "job") == 12


def test_a_postgres_table_locked_at_close_gets_the_queued_rows_kept(postgrest, supabase_database, tmp_path):
    from tests.pg_fixtures import user_store

    store = user_store(postgrest, timeout_s=30)
    path = tmp_path / "s.outbox.db"
    writer = Writer(store, spool_path=path)
    with psycopg.connect(supabase_database, autocommit=False) as blocker:
        blocker.execute("lock table public.training_predictions in access exclusive mode")
        writer.write(rows(1))
        writer.write(rows(2))
        writer.close(timeout_s=0.5)
        calls = kept(path)
        blocker.rollback()
    assert [len(call["rows"]) for call in calls] == [4, 4]
    writer.close()  # its thread, unblocked, holds the claim on its calls and delivers them: wait for it
    replay_into(store, path)  # then replay what is left
    assert len(stored_indexes(store)) == 8 and kept(path) == []


# the dashboard shows the replacement


def test_samples_and_predictions_pages_mark_replaced_text(tmp_path, open_app):
    db = tmp_path / "p.db"
    store = SQLiteStore(db)
    store.start_job("job")
    store.write_predictions(
        [storable_row(PredictionRow("job", 1, 1, i, "p", f"a{i}\x00", "t")) for i in (0, 1)]
    )
    store.write_predictions([PredictionRow("job", 1, 1, 2, "p", "clean", "t")])
    samples = open_app(db, page="pages/samples.py", job="job", sample="1")
    assert any("1 value(s) no store can hold changed" in caption.value for caption in samples.caption)
    table = open_app(db, page="pages/predictions.py", job="job")
    assert "text_replacements" in list(table.dataframe[0].proto.column_order)
    assert table.dataframe[0].value["text_replacements"].tolist() == [1, 1, 0]


def test_pages_reads_survive_any_stored_score_key(store):
    odd = {"has space": 1.0, "text_replacements": 2.0, 'quo"te': 3.0, "ok": 0.5, "": 1.0}
    store.write_predictions(
        [
            PredictionRow("job", 1, 1, i, "p", "x", "x", 1.0, 0.0, scores=odd, metadata={"k": "v"})
            for i in range(2)
        ]
    )
    trends = store.trends("job")
    assert [m.name for m in trends.metrics if m.name == "ok"] == ["ok"]
    assert "avg_ok" in trends.rounds.columns and "avg_has space" not in trends.rounds.columns
    assert store.group_trends("job", "k")["avg_ok"].tolist() == [0.5]
    page = store.predictions_page("job").rows
    assert page["ok"].tolist() == [0.5, 0.5] and page["text_replacements"].tolist() == [0, 0]
    assert len(store.sample_history("job", 0)) == 1
