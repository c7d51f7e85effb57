"""PredictionsMonitor and what it checks at start: the non-Trainer API, the preflight that fails bad
generation options before the first step, job identity (a run never merges into another by accident),
and the exact model input shown on the Samples page."""

from __future__ import annotations

import logging

import pytest

from predictions import ConfigError, DatasetError, PredictionsCallback, PredictionsMonitor
from predictions.dashboard.widgets import plain
from predictions.store import SQLiteStore
from tests import helpers_training as h

SAMPLES = h.pairs(12)
BROKEN_TEMPLATE = "{{ raise_exception('this template is broken') }}"


# the non-Trainer API


def test_a_plain_loop_gets_rounds_and_a_finished_job(sqlite_store):
    tok = h.tokenizer()
    model = h.model(tok=tok)
    with PredictionsMonitor(
        SAMPLES, tokenizer=tok, num_samples=3, max_new_tokens=3, store=sqlite_store
    ) as monitor:
        job_id = monitor.start(model)
        assert not monitor.round(model, step=5, epoch=1).should_stop
        monitor.round(model, tok, step=5, epoch=1)  # the same step again: no second round
        monitor.round(model, step=10, epoch=2)
    rounds = sqlite_store.rounds(job_id)
    assert rounds["step"].tolist() == [5, 10] and rounds["epoch"].tolist() == [1, 2]
    (job,) = sqlite_store.list_jobs()
    assert (job.id, job.status, job.name) == (job_id, "finished", job_id)
    assert job_id.startswith("run-")


def test_a_block_that_raises_marks_the_job_failed(sqlite_store):
    tok = h.tokenizer()
    model = h.model(tok=tok)
    monitor = PredictionsMonitor(SAMPLES, tokenizer=tok, num_samples=2, max_new_tokens=2, store=sqlite_store)
    with pytest.raises(RuntimeError, match="out of memory"), monitor:
        monitor.start(model, name="doomed")
        monitor.round(model, step=1, epoch=1)
        raise RuntimeError("out of memory")
    (job,) = sqlite_store.list_jobs()
    assert (job.name, job.status, job.round_count) == ("doomed", "failed", 1)


def test_a_small_source_is_tracked_whole_when_num_samples_was_not_given(sqlite_store, caplog):
    tok = h.tokenizer()
    monitor = PredictionsMonitor(SAMPLES[:5], tokenizer=tok, max_new_tokens=2, store=sqlite_store)
    with caplog.at_level(logging.INFO, logger="predictions.training.samples"):
        monitor.start(h.model(tok=tok))
    assert [s.index for s in monitor.samples] == [0, 1, 2, 3, 4]
    assert "the samples have 5 rows, fewer than the default 16: all are tracked" in caplog.text
    monitor.finish()
    with pytest.raises(DatasetError, match="num_samples=6 but the source has only 5 rows"):
        PredictionsMonitor(SAMPLES[:5], tokenizer=tok, num_samples=6, store=sqlite_store).start(
            h.model(tok=tok)
        )


def test_a_text_only_dataset_says_which_fields_to_add(sqlite_store):
    monitor = PredictionsMonitor([{"text": "abc=cba"}], tokenizer=h.tokenizer(), store=sqlite_store)
    with pytest.raises(
        DatasetError, match=r"language-modelling dataset .*add 'prompt' and 'completion' fields"
    ):
        monitor.start(h.model())


# preflight: bad generation options fail before the first training step


@pytest.mark.parametrize(
    ("options", "chat", "message"),
    [
        ({"generation_kwargs": {"foo": 1}}, False, r"generation_kwargs foo=1 makes generate\(\) fail"),
        (
            {"generation_kwargs": {"top_k": 5, "return_dict_in_generate": True}},
            False,
            r"generation_kwargs return_dict_in_generate=True makes generate\(\) fail .*not token ids",
        ),
        (
            {"max_new_tokens": 90},
            False,
            r"max_new_tokens=90 does not fit: .* model has 96 positions; valid: max_new_tokens <= 89",
        ),
        (
            {"max_new_tokens": 4},
            True,
            r"tokenizer=\w+ cannot render and tokenize .*TemplateError: this template is broken",
        ),
    ],
    ids=["unknown-argument", "dict-output", "too-many-new-tokens", "unusable-tokenizer"],
)
def test_a_bad_generation_option_fails_before_the_first_step(tmp_path, sqlite_store, options, chat, message):
    tok = h.tokenizer(chat=chat)
    if chat:
        tok.chat_template = BROKEN_TEMPLATE
    source = h.chat_rows(6) if chat else SAMPLES
    recorder = h.EventRecorder()
    callback = PredictionsCallback(source, num_samples=4, store=sqlite_store, **options)
    trainer = h.trainer(tmp_path, [callback, recorder], tok=tok)
    with pytest.raises(ConfigError, match=message):
        trainer.train()
    assert "on_step_begin" not in recorder.events and trainer.state.global_step == 0
    assert sqlite_store.list_jobs() == []  # and no job was registered


