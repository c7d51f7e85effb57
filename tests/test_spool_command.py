"""`python -m predictions spool` on a real SQLite store: list, replay (quarantine too), discard."""

from __future__ import annotations

import pytest

from predictions.__main__ import main
from predictions.delivery.spool import append_spool, corrupt_path, quarantine, quarantine_path, read_calls
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow
from tests.helpers_training import count_rows


@pytest.fixture
def pending(tmp_path, monkeypatch):
    """A store whose spool holds two rounds and a torn line, and whose quarantine holds one refused row."""
    db = tmp_path / "p.db"
    SQLiteStore(db).close()
    for name, value in {"PREDICTIONS_DB": str(db), "SUPABASE_URL": "", "SUPABASE_KEY": ""}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
    spool = tmp_path / "p.spool.jsonl"
    rounds = [[PredictionRow("job", 1, step, i, "p", "x").as_dict() for i in range(3)] for step in (1, 2)]
    append_spool(spool, [{"op": "write_predictions", "rows": rows} for rows in rounds])
    with spool.open("a") as handle:
        handle.write('{"v": 1, "op": "write_pre')
    refused = {"op": "write_predictions", "rows": [PredictionRow("job", 1, 3, 0, None, "x").as_dict()]}
    quarantine(spool, refused, ValueError("NOT NULL constraint failed: training_predictions.prompt"))
    return db, spool


def test_list_shows_the_spool_the_quarantine_and_the_unreadable_lines(pending, capsys):
    _, spool = pending
    assert main(["spool"]) == 1  # something is pending
    out = capsys.readouterr().out
    assert f"spool {spool}: 2 call(s): write_predictions x2 (6 rows); jobs job" in out
    assert "1 row(s) of job 'job' step 3 (sample 0): ValueError: NOT NULL constraint failed" in out
    assert "unreadable lines: 1" in out


def test_replay_stores_the_spool_now_and_a_quarantined_row_stays_quarantined(pending, capsys):
    db, spool = pending
    assert main(["spool", "replay", "--quarantine"]) == 0
    out = capsys.readouterr().out
    assert "3 call(s) stored, 0 still pending" in out and "refused for good" in out
    assert count_rows(db, "job") == 6 and not spool.exists()
    assert len(corrupt_path(spool).read_text().splitlines()) == 1
    (still_refused,), _ = read_calls(quarantine_path(spool))
    assert "NOT NULL" in still_refused["error"]


def test_discard_removes_the_spool_or_the_quarantine(pending, capsys):
    _, spool = pending
    assert main(["spool", "discard", "--quarantine"]) == 0
    assert not quarantine_path(spool).exists() and spool.exists()
    assert main(["spool", "discard"]) == 0
    assert not spool.exists()
    assert "discarded" in capsys.readouterr().out
