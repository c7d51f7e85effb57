"""Rounds scored off the training thread: the same rows as scoring inline, a round that returns before
its scores, a hanging scorer given up on, and the early-stop rule still deciding at its own round."""

from __future__ import annotations

import linecache
import logging
import sys
import threading

import pandas as pd
import pytest

from predictions import PredictionsCallback, PredictionsMonitor
from predictions.config import PredictionsConfig
from predictions.delivery.writer import Writer
from predictions.scorers import NumericAnswer
from predictions.scoring.sample import Sample
from predictions.store.sqlite import SQLiteStore
from predictions.training import round_scorer
from predictions.training.round_scorer import build_rows
from tests import helpers_training as h
from tests.helpers import wait_until

SAMPLES = [{**pair, "category": "even" if i % 2 == 0 else "odd"} for i, pair in enumerate(h.pairs(12))]


def fragile(prediction, truth, sample):
    """A user scorer that raises on half the samples (their value is None either way)."""
    if sample["category"] == "odd":
        raise ValueError("odd")
    return len(prediction) / 10


def length(prediction, truth, sample):
    return len(prediction)


def stored_rows(store, job_id: str) -> pd.DataFrame:
    return store.rows_after(job_id).drop(columns=["job_id", "created_at"], errors="ignore")


@pytest.mark.slow
def test_rows_scored_off_the_training_thread_equal_rows_scored_inline(tmp_path, sqlite_store):
    """A real Trainer run, then its answers scored inline (as every round was before) into another job:
    every stored column is the same, row for row."""
    scorers = {"fragile": fragile, "answer": NumericAnswer()}
    callback = PredictionsCallback(
        SAMPLES,
        num_samples=6,
        max_new_tokens=6,
        store=sqlite_store,
        scorers=scorers,
        metadata_fields=["category"],
    )
    h.trainer(tmp_path, [callback], epochs=2).train()
    off_thread = sqlite_store.rows_after(callback.job_id)
    assert sorted(set(off_thread["step"])) == [4, 8] and len(off_thread) == 12

    by_index = {sample.index: sample for sample in callback.samples}
    writer = Writer(sqlite_store, spool_path=tmp_path / "inline.outbox.db")
    for (step, epoch), answers in off_thread.groupby(["step", "epoch"]):
        samples = [by_index[index] for index in answers["sample_index"]]
        writer.write(
            build_rows("inline", step, epoch, samples, answers["prediction"].tolist(), callback.config)
        )
    writer.close()
    inline = stored_rows(sqlite_store, "inline")
    pd.testing.assert_frame_equal(stored_rows(sqlite_store, callback.job_id), inline)
    assert inline["fragile"].isna().any() and inline["fragile"].notna().any()  # both kinds compared


def gated_monitor(store, **options) -> tuple[PredictionsMonitor, object]:
    tok = h.tokenizer()
    model = h.model(tok=tok)
    monitor = PredictionsMonitor(
        SAMPLES, tokenizer=tok, num_samples=4, max_new_tokens=3, store=store, **options
    )
    monitor.start(model)
    return monitor, model


def test_a_round_returns_before_it_is_scored_and_is_stored_once_scored(sqlite_store):
    release = threading.Event()

    def gated(prediction, truth, sample):
        release.wait(60)
        return 1.0

    monitor, model = gated_monitor(sqlite_store, scorers={"gated": gated})
    try:
        result = monitor.round(model, step=1, epoch=1)
        assert not result.scored  # the scorer is still at work and the training thread went on
        assert sqlite_store.rows_after(monitor.job_id).empty  # rows are written once scored
    finally:
        release.set()
    assert result.averages["gated"] == 1.0  # reading the averages waits for them
    assert result.scored
    monitor.finish()
    stored = sqlite_store.rows_after(monitor.job_id)
    assert stored["gated"].tolist() == [1.0] * 4
    assert stored["char_error_rate"].notna().all()


