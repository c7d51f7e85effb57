"""Ready-made scorers for `PredictionsCallback(scorers=...)`: the rules users would otherwise write.

Each is an object called as `(prediction, ground_truth, sample)` that returns 1.0 (right), 0.0
(wrong) or None (nothing to judge), with a `title` and `higher_is_better` for the dashboard:

    scorers={"answer": NumericAnswer(), "json": JsonValid(), "label": ChoiceMatch(["yes", "no"])}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


class _Scorer:
    """What every ready-made scorer shares: a 0-1 range, higher is better, a readable repr."""

    title = "Score"
    higher_is_better = True
    bounds = (0.0, 1.0)

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in vars(self).items() if key != "title")
        return f"{type(self).__name__}({options})"


def last_number(text: str | None) -> float | None:
    """The last number in a text (thousands commas allowed): a math answer's final result."""
    found = NUMBER.findall(text or "")
    return float(found[-1].replace(",", "")) if found else None


class NumericAnswer(_Scorer):
    """1.0 when the last number of the prediction equals the last number of the ground truth.

    Equal within `tolerance` (absolute, or relative to the truth's size, whichever is larger); None
    when the ground truth has no number, 0.0 when the prediction has none.
    """

    title = "Numeric answer"

    def __init__(self, tolerance: float = 1e-6):
        self.tolerance = tolerance

    def __call__(self, prediction: str, ground_truth: str | None, sample: Mapping[str, Any]) -> float | None:
        truth = last_number(ground_truth)
        if truth is None:
            return None
        answer = last_number(prediction)
        if answer is None:
            return 0.0
        return float(math.isclose(answer, truth, rel_tol=self.tolerance, abs_tol=self.tolerance))


class JsonValid(_Scorer):
    """1.0 when the prediction (stripped, a ```json fence allowed) is JSON, and matches `schema` if one
    is given (a JSON Schema dict, checked with the `jsonschema` package); else 0.0."""

    title = "Valid JSON"

    def __init__(self, schema: Mapping[str, Any] | None = None):
        self.schema = dict(schema) if schema is not None else None
        if self.schema is not None:
            import jsonschema

            self._validator = jsonschema.validators.validator_for(self.schema)(self.schema)

    def __call__(self, prediction: str, ground_truth: str | None, sample: Mapping[str, Any]) -> float:
        text = re.sub(r"^```(?:json)?\s*|\s*```$", "", prediction.strip())
        try:
            value = json.loads(text)
        except ValueError:
            return 0.0
        if self.schema is None:
            return 1.0
        return float(self._validator.is_valid(value))


class RegexMatch(_Scorer):
    """1.0 when `pattern` is found in the prediction (`fullmatch=True`: the whole stripped prediction)."""

    title = "Regex match"

    def __init__(self, pattern: str, *, flags: int = 0, fullmatch: bool = False):
        self.pattern, self.flags, self.fullmatch = pattern, flags, fullmatch
        self._compiled = re.compile(pattern, flags)

    def __call__(self, prediction: str, ground_truth: str | None, sample: Mapping[str, Any]) -> float:
        if self.fullmatch:
            return float(self._compiled.fullmatch(prediction.strip()) is not None)
        return float(self._compiled.search(prediction) is not None)


class ChoiceMatch(_Scorer):
    """1.0 when the label the prediction gives is the ground truth's label.

    The prediction's label is the first of `choices` it contains as a whole word (case-insensitive
    unless `case_sensitive`), so "The answer is B." gives "B". None without a ground truth; 0.0 when
    the prediction names no choice.
    """

    title = "Choice match"

    def __init__(self, choices: Sequence[str], *, case_sensitive: bool = False):
        if isinstance(choices, str) or not choices:
            raise ValueError(f"choices={choices!r} is invalid; valid: a non-empty list of labels")
        self.choices, self.case_sensitive = list(choices), case_sensitive
        flags = 0 if case_sensitive else re.IGNORECASE
        alternatives = "|".join(re.escape(c) for c in sorted(self.choices, key=len, reverse=True))
        self._label = re.compile(rf"(?<!\w)({alternatives})(?!\w)", flags)

    def label(self, text: str) -> str | None:
        """The first choice named in the text, as written in `choices`."""
        found = self._label.search(text)
        if found is None:
            return None
        word = found.group(1)
        return next(
            c for c in self.choices if c == word or (not self.case_sensitive and c.lower() == word.lower())
        )

    def __call__(self, prediction: str, ground_truth: str | None, sample: Mapping[str, Any]) -> float | None:
        if ground_truth is None:
            return None
        truth = self.label(ground_truth) or ground_truth.strip()
        return float(self.label(prediction) == truth)
