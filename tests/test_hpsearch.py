"""`Trainer.hyperparameter_search` (Optuna) with the callback: each trial is its own job, named by its
number, with its hyperparameters; a trial the search prunes reads stopped with the search's reason, one
that raises reads failed, and the next trial goes on; every trial tracks the same samples; Compare lays
the trials side by side."""

from __future__ import annotations

import itertools
import logging
import sqlite3
from pathlib import Path

import optuna
import pytest
from transformers import Trainer, TrainerCallback

from predictions import PredictionsCallback, PredictionsMonitor
from predictions.demo.run import encode_pairs
from predictions.errors import ConfigError, StoreUnavailableError
from predictions.store import SQLiteStore
from predictions.store.records import TrainerStop
from tests import helpers_training as h
from tests.helpers import open_files
from tests.test_early_stop import open_trends, warning_texts

COMPARE = "pages/compare.py"
FAILS, PRUNED, FINISHES = 0, 1, 2
"""The three trials, by Optuna's number: one raises at step 3, one is pruned at step 2, one runs to step 4."""


class PruneTrial(optuna.pruners.BasePruner):
    """Prunes one trial, by number, at its first report: deterministic, whatever its objective."""

    def __init__(self, number: int):
        self.number = number

    def prune(self, study, trial) -> bool:
        return trial.number == self.number and bool(trial.intermediate_values)


class RaiseInTrial(TrainerCallback):
    """A real error at step 3 of one trial (trials counted by train begins, from 0)."""

    def __init__(self, number: int):
        self.number, self.begun = number, -1

    def on_train_begin(self, args, state, control, **kwargs):
        self.begun += 1

    def on_step_end(self, args, state, control, **kwargs):
        if self.begun == self.number and state.global_step == 3:
            raise RuntimeError("a real error in the trial")


def search_trainer(tmp_path: Path, tok, callbacks: list, eval_steps: int) -> Trainer:
    """A Trainer of 4 steps on the reverse task, a fresh tiny model a trial, evaluated every `eval_steps`."""
    return Trainer(
        model_init=lambda: h.model(tok=tok),
        args=h.arguments(tmp_path / "out", max_steps=4, eval_strategy="steps", eval_steps=eval_steps),
        train_dataset=encode_pairs(h.pairs(32, seed=2), tok, length=h.SEQ_LEN),
        eval_dataset=encode_pairs(h.pairs(8, seed=3), tok, length=h.SEQ_LEN),
        processing_class=tok,
        callbacks=callbacks,
    )


def search(tmp_path: Path, store: SQLiteStore) -> tuple[dict[int, dict], PredictionsCallback]:
    """Three trials of 4 steps (rounds and evaluations every 2 steps) under one callback instance;
    returns each trial's hyperparameters by number, and the callback."""
    tok, tried = h.tokenizer(), {}

    def hp_space(trial):
        return tried.setdefault(
            trial.number, {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)}
        )

    callback = PredictionsCallback(
        h.pairs(12, seed=1), num_samples=3, max_new_tokens=3, every_n_steps=2, store=store
    )
    trainer = search_trainer(tmp_path, tok, [callback, RaiseInTrial(FAILS)], eval_steps=2)
    trainer.hyperparameter_search(
        hp_space=hp_space,
        n_trials=3,
        backend="optuna",
        pruner=PruneTrial(PRUNED),
        sampler=optuna.samplers.RandomSampler(seed=0),
        catch=(RuntimeError,),
    )
    return tried, callback


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, dict[int, dict], list[str]]:
    """One real search on a SQLite file: its path, the trials' hyperparameters, the warnings it logged."""
    tmp_path = tmp_path_factory.mktemp("search")
    store = SQLiteStore(tmp_path / "p.db")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("predictions")
    logger.addHandler(handler)
    try:
        tried, _ = search(tmp_path, store)
    finally:
        logger.removeHandler(handler)
    store.close()
    return tmp_path / "p.db", tried, [record.getMessage() for record in records]


@pytest.mark.slow
def test_each_trial_is_its_own_job_with_its_hyperparameters_and_status(searched):
    db, tried, warnings = searched
    store = SQLiteStore(db)
    jobs = {int(job.name.removeprefix("trial-")): job for job in store.list_jobs()}
    assert sorted(jobs) == [FAILS, PRUNED, FINISHES] and sorted(tried) == sorted(jobs)
    assert all(job.id.startswith(f"trial-{number}-") for number, job in jobs.items())
    statuses = {number: job.status for number, job in jobs.items()}
    assert statuses == {FAILS: "failed", PRUNED: "stopped", FINISHES: "finished"}
    steps = {number: store.trends(job.id).rounds["step"].tolist() for number, job in jobs.items()}
    assert steps == {FAILS: [2], PRUNED: [2], FINISHES: [2, 4]}  # no trial's round in another's job
    for number, job in jobs.items():
        training = store.trends(job.id).config["training"]
        assert training["trial"] == number and training["hyperparameters"] == tried[number]
        assert (
            training["learning_rate"] == tried[number]["learning_rate"]
        )  # the Trainer's arguments, set by it
    assert any(f"job {jobs[FAILS].id!r} never reached its end" in text for text in warnings), warnings
    store.close()


