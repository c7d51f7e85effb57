"""Hyperparameter search: which trial a run is, and whether the search pruned it.

`Trainer.hyperparameter_search` runs `train()` once per trial with the same callbacks. Each trial is
its own job: its id and name end with the trial's label, its context records the trial's number and
hyperparameters. Optuna prunes a trial from inside `train()`, after an evaluation: the Trainer calls
`on_train_end` and then raises `optuna.TrialPruned`, so at train end the trial itself is asked.

The trial object is the Trainer's `_trial` (transformers' own `TrainerState.init_training_references`
reads it the same way); a Trainer outside a search has none (`train()` sets it to None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import TrainerState

from predictions.store.records import TrainerStop
from predictions.training.monitor import finite_number

OPTUNA = "optuna"
"""transformers' `HPSearchBackend.OPTUNA` value: the only backend that prunes from inside `train()`."""


@dataclass(frozen=True)
class SearchTrial:
    """A trial of a hyperparameter search: `number` (Optuna's, from 0; None where the backend has
    none), `label` (the Trainer's `hp_name`, else `trial-<number>`) and the hyperparameters it tries."""

    number: int | None
    label: str
    params: dict[str, Any] | None

    def context(self) -> dict[str, Any]:
        """What the job's training context records about the trial (shown on Trends and Compare)."""
        return {"trial": self.label if self.number is None else self.number, "hyperparameters": self.params}


def search_trial(trainer: Any, state: TrainerState) -> SearchTrial | None:
    """The trial this run is, when the Trainer runs a hyperparameter search; None otherwise."""
    trial = getattr(trainer, "_trial", None)
    if getattr(trainer, "hp_search_backend", None) is None or trial is None:
        return None
    number = getattr(trial, "number", None)
    number = number if isinstance(number, int) else None
    label = state.trial_name or (f"trial-{number}" if number is not None else "trial")
    return SearchTrial(number, str(label), dict(state.trial_params) if state.trial_params else None)


def search_prune(trainer: Any, state: TrainerState) -> TrainerStop | None:
    """Why the search ended this trial at train end, when Optuna pruned it: its pruner, the step, and
    the objective the trial reported there; None when it was not pruned (or is no Optuna trial).

    Asked at `on_train_end`, before anything is logged there. The Trainer calls that hook in two places:
    at the end of its loop, just after logging its end-of-training summary, and inside its report to
    the search, after the trial's `should_prune()` said yes, just before raising `TrialPruned`. Only
    the second is asked again (`should_prune()`, to be sure it is one): at a normal end a study shared
    with other workers may have changed its verdict since the trial's last report."""
    trial = getattr(trainer, "_trial", None)
    if _backend(trainer) != OPTUNA or not callable(getattr(trial, "should_prune", None)):
        return None
    if ran_to_its_end(state):
        return None
    try:
        pruned = trial.should_prune()
    except NotImplementedError:  # a multi-objective study: Optuna cannot prune it, nor does the Trainer
        return None
    if not pruned:
        return None
    return TrainerStop(
        state.global_step,
        state.max_steps,
        by=(type(trial.study.pruner).__name__,),
        search=OPTUNA,
        trial=trial.number,
        objective=finite_number(getattr(trainer, "objective", None)),
    )


def ran_to_its_end(state: TrainerState) -> bool:
    """Whether the Trainer's end-of-training summary (`train_loss`, `total_flos`) is the last thing it
    logged: it logs that only when its loop ends, right before its own `on_train_end`."""
    last = state.log_history[-1] if state.log_history else {}
    return "total_flos" in last and "train_loss" in last


def _backend(trainer: Any) -> str | None:
    """The Trainer's search backend by name ("optuna"), None outside a search."""
    backend = getattr(trainer, "hp_search_backend", None)
    return getattr(backend, "value", backend)
