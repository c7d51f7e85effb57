"""`PredictionsCallback`: the Trainer's hooks mapped onto a `PredictionsMonitor`, one code path for both.

Train begin starts the monitor (every check before the first step), each epoch end (and every N
steps) runs a round, train end finishes the job. Configuration, dataset and generation problems
fail before the first step; after that a failing round is logged and skipped, never raised.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from predictions.config import PredictionsConfig
from predictions.delivery.writer import Writer
from predictions.scoring.sample import Sample
from predictions.training.monitor import PredictionsMonitor


class PredictionsCallback(TrainerCallback):
    """Generates, scores and stores the model's answers to a fixed set of samples, round by round.

    `samples` is a `datasets.Dataset`, a list of dicts or a .jsonl/.json/.csv path; `tokenizer`
    defaults to the Trainer's `processing_class`; every other keyword is a `PredictionsConfig` field.
    """

    def __init__(self, samples: Any, *, tokenizer: Any = None, **options: Any):
        self.monitor = PredictionsMonitor(samples, tokenizer=tokenizer, **options)

    @property
    def config(self) -> PredictionsConfig:
        return self.monitor.config

    @property
    def job_id(self) -> str | None:
        return self.monitor.job_id

    @property
    def writer(self) -> Writer | None:
        return self.monitor.writer

    @property
    def samples(self) -> list[Sample]:
        return self.monitor.samples

    @property
    def skipped(self) -> dict[int, list[int]]:
        return self.monitor.skipped

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Every check before the first step; a resumed run (global_step > 0) may continue its job_id."""
        self.monitor.start(
            kwargs.get("model"),
            kwargs.get("processing_class"),
            step=state.global_step,
            name=args.run_name,
            is_main=state.is_world_process_zero,
        )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.monitor.round_due(state.global_step):
            return self._round(state, control, kwargs.get("model"))
        return None

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        return self._round(state, control, kwargs.get("model"))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Mark the job finished and wait for the writer to store (or spool) every row."""
        self.monitor.finish("finished")

    def _round(self, state: TrainerState, control: TrainerControl, model: Any) -> TrainerControl | None:
        """One round at this step; returns `control` only when it changed (the run should stop)."""
        if self.monitor.round(model, step=state.global_step, epoch=state.epoch or 0.0):
            control.should_training_stop = True
            return control
        return None
