"""The round's averages in the Trainer's own logs: `state.log_history` and every `report_to` integration
(TensorBoard's event files here), at the round's step, equal to what the store and `round()` give."""

from __future__ import annotations

import threading

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import TrainerCallback

from predictions import PredictionsCallback, PredictionsMonitor
from predictions.scoring.metrics import METRICS
from tests import helpers_training as h

SAMPLES = h.pairs(12)


def scalars(log_dir, tag: str) -> dict[int, float]:
    """Every value TensorBoard's event files under `log_dir` hold for `tag`, by step."""
    found = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            found.update({event.step: event.value for event in accumulator.Scalars(tag)})
    return found


@pytest.mark.slow
def test_each_rounds_averages_reach_tensorboard_and_log_history_at_its_step(tmp_path, sqlite_store):
    scorers = {"starts_right": lambda prediction, truth, sample: prediction[:1] == (truth or "")[:1]}
    callback = PredictionsCallback(
        SAMPLES, num_samples=4, max_new_tokens=4, store=sqlite_store, scorers=scorers
    )
    trainer = h.trainer(
        tmp_path, [callback], epochs=2, report_to=["tensorboard"], logging_strategy="steps", logging_steps=1
    )
    trainer.train()

    rounds = sqlite_store.trends(callback.job_id).rounds
    assert rounds["step"].tolist() == [4, 8]
    logged = {
        entry["step"]: entry for entry in trainer.state.log_history if "predictions/char_error_rate" in entry
    }
    assert sorted(logged) == [4, 8]
    for _, round_ in rounds.iterrows():
        entry = logged[int(round_["step"])]
        for name in [*METRICS, "starts_right"]:
            assert entry[f"predictions/{name}"] == pytest.approx(round_[f"avg_{name}"]), name
    # the Trainer's own loss log at a round's step is still there: the callback kept its log flag
    assert sorted(e["step"] for e in trainer.state.log_history if "loss" in e) == list(range(1, 9))

    # the integrations file the Trainer's training logs under train/, as they do the loss
    cer = scalars(tmp_path / "out", "train/predictions/char_error_rate")
    assert sorted(cer) == [4, 8]
    assert [cer[4], cer[8]] == pytest.approx(rounds["avg_char_error_rate"].tolist(), abs=1e-6)
    assert sorted(scalars(tmp_path / "out", "train/predictions/starts_right")) == [4, 8]


class ReleaseAt(TrainerCallback):
    """Sets `event` at the end of optimizer step `step`."""

    def __init__(self, step: int, event: threading.Event):
        self.step, self.event = step, event

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.event.set()


@pytest.mark.slow
def test_a_round_scored_after_later_steps_is_logged_at_its_own_step_and_epoch(tmp_path, sqlite_store):
    """Rounds are scored off the training thread: round 4's scorer is held until step 6 has ended, so
    training goes on and the averages are logged later, filed at step 4 and epoch 1 all the same."""
    release = threading.Event()

    def gated(prediction, truth, sample):
        release.wait(60)
        return 1.0

    callback = PredictionsCallback(
        SAMPLES, num_samples=4, max_new_tokens=4, store=sqlite_store, scorers={"gated": gated}
    )
    options = {"epochs": 2, "logging_strategy": "steps", "logging_steps": 1}
    trainer = h.trainer(tmp_path, [callback, ReleaseAt(6, release)], **options)
    trainer.train()
    history = trainer.state.log_history
    at = [i for i, entry in enumerate(history) if "predictions/gated" in entry]
    assert [(history[i]["step"], history[i]["epoch"]) for i in at] == [(4, 1.0), (8, 2.0)]
    earlier = history[: at[0]]
    assert any(entry.get("step") == 6 and "loss" in entry for entry in earlier)  # logged after step 6
    assert trainer.state.global_step == 8  # the Trainer's own step was put back


def test_round_returns_the_averages_the_store_shows(sqlite_store):
    tok = h.tokenizer()
    model = h.model(tok=tok)
    with PredictionsMonitor(
        SAMPLES, tokenizer=tok, num_samples=4, max_new_tokens=3, store=sqlite_store
    ) as monitor:
        monitor.start(model)
        result = monitor.round(model, step=3, epoch=1)
        again = monitor.round(model, step=3, epoch=1)
    assert result.step == 3 and not result.should_stop and not result  # truthy only when it says stop
    assert again.averages == {}  # the same step again: no second round, nothing to report
    (stored,) = sqlite_store.trends(monitor.job_id).rounds.to_dict("records")
    assert set(result.averages) == set(METRICS)
    for name, value in result.averages.items():
        assert value == pytest.approx(stored[f"avg_{name}"])
