"""User scorers: the user's own metrics, checked at construction and run on rank 0 every round.

A scorer is a function `(prediction, ground_truth, sample) -> float | bool | None` (`sample` is the
tracked dataset row as a dict), or an object with that `__call__` and, optionally, a `title`,
`higher_is_better` and `bounds`. A scorer that raises on one sample leaves None for that sample, with
one warning per scorer and round: a scorer never fails a round, and never stops training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from predictions.errors import ConfigError
from predictions.scoring.names import RESERVED_NAMES, is_custom_name

if TYPE_CHECKING:
    from predictions.scoring.sample import Sample

logger = logging.getLogger(__name__)

Scorer = Callable[[str, str | None, dict[str, Any]], float | bool | None]


def check_scorers(scorers: Any) -> dict[str, Scorer]:
    """`scorers` as a dict of valid names to callables; raises ConfigError naming what is wrong."""
    if scorers is None:
        return {}
    if not isinstance(scorers, Mapping):
        raise ConfigError(f"scorers={scorers!r} is invalid; valid: a dict of name -> scorer function")
    for name, scorer in scorers.items():
        if not is_custom_name(name):
            raise ConfigError(
                f"scorers has the name {name!r}; valid: letters, digits and _ (not starting with a digit, "
                f"at most 63), and none of {', '.join(sorted(RESERVED_NAMES))}"
            )
        if not callable(scorer):
            raise ConfigError(
                f"scorers[{name!r}]={scorer!r} is not callable; valid: a function (prediction, "
                "ground_truth, sample) -> float | bool | None, or an object with that __call__"
            )
    return dict(scorers)


def describe(scorers: Mapping[str, Scorer]) -> dict[str, dict[str, Any]]:
    """What the dashboard needs to know of each scorer, kept in the job's config: title, direction, range."""
    return {
        name: {
            "title": str(getattr(scorer, "title", None) or name),
            "higher_is_better": bool(getattr(scorer, "higher_is_better", True)),
            "bounds": list(getattr(scorer, "bounds", (None, None))),
        }
        for name, scorer in scorers.items()
    }


def run_scorers(
    scorers: Mapping[str, Scorer], samples: Sequence[Sample], answers: Sequence[str]
) -> list[dict[str, float | None] | None]:
    """Each answer's values by scorer name (None without scorers); a failing call leaves None."""
    if not scorers:
        return [None] * len(answers)
    values: list[dict[str, float | None]] = [{} for _ in answers]
    for name, scorer in scorers.items():
        failures: list[BaseException] = []
        for row, sample, answer in zip(values, samples, answers, strict=True):
            row[name] = _call(scorer, sample, answer, failures)
        if failures:
            logger.warning(
                "scorer %r failed on %s of %s samples this round; their %s is None. First error: %r",
                name, len(failures), len(answers), name, failures[0],
            )  # fmt: skip
    return values


def _call(scorer: Scorer, sample: Sample, answer: str, failures: list[BaseException]) -> float | None:
    try:
        return as_score(scorer(answer, sample.ground_truth, dict(sample.record or {})))
    except Exception as error:
        failures.append(error)
        return None


def as_score(value: Any) -> float | None:
    """A scorer's result as a stored value: bools and numbers as floats, NaN and infinities as None."""
    if value is None:
        return None
    if not isinstance(value, int | float):
        raise TypeError(f"the scorer returned {value!r}; valid: a float, a bool or None")
    number = float(value)
    return number if math.isfinite(number) else None
