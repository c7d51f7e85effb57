"""Predictions Monitor: watch a fine-tune's answers improve, round by round.

Names are imported lazily, so `import predictions` (and the dashboard) never loads torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from predictions.config import PredictionsConfig
    from predictions.errors import (
        AuthError,
        ConfigError,
        DatasetError,
        PredictionsError,
        ReadOnlyStoreError,
        StoreError,
        StoreUnavailableError,
    )
    from predictions.scoring.metrics import Scores, score, score_batch
    from predictions.store import open_store
    from predictions.training.callback import PredictionsCallback
    from predictions.training.monitor import PredictionsMonitor
    from predictions.training.rollouts import RolloutRecorder

_EXPORTS = {
    "PredictionsCallback": "predictions.training.callback",
    "PredictionsConfig": "predictions.config",
    "PredictionsMonitor": "predictions.training.monitor",
    "RolloutRecorder": "predictions.training.rollouts",
    "open_store": "predictions.store",
    "score": "predictions.scoring.metrics",
    "score_batch": "predictions.scoring.metrics",
    "Scores": "predictions.scoring.metrics",
    "PredictionsError": "predictions.errors",
    "ConfigError": "predictions.errors",
    "DatasetError": "predictions.errors",
    "StoreError": "predictions.errors",
    "StoreUnavailableError": "predictions.errors",
    "ReadOnlyStoreError": "predictions.errors",
    "AuthError": "predictions.errors",
}

TRAIN_EXTRA_MODULES = ("torch", "transformers", "accelerate")
"""What `pip install 'predictions-monitor[train]'` brings; the training names cannot load without them."""

__all__ = [
    "AuthError",
    "ConfigError",
    "DatasetError",
    "PredictionsCallback",
    "PredictionsConfig",
    "PredictionsError",
    "PredictionsMonitor",
    "ReadOnlyStoreError",
    "RolloutRecorder",
    "Scores",
    "StoreError",
    "StoreUnavailableError",
    "open_store",
    "score",
    "score_batch",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'predictions' has no attribute {name!r}")
    if _EXPORTS[name].startswith("predictions.training."):
        absent = next((m for m in TRAIN_EXTRA_MODULES if importlib.util.find_spec(m) is None), None)
        if absent is not None:  # said at once, not after seconds of importing the others
            raise _train_extra_missing(name, absent)
    try:
        module = importlib.import_module(_EXPORTS[name])
    except ModuleNotFoundError as error:
        missing = missing_train_module(error)
        if missing is None:
            raise
        raise _train_extra_missing(name, missing) from error
    return getattr(module, name)


def _train_extra_missing(name: str, missing: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(
        f"{name} needs the 'train' extra, and {missing!r} is not installed; install it with "
        "pip install 'predictions-monitor[train]' (torch first, the build for your machine: "
        "see the README)",
        name=missing,
    )


def missing_train_module(error: BaseException) -> str | None:
    """The train extra's module whose absence caused `error`, if any. Transformers wraps a missing
    accelerate in its own "Could not import module 'TrainerCallback'" error, so the causes are read too."""
    seen: BaseException | None = error
    while seen is not None:
        missing = (getattr(seen, "name", None) or "").split(".")[0]
        if isinstance(seen, ModuleNotFoundError) and missing in TRAIN_EXTRA_MODULES:
            return missing
        seen = seen.__cause__ or seen.__context__
    return None
