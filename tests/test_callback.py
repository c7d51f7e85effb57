"""PredictionsCallback at two levels: hooks called with a real TrainerState, and real Trainer runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState

from predictions import ConfigError, DatasetError, PredictionsCallback
from predictions.store import SQLiteStore
from predictions.store.records import PageQuery
from predictions.training.monitor import equal_shards
from tests import helpers_training as h
from tests import zygote
from tests.helpers import wait_until
from tests.helpers_outbox import ops, replay_into

SAMPLES = h.pairs(12)
ROOT = Path(__file__).resolve().parents[1]


def begin(callback, tmp_path, state=None, tok=None, model=None, **args):
    """Call on_train_begin like the Trainer does; returns what the later hooks need."""
    state = state or TrainerState()
    arguments = h.arguments(tmp_path / "out", **args)
    tok = tok or h.tokenizer()
    model = model or h.model(tok=tok)
    callback.on_train_begin(arguments, state, TrainerControl(), model=model, processing_class=tok)
    return arguments, state, model, tok


def at(state, step, epoch):
    state.global_step, state.epoch = step, epoch
    return state


# hooks, called directly


def test_a_step_gets_one_round_even_when_it_is_also_an_epoch_end(tmp_path, sqlite_store):
    callback = PredictionsCallback(
        SAMPLES, num_samples=4, max_new_tokens=3, every_n_steps=2, store=sqlite_store
    )
    args, state, model, _ = begin(callback, tmp_path, run_name="hooks")
    control = TrainerControl()
    for step in (1, 2):
        callback.on_step_end(args, at(state, step, step / 4), control, model=model)
    callback.on_epoch_end(args, at(state, 2, 0.5), control, model=model)  # the same step again
    callback.on_step_end(args, at(state, 4, 1.0), control, model=model)
    callback.on_epoch_end(args, at(state, 4, 1.0), control, model=model)
    callback.on_train_end(args, state, control, model=model)
    rounds = sqlite_store.rounds(callback.job_id)
    assert rounds["step"].tolist() == [2, 4] and rounds["sample_count"].tolist() == [4, 4]
    assert rounds["epoch"].tolist() == [1, 1]
    (job,) = sqlite_store.list_jobs()
    assert (job.id, job.name, job.status, job.model) == (
        callback.job_id,
        "hooks",
        "finished",
        "GPT2LMHeadModel",
    )
    assert sqlite_store.trends(job.id).config["every_n_steps"] == 2


def test_the_job_is_running_after_train_begin(tmp_path, sqlite_store):
    callback = PredictionsCallback(SAMPLES, num_samples=2, store=sqlite_store, job_name="Named")
    begin(callback, tmp_path)
    assert callback.job_id.startswith("named-")  # a generated id, readable
    wait_until(lambda: [j.status for j in sqlite_store.list_jobs()] == ["running"])
    assert sqlite_store.list_jobs()[0].name == "Named"
    callback.writer.close()


def test_a_rank_other_than_zero_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PREDICTIONS_DB", str(tmp_path / "never.db"))
    callback = PredictionsCallback(SAMPLES, num_samples=3, max_new_tokens=2)
    state = TrainerState(is_world_process_zero=False)
    args, state, model, _ = begin(callback, tmp_path, state=state)
    assert callback.writer is None
    assert callback.on_epoch_end(args, at(state, 4, 1.0), TrainerControl(), model=model) is None
    callback.on_train_end(args, state, TrainerControl(), model=model)
    assert not (tmp_path / "never.db").exists()


def test_a_round_leaves_padding_side_train_mode_and_cache_as_they_were(tmp_path, sqlite_store):
    callback = PredictionsCallback(SAMPLES, num_samples=4, max_new_tokens=3, store=sqlite_store)
    tok = h.tokenizer()
    model = h.model(tok=tok)
    model.activation_checkpointing_enable()
    model.train()
    model.config.use_cache = False
    tok.padding_side = "right"
    args, state, model, tok = begin(callback, tmp_path, tok=tok, model=model)
    callback.on_epoch_end(args, at(state, 4, 1.0), TrainerControl(), model=model)
    assert tok.padding_side == "right" and model.training and model.config.use_cache is False
    assert model.is_activation_checkpointing
    callback.on_train_end(args, state, TrainerControl())
    assert sqlite_store.rounds(callback.job_id)["sample_count"].tolist() == [4]


def test_a_failing_round_is_logged_and_training_goes_on(tmp_path, sqlite_store, caplog):
    callback = PredictionsCallback(SAMPLES, num_samples=2, store=sqlite_store)
    args, state, _model, _ = begin(callback, tmp_path)
    broken = torch.nn.Linear(1, 1)  # no generate(): the round fails inside
    with caplog.at_level(logging.ERROR):
        assert callback.on_epoch_end(args, at(state, 4, 1.0), TrainerControl(), model=broken) is None
    assert "generation failed" in caplog.text
    callback.on_train_end(args, state, TrainerControl())


@pytest.mark.parametrize(
    ("source", "options", "error", "message"),
    [
        ([{"question": "q"}], {"num_samples": 1}, DatasetError, "no field 'prompt'; fields: 'question'"),
        (SAMPLES, {"num_samples": 13}, DatasetError, "num_samples=13 but the source has only 12 rows"),
        (SAMPLES, {"use_chat_template": "on"}, ConfigError, "has no chat_template"),
    ],
)
def test_prerequisites_fail_at_train_begin(tmp_path, sqlite_store, source, options, error, message):
    callback = PredictionsCallback(source, store=sqlite_store, **options)
    with pytest.raises(error, match=message):
        begin(callback, tmp_path)


def test_a_tokenizer_is_required(tmp_path, sqlite_store):
    callback = PredictionsCallback(SAMPLES, num_samples=2, store=sqlite_store)
    with pytest.raises(ConfigError, match="processing_class"):
        callback.on_train_begin(h.arguments(tmp_path), TrainerState(), TrainerControl(), model=h.model())


def test_equal_shards_pad_the_last_one():
    assert equal_shards([1, 2, 3, 4, 5], 2) == [[1, 2, 3], [4, 5, 5]]
    assert equal_shards([1], 3) == [[1], [1], [1]]
    assert equal_shards([1, 2], 1) == [[1, 2]]


# real Trainer runs


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_two_epochs_with_a_real_trainer(tmp_path, sqlite_store, kind):
    callback = PredictionsCallback(SAMPLES, num_samples=4, max_new_tokens=4, store=sqlite_store)
    recorder = h.EventRecorder()
    h.trainer(tmp_path, [callback, recorder], kind=kind, run_name=f"tiny-{kind}").train()
    assert recorder.events.count("on_epoch_end") == 2
    rows = sqlite_store.predictions_page(callback.job_id, PageQuery(limit=100)).rows
    assert len(rows) == 2 * 4 and rows["char_error_rate"].notna().all()
    by_step = rows.groupby("step")["sample_index"].apply(sorted)
    assert by_step.index.tolist() == [4, 8] and by_step.iloc[0] == by_step.iloc[1]
    assert sorted(rows["epoch"].unique()) == [1, 2]
    assert sqlite_store.list_jobs()[0].status == "finished"


@pytest.mark.slow
def test_chat_format_with_a_chat_template_end_to_end(tmp_path, sqlite_store):
    tok = h.tokenizer(chat=True)
    callback = PredictionsCallback(h.chat_rows(6), num_samples=3, max_new_tokens=4, store=sqlite_store)
    h.trainer(tmp_path, [callback], kind="llama", tok=tok, epochs=1, run_name="chat").train()
    rows = sqlite_store.predictions_page(callback.job_id, PageQuery(limit=100)).rows
    assert len(rows) == 3 and rows["char_error_rate"].notna().all()
    truths = {m["messages"][-1]["content"] for m in h.chat_rows(6)}
    assert set(rows["ground_truth"]) <= truths
    assert all(p.startswith("system: reverse\nuser: ") for p in rows["prompt"])


@pytest.mark.slow
def test_a_store_down_for_the_whole_run_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
    db = tmp_path / "p.db"
    store = SQLiteStore(db, timeout_s=0.05)
    callback = PredictionsCallback(SAMPLES, num_samples=3, max_new_tokens=3, store=store)
    with h.locked(db):
        trainer = h.trainer(tmp_path, [callback], run_name="down")
        trainer.train()
    assert trainer.state.global_step == 8 and h.count_rows(db, callback.job_id) == 0
    outbox = tmp_path / "p.outbox.db"
    assert ops(outbox) == ["start_job", "write_predictions", "write_predictions", "finish_job"]
    assert replay_into(store, outbox).stored == 4
    assert replay_into(store, outbox).stored == 0
    assert h.count_rows(db, callback.job_id) == 6
    assert store.list_jobs()[0].status == "finished"


CRASHING_RUN = """
import sys
from pathlib import Path

