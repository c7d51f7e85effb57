"""The run's context: the training arguments a real Trainer run records with its job, what a plain loop
records, both stores keeping them, and Trends and Compare showing them (as text, what differs first)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import Trainer

from predictions import PredictionsCallback, PredictionsMonitor
from predictions.dashboard import run_context
from predictions.demo.run import encode_pairs
from predictions.store import SQLiteStore
from predictions.store.records import Job
from tests import helpers_training as h
from tests.seeding import write_job

PAIRS = h.pairs(12)
COMPARE = "pages/compare.py"
HOSTILE = "**bold** <img src=x onerror=alert(1)> [link](http://evil.example)"


def plain(value: str) -> str:
    """A caption as a reader sees it: the backslashes that escape Markdown removed."""
    return value.replace("\\", "")


# recording


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_trainer_run_records_its_arguments_and_trends_shows_them(tmp_path, open_app):
    db = tmp_path / "p.db"
    store = SQLiteStore(db)
    tok = h.tokenizer()
    callback = PredictionsCallback(PAIRS, num_samples=3, max_new_tokens=3, store=store)
    args = h.arguments(tmp_path / "out", 1, learning_rate=3e-4, seed=7, gradient_accumulation_steps=2)
    Trainer(
        model=h.model(tok=tok),
        args=args,
        train_dataset=encode_pairs(h.pairs(32, seed=2), tok, length=h.SEQ_LEN),
        processing_class=tok,
        callbacks=[callback],
    ).train()
    (job,) = store.list_jobs()
    config = store.trends(job.id).config
    training = config["training"]
    assert training["trainer"] == "Trainer"
    assert training["learning_rate"] == 3e-4 and training["seed"] == 7
    assert training["epochs"] == 1 and training["max_steps"] == 2  # 32 rows / (8 x 2 accumulated)
    assert (training["batch_size"], training["gradient_accumulation_steps"]) == (8, 2)
    assert training["effective_batch_size"] == 16 and training["dataset_size"] == 32
    assert training["lr_scheduler"] == "linear" and training["precision"] == "fp32"
    json.dumps(config, allow_nan=False)
    store.close()
    at = open_app(db, job=job.id)
    line = plain(at.caption[1].value)
    assert line.startswith("Run: Model GPT2LMHeadModel")
    assert "Learning rate 0.0003 · Epochs 1 · Effective batch size 16 · Training rows 32 · Seed 7" in line
    table = at.main.expander[0].dataframe[0].value.set_index("argument")["value"]
    assert table["Gradient accumulation"] == "2" and table["Optimizer"] == training["optimizer"]


def test_a_plain_loop_records_the_context_it_is_given_as_json(sqlite_store):
    tok = h.tokenizer()
    model = h.model(tok=tok)
    given = {"learning_rate": 0.01, "epochs": 3, "schedule": object(), "warmup": float("inf"), "none": None}
    with PredictionsMonitor(PAIRS, tokenizer=tok, num_samples=2, max_new_tokens=2, store=sqlite_store) as m:
        with_context = m.start(model, training=given)
    with PredictionsMonitor(PAIRS, tokenizer=tok, num_samples=2, max_new_tokens=2, store=sqlite_store) as m:
        without = m.start(model)
    training = sqlite_store.trends(with_context).config["training"]
    assert training == {"learning_rate": 0.01, "epochs": 3, "schedule": "<object>", "warmup": "inf"}
    assert "training" not in sqlite_store.trends(without).config


def test_both_stores_keep_the_context_as_recorded(store):
    training = {"learning_rate": 5e-5, "epochs": 2.5, "seed": 0, "optimizer": HOSTILE, "precision": "bf16"}
    store.start_job("ctx", name="ctx", model="m", config={"training": training})
    assert store.trends("ctx").config["training"] == training


# showing


def context_job(store: SQLiteStore, job_id: str, name: str, **training) -> None:
    config = {"training": {"epochs": 2, "batch_size": 8, "seed": 0, **training}}
    store.start_job(job_id, name=name, model="tiny-gpt2", config=config)
    write_job(store, job_id, rounds=3, samples=4, status=None)
    store.finish_job(job_id, status="finished")


@pytest.fixture
def context_db(tmp_path) -> Path:
    db = tmp_path / "p.db"
    store = SQLiteStore(db)
    context_job(store, "slow", "lr low", learning_rate=1e-4)
    context_job(store, "fast", "lr high", learning_rate=1e-3, optimizer=HOSTILE)
    store.start_job("old", name="before context", model="tiny-gpt2")  # a job recorded before this feature
    write_job(store, "old", rounds=2, samples=4, status="finished")
    store.close()
    return db


def test_trends_shows_the_run_as_text(open_app, context_db):
    at = open_app(context_db, job="fast")
    line = at.caption[1].value
    assert plain(line) == "Run: Model tiny-gpt2 · Learning rate 0.001 · Epochs 2 · Seed 0"
    table = at.main.expander[0].dataframe[0].value.set_index("argument")["value"]
    assert table["Optimizer"] == HOSTILE  # a dataframe cell is text, never Markdown
    assert at.main.expander[0].label == "Run: every training argument"
    old = open_app(context_db, job="old")
    assert not old.main.expander and not any(c.value.startswith("Run:") for c in old.caption)


def test_compare_lists_the_arguments_that_differ_first(open_app, context_db):
    at = open_app(context_db, job="fast", page=COMPARE)
    at.multiselect(key="compare_jobs").set_value(["fast", "slow", "old"]).run()
    frame = next(d.value for d in at.dataframe if "argument" in d.value.columns)
    assert list(frame.columns) == ["differs", "argument", "lr high", "lr low"]
    expected = ["Learning rate", "Optimizer", "Model", "Epochs", "Batch size per device", "Seed"]
    assert frame["argument"].tolist() == expected
    assert frame["differs"].tolist() == [True, True, False, False, False, False]
    by_argument = frame.set_index("argument")
    assert by_argument.loc["Learning rate"].tolist() == [True, "0.001", "0.0001"]
    assert by_argument.loc["Optimizer"].tolist() == [True, HOSTILE, ""]  # not recorded: blank
    assert by_argument.loc["Seed"].tolist() == [False, "0", "0"]
    captions = [plain(c.value) for c in at.caption]
    assert "2 of 6 arguments differ between these jobs (ticked, listed first)." in captions
    assert "No training arguments recorded for: before context" in captions


def test_a_comparison_of_equal_runs_marks_nothing_and_a_job_named_like_a_column_keeps_its_values():
    job = Job(id="a", name="a", model="m", status="finished")
    same = run_context.context(job, {"training": {"seed": 1, "learning_rate": 2e-5}})
    frame = run_context.comparison({"argument": same, "b": same})
    assert not frame["differs"].any()
    assert frame.set_index("argument")["argument (job)"].tolist() == ["m", "2e-05", "1"]
