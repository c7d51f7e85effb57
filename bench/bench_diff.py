"""Megabyte answers on the Samples page: the diff against the truth and the history of diffs, both cut
to the first `diff.DIFF_LIMIT` characters. Uncut, one such diff takes minutes; cut, well under a second.

(These figures were wall-clock assertions in tests/test_dashboard_helpers.py; the tests now check the
cut itself, and the time lives here.)
Run: python bench/bench_diff.py [--length 1000000 --rounds 10 --repeat 3]
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best_time, machine, print_table
from predictions.dashboard import diff


def text(seed: int, length: int) -> str:
    """`length` characters no other seed's text resembles: the worst case of an edit script."""
    return "".join(random.Random(seed).choices(string.ascii_lowercase + " <>&", k=length))


def history(rounds: int, length: int) -> pd.DataFrame:
    """A sample's rounds, each a different unrelated answer to the same megabyte truth."""
    return pd.DataFrame(
        {
            "epoch": range(1, rounds + 1),
            "step": range(10, 10 * rounds + 1, 10),
            "prediction": [text(seed, length - seed) for seed in range(rounds)],
            "ground_truth": [text(99, length)] * rounds,
            "exact_match": [0.0] * rounds,
            "char_error_rate": [1.0] * rounds,
            "length_ratio": [1.0] * rounds,
            "word_overlap": [0.0] * rounds,
        }
    )


def best_cpu_time(run, repeat: int) -> float:
    """The least CPU time of this process over `repeat` runs: what the diff costs on a busy machine."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--length", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    old, new, rounds = text(1, args.length), text(2, args.length), history(args.rounds, args.length)
    runs = {
        "diff_html": lambda: diff.diff_html(old, new),
        "diff_text": lambda: diff.diff_text(old, new),
        f"history_html, {args.rounds} rounds": lambda: diff.history_html(rounds),
    }
    results = {
        name: (best_time(run, args.repeat), best_cpu_time(run, args.repeat)) for name, run in runs.items()
    }
    print_table(
        f"Diffs of {args.length:,}-character texts, cut to {diff.DIFF_LIMIT:,} ({machine()})",
        ("what", "wall s (best)", "CPU s (best)"),
        [(name, wall, cpu) for name, (wall, cpu) in results.items()],
    )
    return results


if __name__ == "__main__":
    main()