@pytest.mark.slow
def test_the_pruned_trial_is_stopped_by_the_search_at_its_step_with_its_objective(searched):
    db, _, warnings = searched
    store = SQLiteStore(db)
    job = next(job for job in store.list_jobs() if job.name == f"trial-{PRUNED}")
    series = store.training_series(job.id)
    eval_loss = series[(series["name"] == "eval_loss") & (series["step"] == 2)]["value"].item()
    assert job.stop_reason == TrainerStop(
        2, 4, ("PruneTrial",), search="optuna", trial=PRUNED, objective=eval_loss
    )
    text = "Pruned by the optuna search (PruneTrial) at step 2 of 4: trial 1 reported an objective of "
    text += f"{eval_loss:.4g} there."
    assert job.stop_reason.describe() == text
    assert any(text in warning for warning in warnings), warnings
    store.close()


@pytest.mark.slow
def test_every_trial_tracks_the_same_samples_in_its_own_rounds(searched):
    """Same seed, same samples: each round of each trial holds the same three samples, once each."""
    db, _, _ = searched
    with sqlite3.connect(db) as connection:
        query = "SELECT j.name, p.step, p.sample_index FROM training_predictions p "
        query += "JOIN training_jobs j ON j.id = p.job_id"
        rows = connection.execute(query).fetchall()
    by_round = {}
    for name, step, index in rows:
        by_round.setdefault((name, step), []).append(index)
    assert sorted(by_round) == [("trial-0", 2), ("trial-1", 2), ("trial-2", 2), ("trial-2", 4)]
    tracked = {tuple(sorted(indices)) for indices in by_round.values()}
    assert len(tracked) == 1 and len(next(iter(tracked))) == 3


@pytest.mark.slow
def test_compare_lays_the_trials_side_by_side_and_trends_says_which_was_pruned(
    searched, open_app, monkeypatch
):
    db, tried, _ = searched
    store = SQLiteStore(db)
    jobs = {job.name: job for job in store.list_jobs()}
    store.close()
    at = open_app(db, job=jobs["trial-2"].id, page=COMPARE)
    at.multiselect(key="compare_jobs").set_value([job.id for job in jobs.values()]).run()
    frame = next(d.value for d in at.dataframe if "argument" in d.value.columns).set_index("argument")
    assert frame.loc["Search trial"].tolist() == [True, "2", "1", "0"]
    rates = [f"learning_rate={tried[n]['learning_rate']:.4g}" for n in (2, 1, 0)]
    assert frame.loc["Trial's hyperparameters"].tolist() == [True, *rates]
    assert frame.loc["Learning rate", "differs"] and not frame.loc["Seed", "differs"]
    pruned = open_trends(monkeypatch, db, jobs["trial-1"].id)
    assert any(
        "Pruned by the optuna search (PruneTrial) at step 2 of 4" in text
        for text in warning_texts(pruned.sidebar.warning)
    )


class LateVerdict(optuna.pruners.BasePruner):
    """Says prune only when asked again about a step already answered: as a study shared with other
    workers can change its verdict after their reports (a MedianPruner over their values)."""

    def __init__(self):
        self.asked: list[int] = []

    def prune(self, study, trial) -> bool:
        self.asked.append(trial.last_step)
        return self.asked.count(trial.last_step) > 1


@pytest.mark.slow
def test_a_trial_that_ran_to_its_end_is_finished_whatever_its_pruner_says_afterwards(tmp_path, sqlite_store):
    """Evaluated at its last step only, the trial was asked once (no) and ran to its end: the pruner is
    not asked again, so the job is finished, not pruned."""
    tok, pruner = h.tokenizer(), LateVerdict()
    trainer = search_trainer(
        tmp_path, tok, [PredictionsCallback(h.pairs(4), max_new_tokens=2, store=sqlite_store)], eval_steps=4
    )
    trainer.hyperparameter_search(hp_space=lambda trial: {}, n_trials=1, backend="optuna", pruner=pruner)
    (job,) = sqlite_store.list_jobs()
    assert (job.name, job.status, job.stop_reason, pruner.asked) == ("trial-0", "finished", None, [4])


class Reports(optuna.pruners.BasePruner):
    """Never prunes; keeps what each trial reported, by step."""

    def __init__(self):
        self.reported: dict[int, dict[int, float]] = {}

    def prune(self, study, trial) -> bool:
        self.reported[trial.number] = dict(trial.intermediate_values)
        return False


