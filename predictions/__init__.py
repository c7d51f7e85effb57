"""Predictions Monitor: watch a fine-tune's answers improve, round by round.

Names are imported lazily, so `import predictions` (and the dashboard) never loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from predictions.callback import PredictionsCallback
    from predictions.config import PredictionsConfig
    from predictions.errors import (
        AuthError,
        ConfigError,
        DatasetError,
        PredictionsError,
        StoreError,
        StoreUnavailableError,
    )
    from predictions.monitor import PredictionsMonitor
    from predictions.scorer import Scores, score, score_batch
    from predictions.store import open_store

_EXPORTS = {
    "PredictionsCallback": "predictions.callback",
    "PredictionsConfig": "predictions.config",
    "PredictionsMonitor": "predictions.monitor",
    "open_store": "predictions.store",
    "score": "predictions.scorer",
    "score_batch": "predictions.scorer",
    "Scores": "predictions.scorer",
    "PredictionsError": "predictions.errors",
    "ConfigError": "predictions.errors",
    "DatasetError": "predictions.errors",
    "StoreError": "predictions.errors",
    "StoreUnavailableError": "predictions.errors",
    "AuthError": "predictions.errors",
}

__all__ = [
    "AuthError",
    "ConfigError",
    "DatasetError",
    "PredictionsCallback",
    "PredictionsConfig",
    "PredictionsError",
    "PredictionsMonitor",
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
    return getattr(importlib.import_module(_EXPORTS[name]), name)
