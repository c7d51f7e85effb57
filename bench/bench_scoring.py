"""Scoring speed: the batch scorer (all four metrics) against the bare edit-distance kernel, jiwer.cer
and a plain-Python dynamic-programming CER, side by side in one run.

Two kinds of pairs: near misses (late rounds: about 10% of characters edited, one in ten exact) and
unrelated texts (early rounds, before the model has learnt anything).
Goal: at 500 characters the batch scorer within 2x of the bare kernel and at least 10x faster than
jiwer.cer. Second table: long pairs, the plain kernel against `edit_distances` (a `score_hint` for
near misses), one thread each, same distances checked.
Run: python bench/bench_scoring.py [--pairs 10000] [--slow-pairs 20] [--lengths 50 500 2000]
[--long-pairs 20] [--long-lengths 2000 5000 20000]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jiwer
from rapidfuzz.distance import Levenshtein

from bench.common import best_time, machine, pairs, print_table, unrelated_pairs
from predictions.scoring.metrics import edit_distances, score_batch

LENGTHS = (50, 500, 2000)
LONG_LENGTHS = (2000, 5000, 20000)
KINDS = {"near misses": pairs, "unrelated": unrelated_pairs}


def python_cer(prediction: str, truth: str) -> float:
    """Textbook two-row dynamic programming, what a hand-written scorer does."""
    previous = list(range(len(truth) + 1))
    for i, p_char in enumerate(prediction, 1):
        current = [i]
        for j, t_char in enumerate(truth, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (p_char != t_char)))
        previous = current
    return min(1.0, previous[-1] / max(len(truth), 1))


def per_pair_us(run, count: int, repeat: int = 3) -> float:
    return best_time(run, repeat) / count * 1e6


def measure(kind: str, length: int, count: int, slow_count: int) -> dict[str, float]:
    """Microseconds per pair for each contender, for one kind of pair at one length."""
    predictions, truths = KINDS[kind](count, length, seed=length)
    slow_p, slow_t = predictions[:slow_count], truths[:slow_count]
    kernel = Levenshtein.distance
    return {
        "scorer": per_pair_us(lambda: score_batch(predictions, truths), count),
        "kernel": per_pair_us(
            lambda: [kernel(p, t) for p, t in zip(predictions, truths, strict=True)], count
        ),
        "jiwer": per_pair_us(
            lambda: [jiwer.cer(t, p) for p, t in zip(slow_p, slow_t, strict=True)], slow_count
        ),
        "python": per_pair_us(
            lambda: [python_cer(p, t) for p, t in zip(slow_p, slow_t, strict=True)], slow_count, 1
        ),
    }


def measure_hints(count: int, lengths: Sequence[int]) -> list[tuple[str, int, float, float, float]]:
    """Milliseconds per long pair: the plain kernel against the hinted distances, the same results."""
    rows = []
    for kind, make in KINDS.items():
        for length in lengths:
            pairs = list(zip(*make(count, length, seed=length), strict=True))
            plain = [Levenshtein.distance(p, t) for p, t in pairs]
            assert edit_distances(pairs) == plain, "a hint changed a distance"
            kernel_ms = best_time(lambda ps=pairs: [Levenshtein.distance(p, t) for p, t in ps]) / count * 1e3
            hinted_ms = best_time(lambda ps=pairs: edit_distances(ps)) / count * 1e3
            rows.append((kind, length, kernel_ms, hinted_ms, kernel_ms / hinted_ms))
    return rows


def main(argv: list[str] | None = None) -> dict[tuple[str, int], dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000, help="pairs per length for scorer and kernel")
    parser.add_argument("--slow-pairs", type=int, default=20, help="pairs for jiwer and plain Python")
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS, help="characters per text")
    parser.add_argument("--long-pairs", type=int, default=20, help="pairs per length for the hint table")
    parser.add_argument(
        "--long-lengths", type=int, nargs="+", default=LONG_LENGTHS, help="for the hint table"
    )
    args = parser.parse_args(argv)
    if 500 not in args.lengths:
        parser.error(f"--lengths {args.lengths} lacks 500, the length the goals are stated at")
    results = {
        (kind, length): measure(kind, length, args.pairs, args.slow_pairs)
        for kind in KINDS
        for length in args.lengths
    }
    rows = [
        (
            kind,
            length,
            r["scorer"],
            r["kernel"],
            r["jiwer"],
            r["python"],
            r["scorer"] / r["kernel"],
            r["jiwer"] / r["scorer"],
        )
        for (kind, length), r in results.items()
    ]
    header = (
        "pairs",
        "chars",
        "scorer us",
        "kernel us",
        "jiwer.cer us",
        "python DP us",
        "scorer/kernel",
        "jiwer/scorer",
    )
    print_table(f"Scoring, us per pair ({machine()})", header, rows)
    for kind in KINDS:
        at_500 = results[kind, 500]
        print(
            f"\n{kind}: scorer/kernel at 500 chars: {at_500['scorer'] / at_500['kernel']:.2f}x (goal <= 2x)"
        )
        print(
            f"{kind}: jiwer.cer/scorer at 500 chars: {at_500['jiwer'] / at_500['scorer']:.1f}x (goal >= 10x)"
        )
    hints = measure_hints(args.long_pairs, args.long_lengths)
    header = ("pairs", "chars", "kernel ms", "edit_distances ms", "speedup")
    print_table(f"Long pairs, ms per pair, identical distances ({machine()})", header, hints)
    results.update({("hint", kind, length): {"speedup": speedup} for kind, length, *_, speedup in hints})
    return results


if __name__ == "__main__":
    main()
