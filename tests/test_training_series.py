"""Loss and learning rate beside the answers: the Trainer's logged training loss, eval loss and learning
rate stored with the job on both stores (and through an ingest key), drawn on Trends on the CER's step
axis, with a warning when the loss keeps falling while the answers get worse."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest
from transformers import Trainer

from predictions import PredictionsCallback, PredictionsMonitor, open_store
from predictions.dashboard import analysis
from predictions.demo.run import encode_pairs
from predictions.store import SQLiteStore
from predictions.store.frames import SERIES_COLUMNS
from predictions.store.records import SeriesPoint
from predictions.training.monitor import finite_number
from tests import helpers_training as h
from tests.pg_fixtures import USER_A, USER_B, user_store
from tests.test_ingest_keys import create_key, trainer_env
from tests.test_store_contract import round_rows

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def points(job_id: str, losses: dict[int, float], name: str = "loss") -> list[SeriesPoint]:
    return [SeriesPoint(job_id, step, name, value) for step, value in losses.items()]


# both stores


def test_logged_values_are_kept_per_job_step_and_name_and_a_rewrite_updates_them(store):
    store.write_series(points("job", {2: 2.5, 1: 3.0}) + points("job", {1: 1e-3}, "learning_rate"))
    store.write_series(points("job", {2: 2.25}))  # the same step logged again (a resumed run)
    store.write_series(points("other", {1: 9.0}))
    series = store.training_series("job")
    assert list(series.columns) == list(SERIES_COLUMNS)
    assert series.values.tolist() == [[1, "learning_rate", 1e-3], [1, "loss", 3.0], [2, "loss", 2.25]]
    assert store.training_series("nobody").empty


def test_deleting_a_job_deletes_its_series(store):
    store.start_job("job", name="n")
    store.write_predictions(round_rows("job", 1, [("a", "a")]))
    store.write_series(points("job", {1: 1.0}))
    store.delete_job("job")
    assert store.training_series("job").empty


def test_an_ingest_key_writes_the_series_as_its_owner_and_nobody_else_reads_it(
    postgrest, monkeypatch, tmp_path
):
    secret = create_key(postgrest, USER_A, "gpu")
    trainer_env(monkeypatch, postgrest, secret)
    trainer = open_store(env_file=tmp_path / "absent.env")
    trainer.write_series([SeriesPoint("run", 4, "loss", 1.5, user_id=USER_B)])  # the key's owner wins
    trainer.close()
    ada, bob = user_store(postgrest, USER_A), user_store(postgrest, USER_B)
    assert ada.training_series("run").values.tolist() == [[4, "loss", 1.5]]
    assert bob.training_series("run").empty
    ada.close()
    bob.close()


# a real Trainer


@pytest.mark.slow
def test_a_trainer_runs_loss_eval_loss_and_learning_rate_are_stored_by_step(tmp_path, sqlite_store):
    tok = h.tokenizer()
    callback = PredictionsCallback(h.pairs(12), num_samples=3, max_new_tokens=2, store=sqlite_store)
    trainer = Trainer(
        model=h.model(tok=tok),
        args=h.arguments(
            tmp_path / "out", epochs=2, logging_strategy="steps", logging_steps=2, eval_strategy="epoch"
        ),
        train_dataset=encode_pairs(h.pairs(32, seed=2), tok, length=h.SEQ_LEN),
        eval_dataset=encode_pairs(h.pairs(8, seed=3), tok, length=h.SEQ_LEN),
        processing_class=tok,
        callbacks=[callback],
    )
    trainer.train()
    series = sqlite_store.training_series(callback.job_id)
    by_name = {name: group.set_index("step")["value"] for name, group in series.groupby("name")}
    history = trainer.state.log_history
    assert by_name["loss"].to_dict() == pytest.approx({e["step"]: e["loss"] for e in history if "loss" in e})
    assert sorted(by_name["loss"].index) == [2, 4, 6, 8]
    assert by_name["eval_loss"].to_dict() == pytest.approx(
        {e["step"]: e["eval_loss"] for e in history if "eval_loss" in e}
    )
    assert sorted(by_name["eval_loss"].index) == [4, 8]
    assert sorted(by_name["learning_rate"].index) == [2, 4, 6, 8]


def test_a_loops_values_are_kept_as_finite_numbers_whatever_their_type():
    """What a hand-written loop passes to log_training: the loss tensor, NumPy scalars, plain numbers."""
    assert finite_number(torch.tensor(0.25)) == 0.25 and finite_number(np.float32(0.5)) == 0.5
    assert finite_number(torch.tensor([0.25])) == 0.25 and finite_number(3) == 3.0
    unusable = [torch.tensor([1.0, 2.0]), torch.tensor(float("nan")), float("inf"), True, "0.5", None]
    assert [finite_number(value) for value in unusable] == [None] * len(unusable)


def test_values_logged_since_the_last_round_are_kept_on_sigterm(sqlite_store):
    """The signal guard hands the writer the loss logged after the last round before the failed status;
    the previous handler (here a recorder instead of the default exit) gets the signal after it."""
    tok = h.tokenizer()
    model = h.model(tok=tok)
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        monitor = PredictionsMonitor(
            h.pairs(4), tokenizer=tok, num_samples=2, max_new_tokens=2, store=sqlite_store
        )
        monitor.start(model)
        monitor.round(model, step=2, epoch=1)
        for step in (3, 4):
            monitor.log_training(step, {"loss": 1.0 / step, "learning_rate": 0.1})
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == [signal.SIGTERM]
    series = sqlite_store.training_series(monitor.job_id)
    assert series[series["name"] == "loss"].set_index("step")["value"].to_dict() == {3: 1 / 3, 4: 0.25}
    (job,) = sqlite_store.list_jobs()
    assert (job.status, job.round_count) == ("failed", 1)


# the warning


def rounds_frame(cers: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": 1, "step": list(cers), "avg_char_error_rate": list(cers.values())})


def series_frame(losses: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"step": list(losses), "name": "loss", "value": list(losses.values())})


def test_the_warning_needs_the_loss_falling_and_the_metric_worse_at_every_one_of_the_last_rounds():
    rounds = rounds_frame({10: 0.5, 20: 0.3, 30: 0.35, 40: 0.4})
    falling = series_frame({5: 3.0, 10: 2.0, 15: 1.8, 20: 1.5, 30: 1.2, 40: 1.0})
    found = analysis.loss_divergence(rounds, falling)
    assert found == analysis.LossDivergence(20, 40, 1.5, 1.0, 0.3, 0.4)
    assert analysis.loss_divergence(rounds_frame({10: 0.5, 20: 0.3, 30: 0.35, 40: 0.33}), falling) is None
    assert analysis.loss_divergence(rounds, series_frame({10: 2.0, 20: 1.5, 30: 1.6, 40: 1.0})) is None
    assert analysis.loss_divergence(rounds, series_frame({})) is None  # no loss logged: nothing to say
    # a metric where higher is better gets worse by falling
    match = rounds.assign(avg_exact_match=[0.2, 0.6, 0.5, 0.4])
    assert analysis.loss_divergence(match, falling, "avg_exact_match", lower_is_better=False) is not None


# the dashboard


@pytest.fixture
def diverging_db(tmp_path) -> Path:
    """A Trainer-like job: loss logged every 5 steps keeps falling, the CER rises over the last rounds."""
    store = SQLiteStore(tmp_path / "p.db")
    store.start_job("overfit", name="overfit")
    for step, answer in [(10, "xxxx"), (20, "abcd"), (30, "abcx"), (40, "abxx")]:
        store.write_predictions(round_rows("overfit", step, [(answer, "abcd")], epoch=step // 10))
    store.write_series(points("overfit", {step: 3.0 / step for step in range(5, 45, 5)}))
    store.write_series(
        points("overfit", {step: 1e-3 * (1 - step / 50) for step in range(5, 45, 5)}, "learning_rate")
    )
    store.finish_job("overfit")
    store.close()
    return tmp_path / "p.db"


def test_trends_draws_loss_and_cer_on_one_step_axis_and_warns_of_the_divergence(monkeypatch, diverging_db):
    monkeypatch.setenv("PREDICTIONS_DB", str(diverging_db))
    monkeypatch.setenv("SUPABASE_URL", "")
    monkeypatch.setenv("SUPABASE_KEY", "")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    warnings = [w.value.replace("\\", "") for w in at.main.warning]  # shown escaped, as plain text
    assert any(
        "Training loss fell from 0.150 to 0.075 over steps 20 to 40" in text
        and "CER rose from 0.000 to 0.500" in text
        for text in warnings
    ), warnings
    (spec,) = [
        spec
        for spec in map(json.loads, (c.proto.spec for c in at.get("vega_lite_chart")))
        if "vconcat" in spec
    ]
    titles = [part["title"] for part in spec["vconcat"]]
    assert titles == ["Loss", "Answers: Character error rate", "Learning rate"]
    assert spec["resolve"] == {"scale": {"x": "shared"}}
    assert all(part["encoding"]["x"]["field"] == "step" for part in spec["vconcat"])