def test_a_hanging_scorer_is_given_up_on_and_every_round_is_still_stored(sqlite_store, monkeypatch, caplog):
    monkeypatch.setattr(round_scorer, "SCORER_LIMIT_S", 0.3)
    release, calls = threading.Event(), []

    def hangs(prediction, truth, sample):
        calls.append(prediction)
        release.wait(60)
        return 1.0

    monitor, model = gated_monitor(sqlite_store, scorers={"length": length, "hangs": hangs})
    try:
        with caplog.at_level(logging.ERROR, logger="predictions.training.round_scorer"):
            first = monitor.round(model, step=1, epoch=1)
            monitor.round(model, step=2, epoch=1)
            monitor.finish()  # waits for both rounds: the first gives up on `hangs` after its limit
    finally:
        release.set()  # let the abandoned thread end
    assert len(calls) == 1  # never called again after it hung
    assert "scorer 'hangs' has run for over 0.3 s on the round at step 1; it is given up on" in caplog.text
    stored = sqlite_store.rows_after(monitor.job_id)
    assert stored["step"].tolist() == [1] * 4 + [2] * 4
    assert stored["hangs"].isna().all() and stored["length"].notna().all()
    assert stored["char_error_rate"].notna().all()
    assert set(first.averages) >= {"char_error_rate", "length"} and "hangs" not in first.averages
    assert sqlite_store.list_jobs()[0].status == "finished"


def test_with_the_early_stop_rule_a_round_waits_for_its_own_scores(sqlite_store):
    """The rule reads each round's average when the round ends, so it stops at the same step as inline;
    without the rule, the same slow scorer leaves the round unscored when it returns."""
    release = threading.Event()

    def slow(prediction, truth, sample):
        release.wait(60)
        return 0.0

    timer = threading.Timer(0.2, release.set)  # frees the scorer while round() waits
    monitor, model = gated_monitor(sqlite_store, stop_after_regressions=2, scorers={"slow": slow})
    timer.start()
    result = monitor.round(model, step=1, epoch=1)
    assert result.scored and result.averages["slow"] == 0.0  # decided at the round, not later
    monitor.finish()
    (stored,) = sqlite_store.trends(monitor.job_id).rounds.to_dict("records")
    assert result.averages["char_error_rate"] == pytest.approx(stored["avg_char_error_rate"])


def scorer_waits_for_its_lock(scorer: round_scorer.RoundScorer) -> bool:
    """Whether the scorer's thread is blocked on the scorer's lock (another thread holds it)."""
    frame = sys._current_frames().get(scorer._worker.ident)
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno) if frame else ""
    return frame is not None and frame.f_code.co_name == "_score" and "with self._lock" in line


def test_a_round_scored_while_the_guard_spills_is_stored_scored_not_unscored(tmp_path):
    """The guard keeps a round still being scored unscored; its scorer finishing right then writes the
    scored rows to the outbox too. They must come after the unscored ones (a replay stores them in
    order, the last wins): the scorer is freed at the guard's first append to the outbox, and the
    append goes on once it has finished or waits for the guard."""
    release = threading.Event()

    def gated(prediction, truth, sample):
        release.wait(10)
        return 1.0

    writer = Writer(SQLiteStore(tmp_path / "p.db"), spool_path=tmp_path / "p.outbox.db")
    scorer = round_scorer.RoundScorer(writer, PredictionsConfig(scorers={"gated": gated}))
    handed = scorer.hand_over("job", 1, 1.0, [Sample(i, f"p{i}", str(i)) for i in range(3)], ["0", "1", "3"])
    append = writer.outbox.append

    def guard_appends(key, calls):
        if threading.current_thread() is threading.main_thread() and not release.is_set():
            release.set()
            wait_until(lambda: handed.done.is_set() or scorer_waits_for_its_lock(scorer), what="the scorer")
        append(key, calls)

    writer.outbox.append = guard_appends
    kept = round_scorer.ScoreFirst(scorer, writer)
    kept.spill()
    kept.close(6.0)
    scorer.close()
    assert SQLiteStore(tmp_path / "p.db").rows_after("job")["gated"].tolist() == [1.0] * 3
