"""A run that another callback ends early reads `stopped`, with its reason: transformers'
`EarlyStoppingCallback` (its metric, direction, patience and the Trainer's best value, step and
checkpoint) or any callback of the run; a run that reaches its planned end stays `finished`. The reason
is stored on both stores, read by earlier readers, and shown as text on Trends and in the sidebar."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import EarlyStoppingCallback, PrinterCallback, TrainerCallback, TrainerControl, TrainerState

from predictions import PredictionsCallback
from predictions.delivery.writer import Writer
from predictions.store import SQLiteStore
from predictions.store.records import StopReason, TrainerStop, stop_reason_from_dict
from predictions.store.storable import Changes, storable_value
from predictions.training.preemption import interrupted_at
from predictions.training.trainer_stop import trainer_stop
from tests import helpers_training as h
from tests.conftest import make_store
from tests.test_callback import Worsen
from tests.test_early_stop import open_trends, warning_texts
from tests.test_store_contract import round_rows

HF_STOP = TrainerStop(
    step=8, max_steps=24, by=("EarlyStoppingCallback",), metric="eval_loss", greater_is_better=False,
    rounds=1, patience=1, best_value=0.5123, best_step=4, best_checkpoint="checkpoint-4",
)  # fmt: skip
HF_TEXT = (
    "Stopped at step 8 of 24 by EarlyStoppingCallback: eval_loss (lower is better) did not improve for "
    "1 evaluation in a row (patience 1). The best eval_loss was 0.5123 at step 4 (checkpoint-4)."
)
OWN_STOP = TrainerStop(step=3, max_steps=8, by=("Halt",))
PRUNED = TrainerStop(step=2, max_steps=4, by=("MedianPruner",), search="optuna", trial=1, objective=2.75)


# the rule


class Halt(TrainerCallback):
    """Sets `should_training_stop` at a given optimizer step, as a user's own callback would."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            control.should_training_stop = True


def state_at(step: int, max_steps: int, **fields) -> TrainerState:
    return TrainerState(global_step=step, max_steps=max_steps, **fields)


def test_a_stop_before_the_planned_end_is_stopped_and_one_at_it_is_not(tmp_path):
    args = h.arguments(tmp_path)
    stop = TrainerControl(should_training_stop=True)
    assert trainer_stop(args, state_at(3, 8), stop, [Halt(3)]) == OWN_STOP
    assert trainer_stop(args, state_at(8, 8), stop, [Halt(8)]) is None  # max_steps reached: it ran its course
    assert trainer_stop(args, state_at(6, 8), TrainerControl(), [Halt(3)]) is None  # epochs ended, no flag
    others = [PrinterCallback(), h.EventRecorder()]  # transformers' own never stop a run: not named
    assert trainer_stop(args, state_at(3, 8), stop, others) == TrainerStop(3, 8, by=("EventRecorder",))


def test_early_stopping_callback_is_named_with_its_metric_patience_and_the_trainers_best(tmp_path):
    args = h.arguments(tmp_path, eval_strategy="epoch", metric_for_best_model="loss")
    stopper = EarlyStoppingCallback(early_stopping_patience=1)
    stopper.early_stopping_patience_counter = 1
    state = state_at(8, 24, best_metric=0.5123, best_global_step=4, best_model_checkpoint="out/checkpoint-4")
    found = trainer_stop(args, state, TrainerControl(should_training_stop=True), [Halt(0), stopper])
    assert found == HF_STOP and found.describe() == HF_TEXT
    unsaved = state_at(
        8, 24, best_metric=0.5, log_history=[{"eval_loss": 0.7, "step": 2}, {"eval_loss": 0.5, "step": 4}]
    )
    found = trainer_stop(args, unsaved, TrainerControl(should_training_stop=True), [stopper])
    assert (found.best_value, found.best_step, found.best_checkpoint) == (0.5, 4, None)  # save_strategy="no"
    waiting = EarlyStoppingCallback(early_stopping_patience=3)  # patience not run out: it did not stop it
    assert trainer_stop(args, state, TrainerControl(should_training_stop=True), [waiting]).by == ()


# both stores


