"""The early-stop rule made visible and general: any metric in its own direction, a `stopped` status
with its reason on both stores, a WARNING in the `predictions` log, and the dashboard saying so
(Trends and the sidebar) instead of advising to stop."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from predictions import ConfigError, PredictionsCallback, PredictionsConfig
from predictions.store import SQLiteStore
from predictions.store.records import SeriesPoint, StopReason
from predictions.store.sqlite_schema import STATUS_LIST
from predictions.training.outcome import RegressionWatch
from tests import helpers_training as h
from tests.test_callback import Worsen
from tests.test_store_contract import round_rows

APP = str(Path(__file__).resolve().parents[1] / "app.py")
REASON = StopReason(metric="char_error_rate", rounds=2, step=30)
STATUS_CHECK = f"CHECK (status IN ({STATUS_LIST}))"


# the rule


def test_the_watch_counts_rounds_worse_in_the_metrics_own_direction():
    cer = RegressionWatch(2, "char_error_rate", lower_is_better=True)
    assert [cer.observe(v, s) for v, s in [(0.5, 1), (0.6, 2), (0.4, 3), (0.5, 4)]] == [None] * 4
    assert cer.observe(0.7, 5) == StopReason("char_error_rate", 2, 5)
    match = RegressionWatch(2, "exact_match", lower_is_better=False)
    assert match.observe(0.9, 1) is None and match.observe(0.8, 2) is None
    assert match.observe(None, 3) is None  # a round without a value neither counts nor resets
    assert match.observe(0.7, 4) == StopReason("exact_match", 2, 4)
    never = RegressionWatch(None, "char_error_rate", lower_is_better=True)
    assert all(never.observe(v, s) is None for s, v in enumerate([0.1, 0.2, 0.3, 0.4]))


def test_stop_metric_takes_a_registered_metric_or_a_scorer_with_its_direction():
    assert PredictionsConfig().watched_metric == ("char_error_rate", True)
    assert PredictionsConfig(stop_after_regressions=2, stop_metric="exact_match").watched_metric == (
        "exact_match",
        False,
    )

    def loss(prediction, truth, sample):
        return 0.0

    loss.higher_is_better = False
    config = PredictionsConfig(stop_after_regressions=2, stop_metric="loss", scorers={"loss": loss})
    assert config.watched_metric == ("loss", True)
    with pytest.raises(ConfigError, match=r"stop_metric='bleu' is not a metric of this run; valid: .*'loss'"):
        PredictionsConfig(stop_after_regressions=2, stop_metric="bleu", scorers={"loss": loss})
    with pytest.raises(ConfigError, match=r"'length_ratio' has an ideal value \(1.0\), not a direction"):
        PredictionsConfig(stop_after_regressions=2, stop_metric="length_ratio")  # longer is not better
    with pytest.raises(ConfigError, match="stop_after_regressions is None, so nothing would stop"):
        PredictionsConfig(stop_metric="exact_match")


# both stores


def status_and_reason(store, job_id):
    (job,) = [job for job in store.list_jobs() if job.id == job_id]
    return job.status, job.stop_reason


def test_a_stopped_job_keeps_its_reason_until_a_later_status_replaces_it(store):
    store.start_job("job", name="n", at="2026-01-01T00:00:00+00:00")
    store.write_predictions(round_rows("job", 30, [("a", "a")]))
    store.finish_job("job", status="stopped", at="2026-01-01T00:01:00+00:00", stop_reason=REASON.as_dict())
    assert status_and_reason(store, "job") == ("stopped", REASON)
    store.finish_job("job", status="failed", at="2026-01-01T00:00:30+00:00")  # an older call, replayed
    assert status_and_reason(store, "job") == ("stopped", REASON)
    store.start_job("job", at="2026-01-01T00:02:00+00:00")  # resumed: running again, no reason
    assert status_and_reason(store, "job") == ("running", None)
    store.finish_job("job", status="finished", at="2026-01-01T00:03:00+00:00", stop_reason=REASON.as_dict())
    assert status_and_reason(store, "job") == ("finished", None)  # a reason belongs to `stopped` only


def test_a_stop_replayed_before_its_start_leaves_the_job_stopped(store):
    store.finish_job("early", status="stopped", at="2026-01-01T00:05:00+00:00", stop_reason=REASON.as_dict())
    store.start_job("early", name="n", at="2026-01-01T00:00:00+00:00")
    assert status_and_reason(store, "early") == ("stopped", REASON)


# a real Trainer


def a_share(prediction, truth, sample):
    """1 for 'aaaa', 0.5 for 'bbbb', 0 for 'cccc': falls as `Worsen` moves the answers on."""
    return (prediction.count("a") + 0.5 * prediction.count("b")) / max(len(prediction), 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "metric"),
    [({}, "char_error_rate"), ({"stop_metric": "a_share", "scorers": {"a_share": a_share}}, "a_share")],
)
def test_an_early_stopped_run_is_stopped_with_its_reason_and_a_warning(
    tmp_path, sqlite_store, caplog, options, metric
):
    samples = [{"prompt": "x=", "response": truth} for truth in ("aaaa", "aaab", "aabb")]
    tok = h.tokenizer()
    callback = PredictionsCallback(
        samples, num_samples=3, max_new_tokens=4, stop_after_regressions=2, store=sqlite_store, **options
    )
    trainer = h.trainer(
        tmp_path, [callback, Worsen(tok, "abc")], tok=tok, epochs=6, learning_rate=0.0, run_name="worse"
    )
    with caplog.at_level(logging.WARNING, logger="predictions"):
        trainer.train()
    assert trainer.state.epoch == 3
    (job,) = sqlite_store.list_jobs()
    assert (job.status, job.stop_reason) == ("stopped", StopReason(metric, 2, 12))
    warnings = [
        r for r in caplog.records if r.name.startswith("predictions") and r.levelno == logging.WARNING
    ]
    assert any("Stopped at step 12" in r.getMessage() and metric in r.getMessage() for r in warnings)


def letter(prediction, truth, sample):
    """How far the answer's letters are past 'a' (0 for 'aaaa', 3 for 'dddd'): lower is better."""
    return sum(ord(c) - ord("a") for c in prediction) / max(len(prediction), 1)


