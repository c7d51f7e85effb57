"""Two minutes of training to watch: a tiny GPT-2 learns to reverse short strings on the CPU.

It trains from scratch (nothing is downloaded), twice, with two learning rates, the callback writing
scored rounds to the embedded store: the dashboard's CER line falls round by round, and Compare has
two runs to set side by side. `predictions demo --dashboard` starts the dashboard beside it on the same
SQLite file (predictions/dashboard/server.py).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictions.store.sqlite import DEFAULT_DB_PATH

ALPHABET = "abcdefghij"
MIN_LEN, MAX_LEN = 3, 10
BATCH_SIZE = 32
HIDDEN, LAYERS = 96, 3
PROMPT_SUFFIX = "="
LEARNING_RATES = (2e-3, 5e-4)
"""One run per learning rate: a fast learner and a slow one, so Compare shows the difference."""
TORCH_THREADS = 1
"""The demo trains on one thread: its ops are too small to split, and the dashboard beside it needs a core.
With torch's default (a thread per core) 80 steps took 43 to 98 s of CPU on a busy 2-core machine, against
9.6 s on one thread (bench/bench_demo_threads.py, docs/benchmarks.md)."""


@dataclass(frozen=True)
class DemoResult:
    """What a demo run produced: its job id, the store file, and the first and last round's CER."""

    job_id: str
    db_path: Path
    first_cer: float | None
    last_cer: float | None
    rounds: int


def make_pairs(count: int, seed: int, min_len: int = MIN_LEN, max_len: int = MAX_LEN) -> list[dict[str, str]]:
    """`count` distinct prompt/response pairs: a string, then `=`, answered by the string reversed."""
    rng, seen = random.Random(seed), set()
    while len(seen) < count:
        seen.add("".join(rng.choices(ALPHABET, k=rng.randint(min_len, max_len))))
    return [{"prompt": s + PROMPT_SUFFIX, "response": s[::-1]} for s in sorted(seen)]


def encode_pairs(pairs: list[dict[str, str]], tokenizer: Any, length: int) -> list[dict[str, list[int]]]:
    """Fixed-length causal LM examples; the loss covers only the answer and its eos."""
    examples = []
    for pair in pairs:
        prompt = tokenizer(pair["prompt"])["input_ids"]
        answer = [*tokenizer(pair["response"])["input_ids"], tokenizer.eos_token_id]
        pad = length - len(prompt) - len(answer)
        examples.append(
            {
                "input_ids": prompt + answer + [tokenizer.pad_token_id] * pad,
                "attention_mask": [1] * (len(prompt) + len(answer)) + [0] * pad,
                "labels": [-100] * len(prompt) + answer + [-100] * pad,
            }
        )
    return examples


def run_demo(
    *,
    db_path: str | os.PathLike[str] = DEFAULT_DB_PATH,
    job_id: str | None = None,
    epochs: int = 4,
    steps_per_epoch: int = 200,
    rounds_per_epoch: int = 5,
    num_samples: int = 16,
    seed: int = 0,
    learning_rate: float = LEARNING_RATES[0],
    job_name: str | None = None,
    progress: bool = True,
    threads: int = TORCH_THREADS,
) -> DemoResult:
    """Train the tiny model from scratch, the callback writing to the SQLite store at `db_path`."""
    from transformers import PrinterCallback, Trainer

    from predictions.demo.tiny_model import build_tiny_model, build_tokenizer
    from predictions.store import SQLiteStore

    tokenizer = build_tokenizer(ALPHABET + PROMPT_SUFFIX)
    pairs = make_pairs(steps_per_epoch * BATCH_SIZE + num_samples, seed)
    random.Random(seed).shuffle(pairs)
    held_out, train = pairs[:num_samples], pairs[num_samples:]
    store = SQLiteStore(db_path)
    job_id = job_id or new_job_id()
    every = max(1, steps_per_epoch // rounds_per_epoch)
    with tempfile.TemporaryDirectory() as output_dir, torch_threads(threads):
        trainer = Trainer(
            model=build_tiny_model(
                "gpt2", tokenizer, hidden_size=HIDDEN, layers=LAYERS, max_positions=2 * MAX_LEN + 4, seed=seed
            ),
            args=demo_arguments(output_dir, epochs, seed, progress, learning_rate),
            train_dataset=encode_pairs(train, tokenizer, length=2 * MAX_LEN + 2),
            processing_class=tokenizer,
            callbacks=[demo_callback(held_out, store, (job_id, job_name or job_id), every, seed)],
        )
        trainer.remove_callback(PrinterCallback)  # the loss goes to the dashboard, not the terminal
        trainer.train()
    return summarize(store, job_id, Path(db_path))


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to `count` for the block, then put back: tests run the demo in-process."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def new_job_id() -> str:
    return f"demo-{random.Random().getrandbits(24):06x}"


def run_demos(
    learning_rates: tuple[float, ...] = LEARNING_RATES, *, job_id: str | None = None, **options: Any
) -> list[DemoResult]:
    """One run per learning rate, on the same samples and the same initial model, one after the other.

    With several rates each job is `<job_id>-lr<rate>`; with one, `job_id` itself.
    """
    prefix = job_id or new_job_id()
    results = []
    for rate in learning_rates:
        run_id = prefix if len(learning_rates) == 1 else f"{prefix}-lr{rate:g}"
        name = f"Reverse strings, lr {rate:g}"
        results.append(run_demo(job_id=run_id, job_name=name, learning_rate=rate, **options))
    return results


def demo_callback(
    samples: list[dict[str, str]], store: Any, job: tuple[str, str], every: int, seed: int
) -> Any:
    from predictions.training.callback import PredictionsCallback

    job_id, job_name = job
    return PredictionsCallback(
        samples,
        num_samples=len(samples),
        seed=seed,
        max_new_tokens=MAX_LEN + 1,
        batch_size=16,
        every_n_steps=every,
        job_id=job_id,
        job_name=job_name,
        store=store,
    )


def demo_arguments(output_dir: str, epochs: int, seed: int, progress: bool, learning_rate: float) -> Any:
    """Settings a model of 100k parameters learns the task with in a few thousand steps."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=BATCH_SIZE,
        learning_rate=learning_rate,
        warmup_steps=50,
        lr_scheduler_type="cosine",
        logging_strategy="steps",
        logging_steps=10,  # the loss and learning rate Trends draws beside the CER
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        disable_tqdm=not progress,
    )


def summarize(store: Any, job_id: str, db_path: Path) -> DemoResult:
    """First and last round's average CER, read back from the store."""
    rounds = store.trends(job_id).rounds
    cers = rounds["avg_char_error_rate"].dropna().tolist()
    first, last = (cers[0], cers[-1]) if cers else (None, None)
    store.close()
    return DemoResult(job_id, db_path, first, last, len(rounds))
