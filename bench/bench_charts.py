"""Each page's charts on every rerun: building them and Streamlit's marshalling (`st.altair_chart` or
`st.vega_lite_chart`, up to the message sent), CPU time per rerun. Before: the builders of `--ref` (a
`git archive`; 1ea7ea9 was the last with Altair charts); after: this checkout's. Each side runs in a
process of its own, alternating, `--trials` times; the least CPU of each is kept (the least disturbed).

Run: python bench/bench_charts.py [--ref 1ea7ea9 --rounds 100 --samples 50 --repeat 20 --trials 3]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, print_table  # noqa: E402

METRICS = ("char_error_rate", "exact_match", "word_overlap", "length_ratio")


def frames(rounds: int, samples: int) -> dict[str, pd.DataFrame]:
    """A job of `rounds` rounds (CER falling) over `samples` samples, and a GRPO job of `rounds` steps."""
    steps = [10 * (r + 1) for r in range(rounds)]
    cer = [1 - r / max(1, rounds) * 0.8 for r in range(rounds)]
    trends = pd.DataFrame(
        {
            "epoch": [1 + r * 3 // max(1, rounds) for r in range(rounds)],
            "step": steps,
            "sample_count": samples,
            "scored_count": samples,
            "avg_exact_match": [r / max(1, rounds) for r in range(rounds)],
            "avg_char_error_rate": cer,
            "avg_length_ratio": [1.5 - c / 4 for c in cer],
            "avg_word_overlap": [1 - c for c in cer],
            "min_char_error_rate": [c / 2 for c in cer],
            "max_char_error_rate": [min(1.0, c * 1.5) for c in cer],
        }
    )
    cells = [
        (s, trends["epoch"][r], steps[r], (s * 7 + r) % 11 / 10)
        for s in range(samples)
        for r in range(rounds)
    ]
    matrix = pd.DataFrame(cells, columns=["sample_index", "epoch", "step", "value"])
    rollouts = pd.DataFrame(
        {
            "step": range(1, rounds + 1),
            "rollout_count": 16,
            "group_count": 4,
            "zero_std_groups": [r % 5 for r in range(rounds)],
            "avg_reward": cer,
            "std_reward": 0.1,
            "avg_completion_tokens": 40.0,
            "min_completion_tokens": 10,
            "max_completion_tokens": 64,
            "truncated_count": [r % 3 for r in range(rounds)],
            "scored_count": 16,
            "avg_char_error_rate": cer,
        }
    )
    rewards = pd.DataFrame(
        [(step, name, 0.5, 0.1) for step in range(1, rounds + 1) for name in ("format", "accuracy")],
        columns=["step", "name", "avg", "std"],
    )
    return {"trends": trends, "matrix": matrix, "rollouts": rollouts, "rewards": rewards}


def pages(data: dict[str, pd.DataFrame]) -> dict[str, Callable[[], list]]:
    """Each page's charts, as the page builds them (imported from the checkout on `sys.path`)."""
    from predictions.dashboard import analysis, charts, rollout_charts

    trends, matrix, rollouts = data["trends"], data["matrix"], data["rollouts"]
    heatmap = analysis.heatmap_frame(matrix, matrix["step"])
    history = matrix[matrix["sample_index"] == 3].rename(columns={"value": "char_error_rate"})
    logged = ("loss", "eval_loss", "learning_rate")
    series = pd.concat(
        [trends[["step"]].assign(name=name, value=trends["avg_char_error_rate"]) for name in logged]
    )
    jobs = pd.concat([trends.assign(job=f"run {i}") for i in range(3)])
    prompt = pd.DataFrame({"step": rollouts["step"].repeat(4), "completion_index": 0, "reward": 0.5})
    prompt = prompt.assign(completion_index=[i % 4 for i in range(len(prompt))], completion_tokens=20)
    return {
        "Trends (4 metrics + loss)": lambda: [
            *(charts.trend_chart(trends, metric) for metric in METRICS),
            charts.loss_chart(series, trends),
        ],
        "Samples (heatmap + one sample)": lambda: [
            charts.heatmap_chart(heatmap, 3),
            charts.sample_chart(history, trends),
        ],
        "Compare (3 jobs)": lambda: [
            charts.compare_chart(jobs, "char_error_rate", series=["run 0", "run 1"])
        ],
        "Rollouts (5 charts)": lambda: [
            rollout_charts.reward_chart(rollout_charts.reward_frame(rollouts, data["rewards"])),
            rollout_charts.length_chart(rollouts),
            rollout_charts.flat_groups_chart(rollouts),
            charts.trend_chart(rollouts.assign(epoch=1, sample_count=16), "char_error_rate"),
            rollout_charts.prompt_chart(prompt),
        ],
    }


def draw(built: list) -> None:
    """What a page's `st.*_chart` calls do with each chart, up to the message (no script run: not sent)."""
    import streamlit as st

    for chart in built:
        if isinstance(chart, dict):
            st.vega_lite_chart(spec=chart)
        else:
            st.altair_chart(chart)


def worker(root: str, rounds: int, samples: int, repeat: int) -> dict[str, float]:
    """CPU seconds of one rerun of each page's charts (the least of `repeat`), in a process of its own."""
    import streamlit  # noqa: F401  (imported by both sides before the page runs)

    sys.path.insert(0, root)
    start = time.process_time()
    runs = pages(frames(rounds, samples))
    assert sys.modules["predictions"].__file__.startswith(root), "the side's own package"
    first = next(iter(runs.values()))
    draw(first())
    results = {"first page in a new process (imports included)": time.process_time() - start}
    for name, run in runs.items():
        times = []
        for _ in range(repeat):
            start = time.process_time()
            draw(run())
            times.append(time.process_time() - start)
        results[name] = min(times)
    return results


def archive(ref: str, folder: Path) -> Path:
    """The checkout of `ref`, extracted from `git archive` into `folder`."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as files:
        files.extractall(folder, filter="data")
    return folder


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ref", default="1ea7ea9", help="the before side (default: the last Altair charts)")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        from streamlit import logger

        logger.set_log_level("error")  # bare mode (no runtime, nothing sent) warns on every chart
        print(json.dumps(worker(args.worker, args.rounds, args.samples, args.repeat)))
        return {}
    sizes = ["--rounds", str(args.rounds), "--samples", str(args.samples), "--repeat", str(args.repeat)]
    with tempfile.TemporaryDirectory() as folder:
        sides = {"before": archive(args.ref, Path(folder)), "after": ROOT}
        best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
        for _ in range(args.trials):
            for side, root in sides.items():
                command = [sys.executable, __file__, "--worker", str(root), *sizes]
                out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=root).stdout
                for name, cpu in json.loads(out.splitlines()[-1]).items():
                    best[side][name] = min(cpu, best[side].get(name, cpu))
    results = {name: (best["before"][name], best["after"][name]) for name in best["after"]}
    print_table(
        f"Charts per page rerun, {args.rounds} rounds x {args.samples} samples, CPU ms, least of "
        f"{args.repeat} x {args.trials} ({args.ref} against this checkout; {machine()})",
        ("page", f"before ({args.ref})", "after", "before / after"),
        [(name, 1000 * old, 1000 * new, old / new) for name, (old, new) in results.items()],
    )
    return results


if __name__ == "__main__":
    main()