def test_a_trainer_stop_is_kept_on_both_stores_and_an_older_reader_reads_it(store):
    reasons = [
        ("hf", HF_STOP),
        ("own", OWN_STOP),
        ("pruned", PRUNED),
        ("rule", StopReason("exact_match", 2, 30)),
        ("interrupted", interrupted_at(5, 9)),
        ("interrupted-loop", interrupted_at(5)),  # a hand-written loop: no planned last step
    ]
    for job_id, reason in reasons:
        store.start_job(job_id, name=job_id, at="2026-01-01T00:00:00+00:00")
        store.finish_job(
            job_id, status="stopped", at="2026-01-01T00:01:00+00:00", stop_reason=reason.as_dict()
        )
        assert (store.find_job(job_id).status, store.find_job(job_id).stop_reason) == ("stopped", reason)
    assert StopReason.from_dict(HF_STOP.as_dict()) == StopReason("eval_loss", 1, 8)  # an earlier dashboard
    assert StopReason.from_dict(OWN_STOP.as_dict()) is None  # ... says "stopped by the early-stop rule"
    assert stop_reason_from_dict({"by": "x", "step": 1}) is None
    assert (
        interrupted_at(5, 9).describe()
        == "Stopped at step 5 of 9: interrupted by the user (KeyboardInterrupt)."
    )
    assert interrupted_at(5).describe() == "Stopped at step 5: interrupted by the user (KeyboardInterrupt)."
    older = TrainerStop.from_dict(
        {**interrupted_at(5, 9).as_dict(), "interrupted": None}
    )  # before this field
    assert (
        older.describe()
        == "Stopped at step 5 of 9 by the run's own callbacks (KeyboardInterrupt), before its planned end."
    )
    partial = {**HF_STOP.as_dict(), "best_value": "NaN", "patience": True}
    assert stop_reason_from_dict(partial) == TrainerStop(
        8, 24, HF_STOP.by, "eval_loss", False, 1, None, None, 4, "checkpoint-4"
    )


NAME = st.text(st.characters(exclude_categories=()), max_size=20) | st.sampled_from(
    ["**x**", "\x00", "\ud83d"]
)


@pytest.mark.parametrize("backend", ["sqlite", "supabase"])
def test_any_metric_or_callback_name_is_stored_as_the_writer_sends_it(request, backend, tmp_path):
    """`metric_for_best_model` and callback class names are the user's text: NUL, lone surrogates and
    Markdown reach both stores, made storable the same way, and read back as sent."""
    store = make_store(backend, request, tmp_path)
    writer, sent = Writer(store, spool_path=tmp_path / "o.outbox.db"), {}

    @settings(max_examples=25, deadline=None)
    @given(metric=NAME, names=st.lists(NAME, max_size=3), best=st.floats())
    def send(metric, names, best):
        job_id = f"job-{len(sent)}"
        sent[job_id] = TrainerStop(5, 9, tuple(names), metric, True, 2, 2, best, 3)
        writer.start_job(job_id, name="n")
        writer.finish_job(job_id, status="stopped", stop_reason=sent[job_id].as_dict())

    send()
    writer.close()
    stored = {job.id: job.stop_reason for job in store.list_jobs()}
    assert stored == {job_id: storable_reason(reason) for job_id, reason in sent.items()}
    store.close()


def storable_reason(reason: TrainerStop) -> TrainerStop:
    """The reason as the writer makes it storable: unstorable characters replaced, a non-finite best
    value dropped."""
    return stop_reason_from_dict(storable_value(reason.as_dict(), Changes()))


# a real Trainer


A_TRUTH = [{"prompt": "x=", "response": "aaaa"}] * 4
"""Eval rows whose answer is 'aaaa': the eval loss is lowest in the epoch `Worsen` has the model say 'a'."""