letter.higher_is_better = False


@pytest.mark.slow
def test_a_stopped_run_resumed_from_its_last_checkpoint_stops_at_the_next_worse_round(tmp_path, sqlite_store):
    """A scorer where lower is better watches 'a', 'b', 'c' (stopped at step 12); resumed from checkpoint-12
    with resume_from_checkpoint=True, the same job runs again and 'd' is the third worse round in a row."""
    samples = [{"prompt": "x=", "response": "aaaa"}]
    tok = h.tokenizer()

    def run(resume):
        callback = PredictionsCallback(
            samples, max_new_tokens=4, stop_after_regressions=2, stop_metric="letter",
            scorers={"letter": letter}, store=sqlite_store,
        )  # fmt: skip
        trainer = h.trainer(
            tmp_path, [callback, Worsen(tok, "abcd")], tok=tok, epochs=6, learning_rate=0.0,
            save_strategy="epoch",
        )  # fmt: skip
        trainer.train(resume_from_checkpoint=resume)
        return trainer.state.global_step

    assert run(None) == 12
    (first,) = sqlite_store.list_jobs()
    assert (first.status, first.stop_reason) == ("stopped", StopReason("letter", 2, 12))
    assert run(True) == 16
    (job,) = sqlite_store.list_jobs()
    assert (job.id, job.status, job.stop_reason) == (first.id, "stopped", StopReason("letter", 3, 16))
    assert sqlite_store.trends(job.id).rounds["avg_letter"].tolist() == [0.0, 1.0, 2.0, 3.0]


# the dashboard


@pytest.fixture
def stopped_db(tmp_path) -> Path:
    """A job whose CER rose twice and that the rule stopped, and one as bad that nobody stopped."""
    store = SQLiteStore(tmp_path / "p.db")
    for job_id in ("still-going", "stopped-run"):
        store.start_job(job_id, name=job_id)
        for step, answer in [(10, "abcd"), (20, "abxx"), (30, "xxxx")]:
            store.write_predictions(round_rows(job_id, step, [(answer, "abcd")]))
    store.finish_job("stopped-run", status="stopped", stop_reason=REASON.as_dict())
    store.close()
    return tmp_path / "p.db"


def open_trends(monkeypatch, db: Path, job: str) -> AppTest:
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    monkeypatch.setenv("SUPABASE_URL", "")
    monkeypatch.setenv("SUPABASE_KEY", "")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["job"] = job
    at.run()
    assert not at.exception
    return at


def test_trends_and_the_sidebar_say_a_job_was_stopped_and_why(monkeypatch, stopped_db):
    at = open_trends(monkeypatch, stopped_db, "stopped-run")
    main = [w.value for w in at.main.warning]
    assert any("Stopped at step 30" in text and "CER got worse 2 rounds in a row" in text for text in main)
    assert any("best round was step 10" in text for text in main)
    assert not any("Consider stopping" in text for text in main)
    assert any("Stopped at step 30" in w.value for w in at.sidebar.warning)
    assert any("This job has stopped" in c.value for c in at.sidebar.caption)