def test_only_the_failing_option_is_named(sqlite_store):
    tok = h.tokenizer()
    monitor = PredictionsMonitor(
        SAMPLES, tokenizer=tok, max_new_tokens=3, store=sqlite_store, generation_kwargs={"top_k": 5, "foo": 1}
    )
    with pytest.raises(ConfigError) as raised:
        monitor.start(h.model(tok=tok))
    assert "foo=1" in str(raised.value) and "top_k" not in str(raised.value)


# job identity


def test_an_explicit_job_id_with_rounds_continues_only_on_resume(store):
    tok = h.tokenizer()
    model = h.model(tok=tok)
    options = {"num_samples": 2, "max_new_tokens": 2, "store": store, "job_id": "fixed"}
    with PredictionsMonitor(SAMPLES, tokenizer=tok, **options) as first:
        first.start(model)
        first.round(model, step=4, epoch=1)
    again = PredictionsMonitor(SAMPLES, tokenizer=tok, **options)
    with pytest.raises(
        ConfigError, match=r"job_id='fixed' already has 1 round\(s\) in .*resume_from_checkpoint"
    ):
        again.start(model, step=0)
    with PredictionsMonitor(SAMPLES, tokenizer=tok, **options) as resumed:
        assert resumed.start(model, step=4) == "fixed"
        resumed.round(model, step=8, epoch=2)
    assert store.rounds("fixed")["step"].tolist() == [4, 8]


@pytest.mark.slow
def test_two_runs_with_the_same_run_name_are_two_jobs(tmp_path, sqlite_store):
    for _ in range(2):
        callback = PredictionsCallback(SAMPLES, num_samples=2, max_new_tokens=2, store=sqlite_store)
        h.trainer(tmp_path, [callback], epochs=1, run_name="same name").train()
    jobs = sqlite_store.list_jobs()
    assert len({job.id for job in jobs}) == 2 and [job.name for job in jobs] == ["same name"] * 2
    assert all(job.id.startswith("same-name-") and job.round_count == 1 for job in jobs)


@pytest.mark.slow
def test_a_reused_job_id_fails_before_step_1_and_a_resumed_run_continues_it(tmp_path, sqlite_store):
    options = {"num_samples": 2, "max_new_tokens": 2, "store": sqlite_store, "job_id": "resumable"}
    h.trainer(tmp_path, [PredictionsCallback(SAMPLES, **options)], epochs=2, save_strategy="epoch").train()
    recorder = h.EventRecorder()
    fresh = h.trainer(tmp_path, [PredictionsCallback(SAMPLES, **options), recorder], epochs=3)
    with pytest.raises(ConfigError, match=r"job_id='resumable' already has 2 round\(s\)"):
        fresh.train()
    assert "on_step_begin" not in recorder.events and fresh.state.global_step == 0
    resumed = h.trainer(tmp_path, [PredictionsCallback(SAMPLES, **options)], epochs=3)
    resumed.train(resume_from_checkpoint=True)
    assert sqlite_store.rounds("resumable")["step"].tolist() == [4, 8, 12]
    assert [(job.id, job.status) for job in sqlite_store.list_jobs()] == [("resumable", "finished")]


# what the model was given, on the Samples page


def test_the_samples_page_shows_the_exact_text_given_to_the_model(tmp_path, open_app):
    db = tmp_path / "p.db"
    store = SQLiteStore(db)
    tok = h.tokenizer(chat=True)
    model = h.model(tok=tok)
    with PredictionsMonitor(h.chat_rows(3), tokenizer=tok, max_new_tokens=2, store=store) as monitor:
        monitor.start(model, name="chat")
        monitor.round(model, step=1, epoch=1)
    store.close()
    at = open_app(db, job=monitor.job_id, page="pages/samples.py")
    (expander,) = [e for e in at.expander if e.label.startswith("Text given to the model")]
    # shown as text: the rendering's name is escaped, so no job-written Markdown is interpreted
    assert expander.label == plain("Text given to the model (chat_template)")
    prompt = h.chat_rows(3)[at.selectbox(key="sample").value]["messages"][1]["content"]
    # token by token as the model gets it: the tiny vocabulary has no 'r', 'v' or 's', and it shows
    assert expander.code[0].value == f"<system><unk>e<unk>e<unk><unk>e<eos><user>{prompt}<eos><assistant>"