@pytest.mark.slow
def test_early_stopping_callback_stops_the_job_with_its_reason_and_a_resume_stops_it_again(
    tmp_path, store, caplog
):
    """Patience 1 on eval_loss: epoch 1 ('a') is best, epoch 2 ('b') is worse, so training stops at step 8
    of 24. Resumed from checkpoint-8 with the same arguments (the callback's counter starts afresh:
    transformers restores it only with `restore_callback_states_from_checkpoint`, the best value always),
    epoch 3 ('c') is no better than epoch 1, and the same job stops again at step 12."""
    tok = h.tokenizer()

    def run(resume):
        callback = PredictionsCallback(A_TRUTH[:1], max_new_tokens=4, store=store)
        trainer = h.trainer(
            tmp_path, [callback, Worsen(tok, "abc"), EarlyStoppingCallback(early_stopping_patience=1)],
            tok=tok, eval_pairs=A_TRUTH, epochs=6, learning_rate=0.0, eval_strategy="epoch",
            save_strategy="epoch", metric_for_best_model="loss", load_best_model_at_end=True,
        )  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="predictions"):
            trainer.train(resume_from_checkpoint=resume)
        (job,) = store.list_jobs()
        return trainer.state, job

    state, job = run(None)
    assert (state.global_step, job.status) == (8, "stopped")
    assert job.stop_reason == TrainerStop(
        8, 24, ("EarlyStoppingCallback",), "eval_loss", False, 1, 1, state.best_metric, 4, "checkpoint-4"
    )
    assert any(f"job {job.id!r} Stopped at step 8 of 24" in r.getMessage() for r in caplog.records)
    state, resumed = run(True)
    assert (state.global_step, resumed.id, resumed.status) == (12, job.id, "stopped")
    assert (resumed.stop_reason.step, resumed.stop_reason.rounds, resumed.stop_reason.best_step) == (12, 1, 4)
    assert store.trends(job.id).rounds["step"].tolist() == [4, 8, 12]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("halt_at", "options", "status", "reason"),
    [
        (3, {}, "stopped", OWN_STOP),
        (8, {}, "finished", None),  # at max_steps: it ran its course, whoever asked to stop
        (2, {"gradient_accumulation_steps": 2}, "stopped", TrainerStop(2, 4, ("Halt",))),  # optimizer steps
        (5, {"max_steps": 5}, "finished", None),
    ],
)
def test_a_callback_of_the_run_that_stops_it_early_makes_it_stopped(
    tmp_path, sqlite_store, halt_at, options, status, reason
):
    callback = PredictionsCallback(A_TRUTH[:1], max_new_tokens=2, store=sqlite_store)
    trainer = h.trainer(tmp_path, [callback, Halt(halt_at)], epochs=2, **options)
    trainer.train()
    (job,) = sqlite_store.list_jobs()
    assert (trainer.state.global_step, job.status, job.stop_reason) == (halt_at, status, reason)


@pytest.mark.slow
def test_an_rl_run_a_callback_stops_early_is_stopped_too(tmp_path, sqlite_store):
    """GRPOTrainer with the RolloutRecorder: the same rule, the same reason, on the RL job."""
    from predictions import RolloutRecorder
    from tests import helpers_grpo as g

    recorder = RolloutRecorder(store=sqlite_store)
    trainer = g.grpo_trainer(tmp_path, recorder.wrap(g.reward_functions()), [recorder, Halt(1)])
    trainer.train()
    (job,) = sqlite_store.list_jobs()
    assert (job.status, job.stop_reason) == ("stopped", TrainerStop(1, 3, ("Halt",)))


# the dashboard


@pytest.fixture
def trainer_stopped_db(tmp_path) -> Path:
    """A job EarlyStoppingCallback stopped (answers best at step 4), one a callback of the run stopped."""
    store = SQLiteStore(tmp_path / "p.db")
    for job_id, reason in [("hf-stopped", HF_STOP), ("halted", OWN_STOP)]:
        store.start_job(job_id, name=job_id)
        for step, answer in [(4, "abcd"), (8, "abxx")]:
            store.write_predictions(round_rows(job_id, step, [(answer, "abcd")]))
        store.finish_job(job_id, status="stopped", stop_reason=reason.as_dict())
    store.close()
    return tmp_path / "p.db"


def test_trends_and_the_sidebar_say_who_stopped_the_run_and_the_trainers_best(
    monkeypatch, trainer_stopped_db
):
    at = open_trends(monkeypatch, trainer_stopped_db, "hf-stopped")
    main, side = warning_texts(at.main.warning), warning_texts(at.sidebar.warning)
    assert any(HF_TEXT in text and "The answers' best round was step 4 (CER 0.000)." in text for text in main)
    assert not any("Consider stopping" in text or "early-stop rule" in text for text in main + side)
    assert any(HF_TEXT in text for text in side), side
    halted = open_trends(monkeypatch, trainer_stopped_db, "halted")
    text = "Stopped at step 3 of 8 by the run's own callbacks (Halt), before its planned end."
    assert any(text in t for t in warning_texts(halted.sidebar.warning))