@pytest.mark.slow
def test_a_search_can_optimise_a_round_metric_each_evaluation_its_own_steps_round(tmp_path, store):
    """`compute_objective` reads the callback's latest round: each evaluation reports the average of
    the round at its own step (rounds and evaluations every 2 steps), as the store has it, per trial.
    The metric counts its calls, so every round's average differs (2, 5, then 8, 11). Both stores: the
    trials' jobs, contexts and a scorer's averages in SQL."""
    tok, reports, calls = h.tokenizer(), Reports(), itertools.count(1)
    callback = PredictionsCallback(
        h.pairs(12, seed=1),
        num_samples=3,
        max_new_tokens=3,
        every_n_steps=2,
        scorers={"calls": lambda prediction, truth, sample: next(calls)},
        store=store,
    )
    trainer = search_trainer(tmp_path, tok, [callback], eval_steps=2)
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2)},
        compute_objective=lambda metrics: callback.latest_averages["calls"],
        n_trials=2,
        backend="optuna",
        pruner=reports,
    )
    stored = {}
    for job in store.list_jobs():
        rounds = store.trends(job.id).rounds
        by_step = zip(rounds["step"].tolist(), rounds["avg_calls"].tolist(), strict=True)
        stored[int(job.name.removeprefix("trial-"))] = dict(by_step)
    assert stored == reports.reported == {0: {2: 2.0, 4: 5.0}, 1: {2: 8.0, 4: 11.0}}
    assert (best.run_id, best.objective) == ("0", 5.0)  # minimised


def test_an_explicit_job_id_gets_one_job_per_trial_and_an_unfinished_one_is_failed(tmp_path, sqlite_store):
    """A plain loop as a search runs it: an explicit `job_id` would merge the second trial into the
    first (a ConfigError); with the trial's label each trial is its own job. A trial whose run raised
    (no finish) is marked failed when the next one starts."""
    tok = h.tokenizer()
    monitor = PredictionsMonitor(
        h.pairs(4), tokenizer=tok, max_new_tokens=2, job_id="sweep", store=sqlite_store
    )
    assert monitor.start(h.model(tok=tok), trial="trial-0") == "sweep-trial-0"
    monitor.round(h.model(tok=tok), step=1, epoch=1)  # then the trial raises: no finish
    assert monitor.start(h.model(tok=tok), trial="trial-1") == "sweep-trial-1"
    monitor.finish()
    jobs = {job.id: (job.name, job.status, job.round_count) for job in sqlite_store.list_jobs()}
    assert jobs == {
        "sweep-trial-0": ("sweep-trial-0", "failed", 1),
        "sweep-trial-1": ("sweep-trial-1", "finished", 0),
    }
    with pytest.raises(ConfigError, match="job_id='sweep-trial-0' already has 1 round"):
        PredictionsMonitor(h.pairs(4), tokenizer=tok, job_id="sweep", store=sqlite_store).start(
            h.model(tok=tok), trial="trial-0"
        )


def test_a_search_of_many_trials_keeps_no_connection_per_trial(tmp_path, monkeypatch):
    """The store the monitor opens itself (no `store` option) is closed when each trial's job ends:
    it kept a connection and two open files a trial (500 trials: 1,000 files, past a usual ulimit)."""
    db = tmp_path / "p.db"
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    monkeypatch.setenv("SUPABASE_URL", "")
    tok = h.tokenizer()
    monitor = PredictionsMonitor(h.pairs(4), tokenizer=tok, max_new_tokens=2)
    for trial in range(4):
        monitor.start(h.model(tok=tok), trial=f"trial-{trial}")
        monitor.round(h.model(tok=tok), step=1, epoch=1)
        assert open_files(db) > 0  # open while the trial runs
        monitor.finish()
    assert open_files(db) == 0
    store = SQLiteStore(db)
    assert sorted(job.round_count for job in store.list_jobs()) == [1, 1, 1, 1]
    store.close()


def test_a_store_the_writer_opened_later_is_closed_with_the_job_too(tmp_path, monkeypatch):
    """A store that could not be opened at the start (a locked file) is opened by the writer once it
    can: that one is the run's own too, and is closed when the job ends."""
    import predictions.store

    db = tmp_path / "p.db"
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    monkeypatch.setenv("SUPABASE_URL", "")
    real_open, calls = predictions.store.open_store, []

    def locked_at_first():
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnavailableError(f"{db} is locked")
        return real_open()

    monkeypatch.setattr(predictions.store, "open_store", locked_at_first)
    tok = h.tokenizer()
    monitor = PredictionsMonitor(h.pairs(4), tokenizer=tok, max_new_tokens=2)
    monitor.start(h.model(tok=tok))
    monitor.round(h.model(tok=tok), step=1, epoch=1)
    monitor.finish()
    assert len(calls) >= 2 and open_files(db) == 0  # the writer's own open, then closed
    store = SQLiteStore(db)
    assert [job.round_count for job in store.list_jobs()] == [1]
    store.close()
