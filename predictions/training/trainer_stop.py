"""Whether another part of the run stopped the Trainer before its planned end, and why, as far as it says.

The rule, read at `on_train_end`: training was stopped early when the Trainer's stop flag
(`control.should_training_stop`) is set and `state.global_step < state.max_steps`.

- Both counts are optimizer steps, so gradient accumulation counts the same on both sides.
- `state.max_steps` is this run's own plan: `max_steps`, or `num_train_epochs` turned into steps when
  `max_steps=-1`. A resumed run is judged against the plan of the arguments it resumed with.
- Reaching `max_steps` sets the flag too (`DefaultFlowCallback`), so the step is compared: a run that
  reaches it exactly finished, even when a callback asked to stop at that very step.
- A run whose epochs all end before `max_steps` without the flag ran its course (a dataloader shorter than
  its length said, a callback that only set `should_epoch_stop`): finished.
- The flag is reset at `on_train_begin`, so a resumed run carries no stop over from its checkpoint.

Who stopped it: transformers' `EarlyStoppingCallback` when its patience counter reached its patience (it
sets the flag exactly then); otherwise the Trainer does not say, so the reason lists the run's own
callbacks (those not from transformers), any of which may have set it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from transformers import EarlyStoppingCallback, TrainerControl, TrainerState, TrainingArguments

from predictions.store.records import TrainerStop
from predictions.training.monitor import finite_number


def trainer_stop(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, callbacks: Sequence[Any]
) -> TrainerStop | None:
    """Why training ended before `state.max_steps` (the module's rule), or None when it ran its course.
    `callbacks` are the Trainer's other callbacks (not the one asking)."""
    if not control.should_training_stop or state.global_step >= state.max_steps:
        return None
    stopper = next((callback for callback in callbacks if patience_ran_out(callback)), None)
    if stopper is None:
        return TrainerStop(state.global_step, state.max_steps, by=own_callbacks(callbacks))
    metric = checked_metric(args.metric_for_best_model)
    best = finite_number(state.best_metric)  # None when unset or not finite (all evaluations NaN)
    return TrainerStop(
        state.global_step,
        state.max_steps,
        by=(type(stopper).__name__,),
        metric=metric,
        greater_is_better=bool(args.greater_is_better),
        rounds=int(stopper.early_stopping_patience_counter),
        patience=int(stopper.early_stopping_patience),
        best_value=best,
        best_step=state.best_global_step or logged_step(state.log_history, metric, best),
        best_checkpoint=os.path.basename(checkpoint) if (checkpoint := state.best_model_checkpoint) else None,
    )


def callbacks_beside(trainer: Any, callback: Any) -> list[Any]:
    """The Trainer's callbacks other than `callback` (none when no Trainer is known: hooks called by hand)."""
    handler = getattr(trainer, "callback_handler", None)
    return [other for other in getattr(handler, "callbacks", ()) if other is not callback]


def patience_ran_out(callback: Any) -> bool:
    """An `EarlyStoppingCallback` (or a subclass) whose counter reached its patience: it stopped the run."""
    return isinstance(callback, EarlyStoppingCallback) and (
        callback.early_stopping_patience_counter >= callback.early_stopping_patience
    )


def own_callbacks(callbacks: Sequence[Any]) -> tuple[str, ...]:
    """The class names of the callbacks the run added itself: not transformers' own (progress, logging
    integrations), which never stop training."""
    names = (type(callback) for callback in callbacks)
    return tuple(kind.__name__ for kind in names if not kind.__module__.startswith("transformers."))


def logged_step(history: Sequence[dict[str, Any]], metric: str | None, best: float | None) -> int | None:
    """The step the Trainer logged its best value at: the Trainer keeps `best_global_step` only when it
    saves checkpoints, but every evaluation is in `log_history`."""
    if metric is None or best is None:
        return None
    found = (entry.get("step") for entry in history if entry.get(metric) == best)
    return next((step for step in found if isinstance(step, int)), None)


def checked_metric(name: str | None) -> str | None:
    """`metric_for_best_model` as the Trainer and EarlyStoppingCallback look it up: `eval_`-prefixed."""
    if not name:
        return None
    return name if name.startswith("eval_") else f"eval_{name}"
