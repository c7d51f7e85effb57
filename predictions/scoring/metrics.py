"""The metric registry, and the built-in metrics of a prediction against its ground truth.

`REGISTRY` is the one place a metric is described: its name (the table column), title, short label,
range, direction and function. Every list of metrics in the code derives from it; only SQL spells the
columns out. Definitions of the built-in four: README.md, "Metrics". `p` is the stripped prediction, `t`
the stripped ground truth. Edit distance comes from rapidfuzz's C++ kernel, so a round of long answers
scores in microseconds, not the milliseconds of a Python loop; long near misses get a `score_hint`
(exact all the same) that makes them several times faster again (docs/benchmarks.md, section 1).
"""

from __future__ import annotations

import math
import os
import statistics
import threading
from collections import _count_elements  # type: ignore[attr-defined]
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, make_dataclass

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein


@dataclass(frozen=True, slots=True)
class Metric:
    """What the store, the charts and the tables know about one metric.

    `bounds` is the range of its values, (low, high), None where open; `ideal` the best value when
    that is neither end (a length ratio of 1); `function` scores a stripped
    pair `(p, t)`, or `(p, t, distance)` with `needs_distance`: a module-level function, since the
    dashboard caches (pickles) metrics; it is None for a metric read back from a store (a user
    scorer's values are computed by the scorer, see `predictions.scoring.user_scorers`).
    """

    name: str
    title: str
    label: str
    lower_is_better: bool = False
    bounds: tuple[float | None, float | None] = (0.0, 1.0)
    ideal: float | None = None
    function: Callable[..., float | None] | None = field(default=None, compare=False, repr=False)
    needs_distance: bool = False
    builtin: bool = True

    @property
    def column(self) -> str:
        """The per-round average's column in a trends frame."""
        return f"avg_{self.name}"


def exact_match(p: str, t: str) -> float:
    return 1.0 if p == t else 0.0


def char_error_rate(p: str, t: str, distance: int) -> float:
    """Edit distance over the truth's length, at most 1; an empty truth is all right or all wrong."""
    if not t:
        return 0.0 if not p else 1.0
    return min(1.0, distance / len(t))


def length_ratio(p: str, t: str) -> float | None:
    return len(p) / len(t) if t else None


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


REGISTRY: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("exact_match", "Exact match", "Exact match", function=exact_match),
        Metric(
            "char_error_rate",
            "Character error rate",
            "CER",
            lower_is_better=True,
            function=char_error_rate,
            needs_distance=True,
        ),
        Metric(
            "length_ratio",
            "Length ratio",
            "Length ratio",
            bounds=(0.0, None),
            ideal=1.0,
            function=length_ratio,
        ),
        Metric("word_overlap", "Word overlap (F1)", "Word overlap", function=word_overlap),
    )
}
"""The built-in metrics, in the table's column order. A new one: an entry here, a migration, tests."""

METRICS = tuple(REGISTRY)
"""Built-in metric names, the same as the table's columns."""
PRIMARY_METRIC = "char_error_rate"
"""The metric the improvement, the early warning, the heatmap and the sample chart default to."""

Scores = make_dataclass(
    "Scores",
    [(name, float | None, None) for name in METRICS],
    frozen=True,
    slots=True,
    namespace={"as_dict": asdict, "__doc__": "The built-in metrics of one prediction; None when unscored."},
)
Scores.__module__ = __name__

UNSCORED = Scores()


def score(prediction: str, ground_truth: str | None) -> Scores:
    """Score one prediction; `ground_truth=None` means the sample has none, so nothing is scored."""
    if ground_truth is None:
        return UNSCORED
    p, t = prediction.strip(), ground_truth.strip()
    return Scores(**_plain_values(p, t), **_distance_values(p, t, Levenshtein.distance(p, t)))


PARALLEL_FROM = 10_000
"""Characters in a batch from which its edit distances run on the shared distance thread: below it,
handing them over costs more than it saves."""
MANY_CORES_FROM = 1_000_000
"""Characters in a batch from which rapidfuzz spreads its distances over half the cores (starting its
threads costs about 0.2 ms a call; the other half is left to training, which runs beside the scorer)."""
HINT_FROM = 2048
"""Characters in a pair's longer text from which its distance is computed with a `score_hint`."""
PROBE = 512
"""Characters per window of the three windows that estimate a long pair's distance."""


