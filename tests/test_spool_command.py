"""`python -m predictions spool` on a real SQLite store and its outbox: list, replay, discard, bad paths."""

from __future__ import annotations

import threading
import time

import pytest

from predictions.__main__ import main
from predictions.delivery import command, outbox_place
from predictions.delivery.outbox import Key, Outbox
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow
from tests.helpers_outbox import kept
from tests.helpers_training import count_rows


@pytest.fixture
def pending(tmp_path, monkeypatch):
    """A store whose outbox holds two rounds, a quarantined row, and a call of another owner."""
    db = tmp_path / "p.db"
    store = SQLiteStore(db)
    for name, value in {"PREDICTIONS_DB": str(db), "SUPABASE_URL": "", "SUPABASE_KEY": ""}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
    path, key = tmp_path / "p.outbox.db", Key(*store.outbox_key())
    outbox = Outbox(path)
    rounds = [[PredictionRow("job", 1, step, i, "p", "x").as_dict() for i in range(3)] for step in (1, 2)]
    outbox.append(key, [{"op": "write_predictions", "rows": rows} for rows in rounds])
    refused = {"op": "write_predictions", "rows": [PredictionRow("job", 1, 3, 0, None, "x").as_dict()]}
    outbox.quarantine(key, refused, "StoreError: NOT NULL constraint failed: training_predictions.prompt")
    other = Key(key.store, "user someone-else")
    outbox.append(other, [{"op": "finish_job", "job_id": "theirs", "status": "finished"}])
    return db, path, key


def test_list_shows_every_owner_and_the_quarantine(pending, capsys):
    _, path, key = pending
    assert main(["spool"]) == 1  # something of yours is pending
    out = capsys.readouterr().out
    assert f"outbox {path}:" in out
    assert f"{key.store} as local user (you): 2 call(s): write_predictions x2 (6 rows); jobs job" in out
    assert "as user someone-else: 1 call(s): finish_job x1 (0 rows); jobs theirs" in out
    assert "1 row(s) of job 'job' step 3 (sample 0): StoreError: NOT NULL constraint failed" in out


def test_replay_stores_your_calls_and_never_another_owners(pending, capsys):
    db, path, key = pending
    assert main(["spool", "replay", "--quarantine"]) == 0
    out = capsys.readouterr().out
    assert "3 call(s) stored, 0 still pending" in out and "refused for good" in out
    assert "not yours, left waiting" in out and "someone-else" in out
    assert count_rows(db, "job") == 6 and kept(path, key) == []
    assert [call["job_id"] for call in kept(path)] == ["theirs"]
    (still_refused,) = Outbox(path).quarantined()
    assert "NOT NULL" in still_refused.error


def test_discard_removes_your_pending_calls_or_your_quarantined_ones(pending, capsys):
    _, path, key = pending
    assert main(["spool", "discard", "--quarantine"]) == 0
    assert Outbox(path).quarantined() == [] and len(kept(path, key)) == 2
    assert main(["spool", "discard"]) == 0
    assert kept(path, key) == [] and len(kept(path)) == 1  # the other owner's call stays
    assert "discarded 2 pending call(s)" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["list", "replay", "discard"])
@pytest.mark.parametrize("where", ["a directory", "a file as a folder", "not a database"])
def test_every_bad_outbox_path_gets_a_message(pending, tmp_path, capsys, where, action):
    path = {
        "a directory": tmp_path,
        "a file as a folder": tmp_path / "p.db" / "outbox.db",
        "not a database": tmp_path / "garbage.db",
    }[where]
    (tmp_path / "garbage.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)  # a broken database
    if (where, action) == ("a file as a folder", "list"):
        assert main(["spool", action, "--spool", str(path)]) == 0  # nothing there: nothing pending
        return
    assert main(["spool", action, "--spool", str(path)]) == 2
    assert "error: the predictions outbox" in capsys.readouterr().out


def test_replay_while_another_replayer_holds_calls_waits_for_it_and_says_so(pending, capsys):
    """A training run of the same user replays the same outbox meanwhile: its leased calls are neither
    taken twice nor reported as "still pending" once it stored them."""
    db, path, key = pending
    other = Outbox(path)
    held = other.claim(key, limit=1)  # the training run's writer holds the first round
    store = SQLiteStore(db)

    def the_run_stores_it_a_moment_later():
        time.sleep(1.0)
        store.write_predictions([PredictionRow(**row) for row in held[0].call["rows"]])
        other.ack([held[0].id])

    thread = threading.Thread(target=the_run_stores_it_a_moment_later)
    thread.start()
    assert main(["spool", "replay"]) == 0
    thread.join()
    assert "1 call(s) stored, 0 still pending" in capsys.readouterr().out  # the one it did not hold
    assert count_rows(db, "job") == 6 and kept(path, key) == []


def test_replay_names_calls_another_replayer_still_holds(pending, capsys, monkeypatch):
    _, path, key = pending
    monkeypatch.setattr(command, "OTHERS_WAIT_S", 0.0)
    Outbox(path).claim(key, limit=1)  # held by a replayer that never finishes within the wait
    assert main(["spool", "replay"]) == 1
    out = capsys.readouterr().out
    assert "1 call(s) stored, 1 still pending (1 being replayed right now by another process" in out


def test_list_shows_what_an_unreadable_quarantined_line_held(pending, capsys):
    _, path, key = pending
    Outbox(path).quarantine(key, '{"v": 1, "op": "write_predictions", "rows": [{"job_', "unreadable line")
    main(["spool"])
    assert """an unreadable call '{"v": 1, "op": "write_predictions", "rows": [{"job_': unreadable""" in (
        capsys.readouterr().out
    )


def test_a_fallback_outbox_of_the_store_is_listed_replayed_and_discarded_without_naming_it(pending, capsys):
    """Calls a run kept in the user cache's fallback (its store's own outbox could not be written,
    `outbox_place`) are found by every action, beside those of the store's own outbox."""
    db, path, key = pending
    fallback = outbox_place.fallback_path(key.store)
    rows = [PredictionRow("job", 1, 9, i, "p", "x").as_dict() for i in range(2)]
    Outbox(fallback).append(key, [{"op": "write_predictions", "rows": rows}])
    assert main(["spool"]) == 1
    listed = capsys.readouterr().out
    assert f"outbox {path}:" in listed and f"outbox {fallback}:" in listed
    assert f"{key.store} as local user (you): 1 call(s): write_predictions x1 (2 rows)" in listed
    assert main(["spool", "replay"]) == 0
    replayed = capsys.readouterr().out
    assert f"outbox {fallback}:\nSQLite at {db} as local user: 1 call(s) stored, 0 still pending" in replayed
    assert count_rows(db, "job") == 8 and kept(fallback) == [] and kept(path, key) == []
    Outbox(fallback).append(key, [{"op": "write_predictions", "rows": rows}])
    assert main(["spool", "discard"]) == 0
    assert kept(fallback) == [] and "discarded 1 pending call(s)" in capsys.readouterr().out
