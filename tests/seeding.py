"""Deterministic seeded stores for the dashboard's tests, screenshots and benchmarks.

A synthetic model "learns" a fixed set of question-answer samples: each round it answers with the
ground truth corrupted by noise that falls over the run (learners), stays high (stuck samples) or
falls and then rises again (regressors). Same arguments, same rows, on every machine.
"""

from __future__ import annotations

import math
import random
import string
from pathlib import Path

from predictions.scoring.metrics import score
from predictions.store import SQLiteStore
from predictions.store.protocol import Store
from predictions.store.records import PredictionRow

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"

BIG_JOB = "big-100x50"
SINGLE_JOB = "single-round"
NO_TRUTH_JOB = "no-ground-truth"
XSS_JOB = "xss-probe"
COMPARE_JOBS = ("lr-1e-4", "lr-3e-4", "lr-1e-3")
LIVE_JOB = "live-run"

CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Canada", "Ottawa"),
    ("Norway", "Oslo"),
    ("Egypt", "Cairo"),
    ("Chile", "Santiago"),
    ("India", "New Delhi"),
    ("Spain", "Madrid"),
]
FRENCH = [
    ("good morning", "bonjour"),
    ("thank you very much", "merci beaucoup"),
    ("see you soon", "à bientôt"),
    ("the red house", "la maison rouge"),
    ("I am hungry", "j'ai faim"),
    ("where is the station", "où est la gare"),
]
WORDS = ["elephant", "monitor", "gradient", "tokenizer", "sunflower", "checkpoint", "lighthouse", "keyboard"]


def sample_task(index: int) -> tuple[str, str]:
    """The prompt and ground truth of sample `index`: capitals, translation, reversal or arithmetic."""
    kind, n = index % 4, index // 4
    if kind == 0:
        country, capital = CAPITALS[n % len(CAPITALS)]
        return f"What is the capital of {country}?", capital
    if kind == 1:
        english, french = FRENCH[n % len(FRENCH)]
        return f"Translate to French: {english}", french
    if kind == 2:
        word = WORDS[n % len(WORDS)]
        return f"Spell '{word}' backwards.", word[::-1]
    a, b = 17 + 7 * n, 25 + 3 * index
    return (
        f"What is {a} + {b}? Answer with the number and a short explanation.",
        f"{a + b}, because {a} plus {b} is {a + b}.",
    )


def noise_level(index: int, round_number: int, rounds: int, *, seed: int, pace: float = 4.0) -> float:
    """How wrong sample `index` is in a round (0 right, 1 wholly wrong); `pace` is how fast it learns."""
    rng = random.Random(f"{seed}-profile-{index}")
    difficulty, kind = rng.uniform(0.4, 1.0), rng.random()
    progress = round_number / max(1, rounds - 1)
    learned = difficulty * math.exp(-pace * progress)
    if kind < 0.15:
        return 0.55 + 0.25 * difficulty
    if kind < 0.23 and rounds > 2:  # right by mid-run, then a few characters off again
        return learned if progress < 0.6 else max(learned, 0.25)
    return learned


def corrupt(truth: str, noise: float, rng: random.Random) -> str:
    """The truth with about `noise` of its characters replaced, and rambling on when noise is high."""
    if noise < 0.06:
        return truth
    chars = [rng.choice(string.ascii_lowercase) if rng.random() < noise else c for c in truth]
    rambling = " and so on and so forth" if noise > 0.5 else ""
    return "".join(chars) + rambling


def write_job(
    store: Store,
    job_id: str,
    *,
    rounds: int,
    samples: int,
    seed: int = 0,
    name: str | None = None,
    ground_truth: bool = True,
    rounds_per_epoch: int = 1,
    steps_per_round: int = 10,
    pace: float = 4.0,
    status: str | None = "finished",
) -> None:
    """Write a job, one round per transaction as the callback would; `status=None` writes no job row."""
    if status is not None:
        store.start_job(job_id, name=name, model="synthetic-tiny")
    for r in range(rounds):
        epoch, step = r // rounds_per_epoch + 1, (r + 1) * steps_per_round
        store.write_predictions(
            [
                _row(job_id, epoch, step, i, r, rounds, seed=seed, pace=pace, ground_truth=ground_truth)
                for i in range(samples)
            ]
        )
    if status in ("finished", "failed"):
        store.finish_job(job_id, status=status)


def _row(job_id: str, epoch: int, step: int, index: int, r: int, rounds: int, **how) -> PredictionRow:
    prompt, truth = sample_task(index)
    rng = random.Random(f"{how['seed']}-{index}-{r}")
    prediction = corrupt(truth, noise_level(index, r, rounds, seed=how["seed"], pace=how["pace"]), rng)
    truth_or_none = truth if how["ground_truth"] else None
    scores = score(prediction, truth_or_none).as_dict()
    return PredictionRow(job_id, epoch, step, index, prompt, prediction, truth_or_none, **scores)