def test_a_running_job_as_bad_still_gets_the_advice(monkeypatch, stopped_db):
    at = open_trends(monkeypatch, stopped_db, "still-going")
    assert any("Consider stopping" in w.value for w in at.main.warning)
    assert not any("Stopped at step" in w.value for w in at.sidebar.warning)


@pytest.fixture
def scorer_db(tmp_path) -> Path:
    """Jobs whose rule watches a user scorer, higher better ("A share"), that falls while the CER improves:
    one the rule stopped, one still running with its loss falling all along."""
    config = {
        "stop_after_regressions": 2,
        "stop_metric": "a_share",
        "scorers": {"a_share": {"title": "A share", "higher_is_better": True}},
    }
    store = SQLiteStore(tmp_path / "p.db")
    for job_id in ("scorer-stopped", "scorer-running"):
        store.start_job(job_id, name=job_id, config=config)
        for step, answer, share in [(10, "xxxx", 0.9), (20, "abxx", 0.6), (30, "abcd", 0.3)]:
            (row,) = round_rows(job_id, step, [(answer, "abcd")], epoch=step // 10)
            store.write_predictions([replace(row, scores={"a_share": share})])
        store.write_series([SeriesPoint(job_id, step, "loss", 3.0 / step) for step in range(5, 35, 5)])
    reason = StopReason(metric="a_share", rounds=2, step=30)
    store.finish_job("scorer-stopped", status="stopped", stop_reason=reason.as_dict())
    store.close()
    return tmp_path / "p.db"


def warning_texts(elements) -> list[str]:
    return [w.value.replace("\\", "") for w in elements]  # job text is shown escaped, as plain text


def test_the_best_round_and_the_warnings_follow_the_stop_metric_not_the_cer(monkeypatch, scorer_db):
    """CER is best at step 30, the watched scorer at step 10: every banner judges by the scorer."""
    stopped = warning_texts(open_trends(monkeypatch, scorer_db, "scorer-stopped").main.warning)
    assert any("the average A share got worse 2 rounds" in t for t in stopped), stopped
    assert any("The best round was step 10 (A share 0.900)." in t for t in stopped), stopped
    assert any("while the answers' average A share fell from 0.900 to 0.300" in t for t in stopped), stopped
    running = open_trends(monkeypatch, scorer_db, "scorer-running")
    texts = warning_texts(running.main.warning)
    assert any(
        "has an average A share of 0.300, 0.600 worse than the best round (epoch 1 · step 10, 0.900)" in t
        and "Consider stopping the run or keeping the checkpoint from step 10." in t
        for t in texts
    ), texts
    (spec,) = [spec for spec in map(json.loads, (c.proto.spec for c in running.get("vega_lite_chart")))
               if "vconcat" in spec]  # fmt: skip
    assert spec["vconcat"][1]["title"] == "Answers: A share"


def test_a_sqlite_file_from_before_the_stopped_status_takes_it_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    store.start_job("old-job", name="kept")
    store.close()
    with sqlite3.connect(path) as conn:  # the table as the previous version made it: three statuses
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'training_jobs'").fetchone()[0]
        old = sql.replace(STATUS_CHECK, "CHECK (status IN ('running', 'finished', 'failed'))").replace(
            "    stop_reason TEXT,\n    status_run TEXT,\n    status_seq INTEGER,\n    status_runs TEXT,\n"
            "    status_run_number INTEGER,\n"
            "    rows_missing INTEGER NOT NULL DEFAULT 0,\n    rows_missing_runs TEXT,\n    tags TEXT,\n"
            "    note TEXT,\n",
            "",
        )
        assert old != sql
        conn.execute("ALTER TABLE training_jobs RENAME TO new_jobs")
        conn.execute(old)
        conn.execute("INSERT INTO training_jobs SELECT id, user_id, name, model, status, config, started_at, "
                     "updated_at, finished_at, status_at FROM new_jobs")  # fmt: skip
        conn.execute("DROP TABLE new_jobs")
    store = SQLiteStore(path)
    store.finish_job("old-job", status="stopped", stop_reason=REASON.as_dict())
    (job,) = store.list_jobs()
    assert (job.name, job.status, job.stop_reason) == ("kept", "stopped", REASON)
    store.close()


def test_a_round_result_is_true_only_when_it_says_stop():
    from predictions.training.outcome import RoundResult

    assert not RoundResult(4, {"char_error_rate": 0.5})
    assert RoundResult(4, {"char_error_rate": 0.5}, REASON)
