"""Scoring speed: the batch scorer (all four metrics) against the bare edit-distance kernel, jiwer.cer
and a plain-Python dynamic-programming CER, side by side in one run.

Two kinds of pairs: near misses (late rounds: about 10% of characters edited, one in ten exact) and
unrelated texts (early rounds, before the model has learnt anything).
Goal: at 500 characters the batch scorer within 2x of the bare kernel and at least 10x faster than
jiwer.cer.  Run: python bench/bench_scoring.py [--pairs 10000] [--slow-pairs 20] [--lengths 50 500 2000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jiwer
from rapidfuzz.distance import Levenshtein

from bench.common import best_time, machine, pairs, print_table, unrelated_pairs
from predictions.scoring.metrics import score_batch

LENGTHS = (50, 500, 2000)
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


def main(argv: list[str] | None = None) -> dict[tuple[str, int], dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000, help="pairs per length for scorer and kernel")
    parser.add_argument("--slow-pairs", type=int, default=20, help="pairs for jiwer and plain Python")
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS, help="characters per text")
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
    return results


if __name__ == "__main__":
    main()