from transformers import TrainerCallback

from predictions import PredictionsCallback
from tests import helpers_training as h

class CrashAtEpoch2(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kwargs):
        if state.epoch >= 2:
            raise RuntimeError("out of memory, say")

callback = PredictionsCallback(h.pairs(12), num_samples=3, max_new_tokens=3, job_id="crashed")
h.trainer(Path(sys.argv[1]), [callback, CrashAtEpoch2()]).train()
"""


@pytest.mark.slow
def test_a_run_that_crashes_is_marked_failed_with_its_rounds_stored(tmp_path, monkeypatch):
    db = tmp_path / "p.db"
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    # Forked from the zygote: its child ends as a real interpreter does on an uncaught exception (the
    # traceback, exit code 1, atexit), which test_zygote checks on both.
    run = zygote.run_python("-c", CRASHING_RUN, tmp_path, cwd=ROOT, timeout=300)
    assert run.returncode != 0 and "out of memory, say" in run.stderr
    store = SQLiteStore(db)
    assert [(job.id, job.status) for job in store.list_jobs()] == [("crashed", "failed")]
    assert h.count_rows(db, "crashed") == 2 * 3  # the round of the epoch that crashed too
    store.close()


class Worsen(TrainerCallback):
    """Makes the model answer one fixed character per epoch: 'a', then 'b', then 'c'."""

    def __init__(self, tok, characters):
        self.ids = [tok.convert_tokens_to_ids(c) for c in characters]

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        token = self.ids[min(round(state.epoch), len(self.ids) - 1)]
        with torch.no_grad():
            model.transformer.ln_f.weight.zero_()
            model.transformer.ln_f.bias.zero_()
            model.transformer.ln_f.bias[0] = 1.0  # every position's final hidden state is e0
            model.lm_head.weight.zero_()
            model.lm_head.weight[token, 0] = 1.0  # so this token always wins


@pytest.mark.slow
def test_stop_after_regressions_stops_a_run_that_gets_worse(tmp_path, sqlite_store):
    samples = [{"prompt": "x=", "response": truth} for truth in ("aaaa", "aaab", "aabb")]
    tok = h.tokenizer()
    callback = PredictionsCallback(
        samples, num_samples=3, max_new_tokens=4, stop_after_regressions=2, store=sqlite_store
    )
    trainer = h.trainer(
        tmp_path, [callback, Worsen(tok, "abc")], tok=tok, epochs=6, learning_rate=0.0, run_name="worse"
    )
    trainer.train()
    cers = sqlite_store.trends(callback.job_id).rounds["avg_char_error_rate"].round(4).tolist()
    assert cers == [0.25, 0.75, 1.0]  # two rises in a row: stopped after the third of six epochs
    assert trainer.state.epoch == 3


@pytest.mark.slow
def test_dataset_problems_stop_the_trainer_before_the_first_step(tmp_path, sqlite_store):
    recorder = h.EventRecorder()
    callback = PredictionsCallback([{"text": "no prompt"}], num_samples=1, store=sqlite_store)
    trainer = h.trainer(tmp_path, [callback, recorder])
    with pytest.raises(DatasetError, match="fields: 'text'"):
        trainer.train()
    assert "on_step_begin" not in recorder.events and trainer.state.global_step == 0
