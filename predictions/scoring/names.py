"""Names a user scorer may take: identifiers (safe as JSON keys, columns and SQL paths) that collide
with no column the scores sit beside. Checked at construction and again where a page names a metric.
"""

from __future__ import annotations

import re
from typing import Any

from predictions.errors import ConfigError
from predictions.scoring.metrics import REGISTRY

CUSTOM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
"""A user scorer's name: an identifier, so it is safe as a JSON key, a column and a SQL path."""
RESERVED_NAMES = frozenset(
    {"id", "job_id", "user_id", "epoch", "step", "sample_index", "prompt", "ground_truth", "prediction"}
    | {"scores", "metadata", "created_at", "updated_at", "value", "group", "round", "job"}
    | {"sample_count", "scored_count", *REGISTRY}
)
"""Names a user scorer cannot take: the columns its values sit beside in the dashboard's frames."""


def is_custom_name(name: Any) -> bool:
    return isinstance(name, str) and CUSTOM_NAME.fullmatch(name) is not None and name not in RESERVED_NAMES


def check_metric_name(name: Any, option: str = "metric") -> str:
    """A built-in metric or a possible user scorer's name; anything else raises ConfigError."""
    if name in REGISTRY or is_custom_name(name):
        return name
    raise ConfigError(
        f"{option}={name!r} is not a metric; valid: {', '.join(REGISTRY)} or a user scorer's name "
        "(letters, digits and _, not starting with a digit)"
    )
