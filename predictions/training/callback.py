"""`PredictionsCallback`: the Trainer's hooks mapped onto a `PredictionsMonitor`, one code path for both.

Train begin starts the monitor (every check before the first step), each epoch end (and every N
steps) runs a round, train end finishes the job. Configuration, dataset and generation problems
fail before the first step; after that a failing round is logged and skipped, never raised.

Each round's averages go through the Trainer's own `log()` (as `predictions/<metric>`), so every
`report_to` integration and `state.log_history` get them, at the round's step: a round is scored off
the training thread, so its averages are logged at the first hook after they are ready (the last
round, and every round with the early-stop rule on, waits for them). The job id and the run's number
are kept in the TrainerState, which every checkpoint saves, so `resume_from_checkpoint` continues the
same job as its next run. Under `Trainer.hyperparameter_search` each trial is its own job, and a trial
the search prunes reads stopped (`search`).
"""

from __future__ import annotations

import sys
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from predictions.config import PredictionsConfig
from predictions.delivery.writer import Writer
from predictions.scoring.sample import Sample
from predictions.training import notebook
from predictions.training.monitor import PredictionsMonitor
from predictions.training.outcome import RoundResult
from predictions.training.run_context import clean_context, trainer_context
from predictions.training.search import search_prune, search_trial
from predictions.training.trainer_stop import callbacks_beside, trainer_stop

LOG_PREFIX = "predictions/"
"""The Trainer log keys of a round's averages: `predictions/char_error_rate`, `predictions/<scorer>`."""
STATE_KEY = "predictions_job"
"""Where the job id lives in `TrainerState.stateful_callbacks` (saved in every checkpoint's
trainer_state.json). Not a class name, so the Trainer never tries to rebuild a callback from it."""


