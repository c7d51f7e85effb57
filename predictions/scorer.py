"""The four quality metrics of a prediction against its ground truth (definitions: shared/DESIGN.md).

`p` is the stripped prediction, `t` the stripped ground truth. Edit distance comes from rapidfuzz's
C++ kernel, so a round of long answers scores in microseconds, not the milliseconds of a Python loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from rapidfuzz.distance import Levenshtein

METRICS = ("exact_match", "char_error_rate", "length_ratio", "word_overlap")
"""Metric names, the same as the table's columns."""


@dataclass(frozen=True, slots=True)
class Scores:
    """The four metrics of one prediction; all None when there is no ground truth."""

    exact_match: float | None = None
    char_error_rate: float | None = None
    length_ratio: float | None = None
    word_overlap: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


UNSCORED = Scores()


def score(prediction: str, ground_truth: str | None) -> Scores:
    """Score one prediction; `ground_truth=None` means the sample has none, so nothing is scored."""
    if ground_truth is None:
        return UNSCORED
    p, t = prediction.strip(), ground_truth.strip()
    if p == t:
        return Scores(1.0, 0.0, 1.0 if t else None, 1.0)
    return Scores(0.0, char_error_rate(p, t), len(p) / len(t) if t else None, word_overlap(p, t))


def score_batch(predictions: Sequence[str], ground_truths: Sequence[str | None]) -> list[Scores]:
    """Score pairs in order; the lengths must match."""
    if len(predictions) != len(ground_truths):
        raise ValueError(
            f"score_batch: got {len(predictions)} predictions but {len(ground_truths)} ground truths; "
            "pass one ground truth (or None) per prediction"
        )
    return [score(p, t) for p, t in zip(predictions, ground_truths, strict=True)]


def char_error_rate(p: str, t: str) -> float:
    """Levenshtein distance over the truth's length, clipped to [0, 1]; inputs already stripped."""
    if not t:
        return 0.0 if not p else 1.0
    return min(1.0, Levenshtein.distance(p, t) / len(t))


def word_overlap(p: str, t: str) -> float:
    """SQuAD-style token F1 over lower-cased whitespace words, counted as multisets."""
    p_words, t_words = p.lower().split(), t.lower().split()
    if not p_words or not t_words:
        return 1.0 if p_words == t_words else 0.0
    shared = _shared_count(p_words, t_words)
    if shared == 0:
        return 0.0
    return 2.0 * shared / (len(p_words) + len(t_words))


def _shared_count(a: Iterable[str], b: Iterable[str]) -> int:
    """Size of the multiset intersection of two word lists."""
    return sum((Counter(a) & Counter(b)).values())
