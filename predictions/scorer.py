"""The four quality metrics of a prediction against its ground truth (definitions: shared/DESIGN.md).

`p` is the stripped prediction, `t` the stripped ground truth. Edit distance comes from rapidfuzz's
C++ kernel, so a round of long answers scores in microseconds, not the milliseconds of a Python loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rapidfuzz import process
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
    return _from_distance(p, t, Levenshtein.distance(p, t))


def score_batch(predictions: Sequence[str], ground_truths: Sequence[str | None]) -> list[Scores]:
    """Score pairs in order; the lengths must match.

    The edit distances of the whole batch come from one multi-threaded rapidfuzz call, which
    leaves the Python side only the word counting.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(
            f"score_batch: got {len(predictions)} predictions but {len(ground_truths)} ground truths; "
            "pass one ground truth (or None) per prediction"
        )
    pairs = [(p.strip(), t.strip()) for p, t in zip(predictions, ground_truths, strict=True) if t is not None]
    distances = _edit_distances(pairs)
    scored = iter([_from_distance(p, t, d) for (p, t), d in zip(pairs, distances, strict=True)])
    return [UNSCORED if t is None else next(scored) for t in ground_truths]


def _edit_distances(pairs: list[tuple[str, str]]) -> list[int]:
    """Levenshtein distance of each pair, computed in C++ threads outside the GIL."""
    if not pairs:
        return []
    predictions, truths = zip(*pairs, strict=True)
    return process.cpdist(predictions, truths, scorer=Levenshtein.distance, workers=-1).tolist()


def _from_distance(p: str, t: str, distance: int) -> Scores:
    """The four metrics of a stripped pair whose edit distance is known (CER clipped to 1)."""
    if p == t:
        return Scores(1.0, 0.0, 1.0 if t else None, 1.0)
    if not t:
        return Scores(0.0, 1.0, None, 0.0)
    return Scores(0.0, min(1.0, distance / len(t)), len(p) / len(t), word_overlap(p, t))


def word_overlap(p: str, t: str) -> float:
    """SQuAD-style token F1 over lower-cased whitespace words, counted as multisets."""
    p_words, t_words = p.lower().split(), t.lower().split()
    if not p_words or not t_words:
        return 1.0 if p_words == t_words else 0.0
    return 2.0 * _shared_count(p_words, t_words) / (len(p_words) + len(t_words))


def _shared_count(a: list[str], b: list[str]) -> int:
    """Size of the multiset intersection of two word lists (map keeps the loop in C)."""
    a_counts, b_counts = Counter(a), Counter(b)
    common = a_counts.keys() & b_counts.keys()
    return sum(map(min, map(a_counts.__getitem__, common), map(b_counts.__getitem__, common)))