def score_batch(predictions: Sequence[str], ground_truths: Sequence[str | None]) -> list[Scores]:
    """Score pairs in order; the lengths must match.

    In a large batch the edit distances run on one thread shared by every call (rapidfuzz releases
    the GIL there) while this thread computes the metrics that need no distance (word counting,
    mostly), so the batch costs little more than those.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(
            f"score_batch: got {len(predictions)} predictions but {len(ground_truths)} ground truths; "
            "pass one ground truth (or None) per prediction"
        )
    pairs = [(p.strip(), t.strip()) for p, t in zip(predictions, ground_truths, strict=True) if t is not None]
    if sum(len(p) + len(t) for p, t in pairs) < PARALLEL_FROM:
        distances = edit_distances(pairs)
        plain = [_plain_values(p, t) for p, t in pairs]
    else:
        pending = _distance_thread().submit(edit_distances, pairs)
        plain = [_plain_values(p, t) for p, t in pairs]
        distances = pending.result()
    parts = zip(pairs, distances, plain, strict=True)
    scored = iter([Scores(**values, **_distance_values(p, t, d)) for (p, t), d, values in parts])
    return [UNSCORED if t is None else next(scored) for t in ground_truths]


_PLAIN = tuple(metric for metric in REGISTRY.values() if not metric.needs_distance)
_WITH_DISTANCE = tuple(metric for metric in REGISTRY.values() if metric.needs_distance)


def _plain_values(p: str, t: str) -> dict[str, float | None]:
    return {metric.name: metric.function(p, t) for metric in _PLAIN}


def _distance_values(p: str, t: str, distance: int) -> dict[str, float | None]:
    return {metric.name: metric.function(p, t, distance) for metric in _WITH_DISTANCE}


_thread_lock = threading.Lock()
_thread: tuple[int, ThreadPoolExecutor] | None = None


def _distance_thread() -> ThreadPoolExecutor:
    """The one edit-distance thread, started at the first large batch of this process (a forked child,
    such as a DataLoader worker, starts its own: the parent's thread does not exist there)."""
    global _thread
    with _thread_lock:
        if _thread is None or _thread[0] != os.getpid():
            _thread = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="edit-distances"))
        return _thread[1]


def edit_distances(pairs: Sequence[tuple[str, str]]) -> list[int]:
    """The Levenshtein distance of each pair, exactly `Levenshtein.distance(p, t)`, faster.

    A long pair whose three sample windows (start, middle, end) look like a near miss is computed
    with a `score_hint` near its expected distance: rapidfuzz then works in a band around the
    diagonal and widens it until the distance fits, so the result is the same. Pairs are grouped by
    hint (powers of two), one call each, so that the GIL is released during all the work.
    """
    if not pairs:
        return []
    chars = sum(len(p) + len(t) for p, t in pairs)
    groups: dict[int | None, list[int]] = {}
    for index, hint in enumerate(_hints(pairs)):
        groups.setdefault(hint, []).append(index)
    distances = [0] * len(pairs)
    for hint, indices in groups.items():
        found = process.cpdist(
            [pairs[i][0] for i in indices],
            [pairs[i][1] for i in indices],
            scorer=Levenshtein.distance,
            score_hint=hint,
            workers=max(1, (os.cpu_count() or 2) // 2) if chars >= MANY_CORES_FROM else 1,
        )
        for index, distance in zip(indices, found.tolist(), strict=True):
            distances[index] = distance
    return distances


def _hints(pairs: Sequence[tuple[str, str]]) -> list[int | None]:
    """Each pair's `score_hint`: None for a short pair or one that does not look like a near miss
    (a hint too small for a far pair costs up to twice the plain computation)."""
    long = [i for i, (p, t) in enumerate(pairs) if max(len(p), len(t)) >= HINT_FROM]
    hints: list[int | None] = [None] * len(pairs)
    if not long:
        return hints
    predictions = [window for i in long for window in _windows(pairs[i][0])]
    truths = [window for i in long for window in _windows(pairs[i][1])]
    probes = process.cpdist(predictions, truths, scorer=Levenshtein.distance).tolist()
    for position, index in enumerate(long):
        p, t = pairs[index]
        ratio = statistics.median(probes[3 * position : 3 * position + 3]) / PROBE
        if ratio < 0.25:
            expected = max(abs(len(p) - len(t)), ratio * max(len(p), len(t)))
            hints[index] = 1 << max(5, math.ceil(math.log2(1.5 * expected + 1)))
    return hints


def _windows(text: str) -> tuple[str, str, str]:
    """`PROBE` characters at the start, the middle and the end, placed in proportion to the length."""
    last = max(0, len(text) - PROBE)
    return text[:PROBE], text[last // 2 :][:PROBE], text[last:]
