"""What the benchmark scripts share: deterministic text, timing, and printing a table."""

from __future__ import annotations

import platform
import random
import statistics
import string
import time
from collections.abc import Callable, Sequence

WORDS = [
    "".join(random.Random(i).choices(string.ascii_lowercase, k=random.Random(-i).randint(2, 9)))
    for i in range(2000)
]


def sentence(rng: random.Random, length: int) -> str:
    """Words from a fixed vocabulary until about `length` characters."""
    words, size = [], 0
    while size < length:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:length]


def perturb(rng: random.Random, text: str, rate: float = 0.1) -> str:
    """A near miss: about `rate` of the characters substituted, deleted or inserted."""
    out = []
    for char in text:
        roll = rng.random()
        if roll < rate / 3:
            out.append(rng.choice(string.ascii_lowercase))
        elif roll < 2 * rate / 3:
            continue
        elif roll < rate:
            out.extend((char, rng.choice(string.ascii_lowercase)))
        else:
            out.append(char)
    return "".join(out)


def pairs(count: int, length: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`count` (prediction, truth) pairs of about `length` characters: near misses, some exact."""
    rng = random.Random(seed)
    truths = [sentence(rng, length) for _ in range(count)]
    predictions = [truth if i % 10 == 0 else perturb(rng, truth) for i, truth in enumerate(truths)]
    return predictions, truths


def unrelated_pairs(count: int, length: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`count` pairs of independent texts of about `length` characters: what early rounds look like."""
    rng = random.Random(seed)
    texts = [sentence(rng, length) for _ in range(2 * count)]
    return texts[:count], texts[count:]


def best_time(run: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of `repeat` runs, in seconds: the least disturbed by other work on the machine."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def median_time(run: Callable[[], object], repeat: int = 20) -> float:
    """The median of `repeat` runs, in seconds, after one warm-up run."""
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table, so the output pastes into docs/benchmarks.md as it is."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(_cell(value) for value in row) + " |")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