def write_xss_job(store: Store, job_id: str = XSS_JOB) -> None:
    """A job whose model answers with HTML and script: every page must show it as text."""
    store.start_job(job_id, name="XSS probe <b>bold</b>", model="synthetic-tiny")
    answers = [[XSS_SCRIPT, "Paris", "bonjour", "42"], [XSS_IMG, "Paris", "bonjour", "42"]]
    for r, round_answers in enumerate(answers):
        rows = []
        for i, prediction in enumerate(round_answers):
            truth = ["hello <world>", "Paris", "bonjour", "42"][i]
            rows.append(
                PredictionRow(
                    job_id,
                    r + 1,
                    (r + 1) * 10,
                    i,
                    f"Prompt {i}: say <i>hi</i>",
                    prediction,
                    truth,
                    **score(prediction, truth).as_dict(),
                )
            )
        store.write_predictions(rows)


def seed_big(store: Store, *, rounds: int = 100, samples: int = 50, job_id: str = BIG_JOB) -> None:
    """A long run: `rounds` rounds of `samples` samples, ten rounds an epoch."""
    write_job(store, job_id, rounds=rounds, samples=samples, rounds_per_epoch=10, name="Long run")


def seed_single_round(store: Store) -> None:
    write_job(store, SINGLE_JOB, rounds=1, samples=8, name="One round so far", status="running")


def seed_no_ground_truth(store: Store) -> None:
    write_job(store, NO_TRUTH_JOB, rounds=3, samples=6, ground_truth=False, name="No ground truth")


def seed_compare(store: Store) -> None:
    """Three learning rates: a slow learner, a good one, and one that learns fast then regresses."""
    write_job(store, COMPARE_JOBS[0], rounds=12, samples=16, seed=1, pace=1.5, name="lr 1e-4")
    write_job(store, COMPARE_JOBS[1], rounds=12, samples=16, seed=2, pace=4.0, name="lr 3e-4")
    write_job(
        store, COMPARE_JOBS[2], rounds=12, samples=16, seed=3, pace=7.0, name="lr 1e-3", status="failed"
    )
    _regress_tail(store, COMPARE_JOBS[2], rounds=12, samples=16)


def _regress_tail(store: Store, job_id: str, *, rounds: int, samples: int) -> None:
    """Overwrite the last two rounds with worse answers, so the job triggers the regression warning."""
    for r in (rounds - 2, rounds - 1):
        rows = []
        for i in range(samples):
            prompt, truth = sample_task(i)
            prediction = corrupt(truth, 0.3 + 0.12 * (r - rounds + 2), random.Random(f"tail-{i}-{r}"))
            rows.append(
                PredictionRow(
                    job_id,
                    r + 1,
                    (r + 1) * 10,
                    i,
                    prompt,
                    prediction,
                    truth,
                    **score(prediction, truth).as_dict(),
                )
            )
        store.write_predictions(rows)


def seed_demo(path: str | Path) -> Path:
    """Every kind of job in one SQLite file (the browser test and screenshots); returns the path.

    The three learning-rate jobs are written last, so the most recent job warns of a regression and
    the Compare page overlays all three by default.
    """
    store = SQLiteStore(path)
    try:
        seed_no_ground_truth(store)
        write_xss_job(store)
        seed_big(store, rounds=40, samples=24)
        write_job(store, LIVE_JOB, rounds=8, samples=16, seed=5, pace=3.0, name="Live run", status="running")
        seed_compare(store)
    finally:
        store.close()
    return Path(path)


def write_round(
    store: Store, job_id: str, round_number: int, *, rounds: int, samples: int, seed: int = 5
) -> None:
    """One more round of a job, as a running callback writes it (`round_number` counts from 0)."""
    epoch, step = round_number + 1, (round_number + 1) * 10
    store.write_predictions(
        [
            _row(job_id, epoch, step, i, round_number, rounds, seed=seed, pace=3.0, ground_truth=True)
            for i in range(samples)
        ]
    )


COLOUR_PROBE_JOB = "colour-probe"
PROBE_CERS = (0.5, 0.1)
"""A half-wrong answer (sample 0) and a nearly right one (sample 1): the only coloured cells of their rows."""


def write_colour_probe(path: Path) -> None:
    """Two rows whose only coloured cells are their CERs (tests/test_browser.py reads their tints)."""
    rows = [
        PredictionRow(
            COLOUR_PROBE_JOB,
            1,
            10,
            index,
            f"probe {index}",
            "answer",
            ground_truth="truth",
            exact_match=0.0,
            char_error_rate=cer,
            length_ratio=1.0,
        )
        for index, cer in enumerate(PROBE_CERS)
    ]
    store = SQLiteStore(path)
    store.write_predictions(rows)
    store.close()