class PredictionsCallback(TrainerCallback):
    """Generates, scores and stores the model's answers to a fixed set of samples, round by round.

    `samples` is a `datasets.Dataset`, a list of dicts or a .jsonl/.json/.csv path; `tokenizer`
    defaults to the Trainer's `processing_class`; every other keyword is a `PredictionsConfig` field.
    """

    def __init__(self, samples: Any, *, tokenizer: Any = None, **options: Any):
        self.monitor = PredictionsMonitor(samples, tokenizer=tokenizer, **options)
        self._trainer: Any = None
        self._unlogged: list[tuple[RoundResult, float | None]] = []
        """Rounds whose averages are not logged yet, with the Trainer's epoch at the round."""
        self._latest: RoundResult | None = None

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

    @property
    def latest_averages(self) -> dict[str, float]:
        """This run's latest round's averages by metric name, waiting for them while they are scored
        ({} before its first round): a search's `compute_objective` can optimise the answers, e.g.
        `lambda metrics: callback.latest_averages["char_error_rate"]`. A round runs before the Trainer
        evaluates at the same step (epoch end or `every_n_steps` = `eval_steps`), so it is that step's."""
        return self._latest.averages if self._latest is not None else {}

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Every check before the first step; a run resumed from a checkpoint continues its job, and the
        job records the run's context (learning rate, epochs, batch size, seed, dataset size ...)."""
        trainer = calling_trainer(self)
        trial = search_trial(trainer, state)
        training = trainer_context(args, state, trainer, kwargs.get("train_dataloader"))
        self.monitor.start(
            kwargs.get("model"),
            kwargs.get("processing_class"),
            step=state.global_step,
            name=args.run_name,
            is_main=state.is_world_process_zero,
            resumed_job_id=resumed_job_id(state),
            resumed_run_number=resumed_run_number(state),
            training=training | clean_context(trial.context()) if trial else training,
            trial=trial.label if trial else None,
        )
        state.stateful_callbacks[STATE_KEY] = {
            "job_id": self.monitor.job_id,
            "run_number": self.monitor.run_number,
        }
        self.monitor.progress = lambda: (state.global_step, state.max_steps)  # read at an interrupt
        notebook.watch(self.monitor, with_cell=True)  # train() returns only after train end
        self._trainer, self._unlogged, self._latest = trainer, [], None

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self._unlogged:
            self._log_scored(control)
        if self.monitor.round_due(state.global_step):
            return self._round(state, control, kwargs.get("model"))
        return None

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        return self._round(state, control, kwargs.get("model"))

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs
    ):
        """Keep the Trainer's training loss, eval loss and learning rate beside the answers."""
        if state.is_world_process_zero and logs:
            self.monitor.log_training(state.global_step, logs)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Log the rounds not logged yet, mark the job finished, or stopped when training ended before
        its planned last step (by the early-stop rule, another callback: `trainer_stop`, or a
        hyperparameter search that pruned the trial: `search_prune`), and wait for the writer to store
        (or spool) every row."""
        pruned = search_prune(self._trainer, state)  # before this hook logs: it reads the last log
        self._log_scored(control, wait=True)
        stopped = pruned or trainer_stop(args, state, control, callbacks_beside(self._trainer, self))
        self.monitor.finish("finished", stopped=stopped)
        self._trainer = None

    def _round(self, state: TrainerState, control: TrainerControl, model: Any) -> TrainerControl | None:
        """One round at this step; returns `control` only when it changed (the run should stop)."""
        result = self.monitor.round(model, step=state.global_step, epoch=state.epoch or 0.0)
        if state.is_world_process_zero:
            self._unlogged.append((result, state.epoch))
            if not result.scored or result.averages:  # not a step already done, nor a skipped round
                self._latest = result
            self._log_scored(control, wait=state.global_step >= state.max_steps)  # the last: no later hook
        if result.should_stop:
            control.should_training_stop = True
            return control
        return None

    def _log_scored(self, control: TrainerControl, wait: bool = False) -> None:
        """Log the rounds whose averages are ready, in order (all of them with `wait`)."""
        while self._unlogged and (wait or self._unlogged[0][0].scored):
            result, epoch = self._unlogged.pop(0)
            self._log(result, epoch, control)

    def _log(self, result: RoundResult, epoch: float | None, control: TrainerControl) -> None:
        """The averages through `Trainer.log`, at the round's step and epoch: the Trainer's state says
        them for the length of the call, so `log_history` and every integration file them there. The
        Trainer's own log flag is kept (its `on_log` clears it, which would drop a loss log due now)."""
        if not result.averages or self._trainer is None:
            return
        state, should_log = self._trainer.state, control.should_log
        now = state.global_step, state.epoch
        state.global_step, state.epoch = result.step, epoch
        try:
            self._trainer.log({LOG_PREFIX + name: value for name, value in result.averages.items()})
        finally:
            state.global_step, state.epoch = now
            control.should_log = should_log


def resumed_job_id(state: TrainerState, key: str = STATE_KEY) -> str | None:
    """The job id a checkpoint's TrainerState carries under `key` (None for a fresh run or an older
    checkpoint)."""
    saved = (state.stateful_callbacks or {}).get(key)
    job_id = saved.get("job_id") if isinstance(saved, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None


def resumed_run_number(state: TrainerState) -> int | None:
    """The run number a checkpoint's TrainerState carries (None for a fresh run or an older checkpoint)."""
    saved = (state.stateful_callbacks or {}).get(STATE_KEY)
    number = saved.get("run_number") if isinstance(saved, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def calling_trainer(callback: TrainerCallback) -> Any:
    """The Trainer running this hook: the nearest caller whose `callback_handler` holds this callback.

    A callback is not given its Trainer, and the Trainer's `log()` is the one call that reaches
    every `report_to` integration and `log_history`; an `on_log` hook of ours would run after the
    integrations have written. None when no Trainer is calling (a hook called by hand).
    """
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        handler = getattr(owner, "callback_handler", None)
        if any(item is callback for item in getattr(handler, "callbacks", ())) and callable(
            getattr(owner, "log", None)
        ):
            return owner
        frame = frame.f_back
    return None
