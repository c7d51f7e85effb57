"""The four quality metrics of a prediction against its ground truth (defined in README.md, "Metrics").

`p` is the stripped prediction, `t` the stripped ground truth. Edit distance comes from rapidfuzz's
C++ kernel, so a round of long answers scores in microseconds, not the milliseconds of a Python loop.
"""

from __future__ import annotations

from collections import _count_elements  # type: ignore[attr-defined]
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
    return _scores(p, t, Levenshtein.distance(p, t), word_overlap(p, t))


def score_batch(predictions: Sequence[str], ground_truths: Sequence[str | None]) -> list[Scores]:
    """Score pairs in order; the lengths must match.

    The edit distances run in rapidfuzz's C++ threads, outside the GIL, while this thread counts
    words, so a batch costs little more than its word counting (docs/benchmarks.md).
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(
            f"score_batch: got {len(predictions)} predictions but {len(ground_truths)} ground truths; "
            "pass one ground truth (or None) per prediction"
        )
    pairs = [(p.strip(), t.strip()) for p, t in zip(predictions, ground_truths, strict=True) if t is not None]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edit-distances") as pool:
        distances = pool.submit(_edit_distances, pairs)
        overlaps = [word_overlap(p, t) for p, t in pairs]
        parts = zip(pairs, distances.result(), overlaps, strict=True)
        scored = iter([_scores(p, t, distance, overlap) for (p, t), distance, overlap in parts])
    return [UNSCORED if t is None else next(scored) for t in ground_truths]


def _edit_distances(pairs: list[tuple[str, str]]) -> list[int]:
    """Levenshtein distance of each pair; with workers=-1 rapidfuzz releases the GIL while it works."""
    if not pairs:
        return []
    predictions, truths = zip(*pairs, strict=True)
    return process.cpdist(predictions, truths, scorer=Levenshtein.distance, workers=-1).tolist()


def _scores(p: str, t: str, distance: int, overlap: float) -> Scores:
    """The four metrics of a stripped pair whose edit distance and word overlap are known."""
    if p == t:
        return Scores(1.0, 0.0, 1.0 if t else None, 1.0)
    if not t:
        return Scores(0.0, 1.0, None, 0.0)
    return Scores(0.0, min(1.0, distance / len(t)), len(p) / len(t), overlap)


def word_overlap(p: str, t: str) -> float:
    """SQuAD-style token F1 over lower-cased whitespace words, counted as multisets."""
    if p == t:
        return 1.0
    p_words, t_words = p.lower().split(), t.lower().split()
    if not p_words or not t_words:
        return 1.0 if p_words == t_words else 0.0
    return 2.0 * _shared_count(p_words, t_words) / (len(p_words) + len(t_words))


def _shared_count(a: list[str], b: list[str]) -> int:
    """Size of the multiset intersection of two word lists: count a's words, then spend them on b's.

    `_count_elements` is the C loop inside Counter.update; Counter() itself adds a few microseconds
    of Python-level checks per call, as much as the counting.
    """
    remaining: dict[str, int] = {}
    _count_elements(remaining, a)
    shared = 0
    for word in b:
        count = remaining.get(word)
        if count:
            remaining[word] = count - 1
            shared += 1
    return shared
