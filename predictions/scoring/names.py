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
    | {"scores", "metadata", "created_at", "updated_at", "value", "group", "round", "job", "name", "status"}
    | {"text_replacements", "storable_changes", "model", "config", "sample_count", "scored_count", *REGISTRY}
    | {"avg", "min", "max", "std", "count", "first_step", "last_step", "generation", "group_index"}
    | {"completion", "completion_index", "completion_tokens", "prompt_id", "reward", "rewards", "truncated"}
    | {"group_count", "rollout_count", "truncated_count", "zero_std_groups"}
    | {"first_value", "latest_value", "latest_step", "min_value", "min_earlier", "last_zero_step"}
)
"""Names a user scorer cannot take: every column of the store's frames (a test checks they are all
here) and every internal name its values sit beside; `avg_<name>` of a reserved name is a column too."""


AGGREGATES = ("avg_", "min_", "max_", "std_", "var_")
"""Prefixes of aggregate columns: `avg_<name>` of a reserved name is reserved too."""


def is_reserved(name: str) -> bool:
    return name in RESERVED_NAMES or any(
        name.startswith(p) and name[len(p) :] in RESERVED_NAMES for p in AGGREGATES
    )


def is_custom_name(name: Any) -> bool:
    return isinstance(name, str) and CUSTOM_NAME.fullmatch(name) is not None and not is_reserved(name)


def check_metric_name(name: Any, option: str = "metric") -> str:
    """A built-in metric or a possible user scorer's name; anything else raises ConfigError."""
    if name in REGISTRY or is_custom_name(name):
        return name
    raise ConfigError(
        f"{option}={name!r} is not a metric; valid: {', '.join(REGISTRY)} or a user scorer's name "
        "(letters, digits and _, not starting with a digit)"
    )
