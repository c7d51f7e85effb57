"""A two-minute training run to watch: a tiny GPT-2 learns to reverse short strings on the CPU.

It trains from scratch (nothing is downloaded), with the callback writing scored rounds to the
embedded store, so the dashboard's CER line falls round by round. `--dashboard` starts the dashboard
beside it on the same SQLite file.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictions.store.sqlite import DEFAULT_DB_PATH

ALPHABET = "abcdefghij"
MIN_LEN, MAX_LEN = 3, 10
BATCH_SIZE = 32
HIDDEN, LAYERS = 96, 3
PROMPT_SUFFIX = "="
REPO_ROOT = Path(__file__).resolve().parent.parent


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
    epochs: int = 8,
    steps_per_epoch: int = 200,
    rounds_per_epoch: int = 5,
    num_samples: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    """Train the tiny model from scratch, the callback writing to the SQLite store at `db_path`."""
    from transformers import Trainer

    from predictions.store import SQLiteStore
    from predictions.tiny import build_tiny_model, build_tokenizer

    tokenizer = build_tokenizer(ALPHABET + PROMPT_SUFFIX)
    pairs = make_pairs(steps_per_epoch * BATCH_SIZE + num_samples, seed)
    random.Random(seed).shuffle(pairs)
    held_out, train = pairs[:num_samples], pairs[num_samples:]
    store = SQLiteStore(db_path)
    job_id = job_id or f"demo-reverse-{random.Random().getrandbits(24):06x}"
    every = max(1, steps_per_epoch // rounds_per_epoch)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = Trainer(
            model=build_tiny_model(
                "gpt2", tokenizer, hidden_size=HIDDEN, layers=LAYERS, max_positions=2 * MAX_LEN + 4, seed=seed
            ),
            args=demo_arguments(output_dir, epochs, seed, progress),
            train_dataset=encode_pairs(train, tokenizer, length=2 * MAX_LEN + 2),
            processing_class=tokenizer,
            callbacks=[demo_callback(held_out, store, job_id, every, seed)],
        )
        trainer.train()
    return summarize(store, job_id, Path(db_path))


def demo_callback(samples: list[dict[str, str]], store: Any, job_id: str, every: int, seed: int) -> Any:
    from predictions.callback import PredictionsCallback

    return PredictionsCallback(
        samples,
        num_samples=len(samples),
        seed=seed,
        max_new_tokens=MAX_LEN + 1,
        batch_size=16,
        every_n_steps=every,
        job_id=job_id,
        job_name=f"Demo: reverse strings ({job_id})",
        store=store,
    )


def demo_arguments(output_dir: str, epochs: int, seed: int, progress: bool) -> Any:
    """Settings a model of 100k parameters learns the task with in a few thousand steps."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=BATCH_SIZE,
        learning_rate=2e-3,
        warmup_steps=50,
        lr_scheduler_type="cosine",
        logging_strategy="no",
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


def start_dashboard(port: int, db_path: Path) -> subprocess.Popen:
    """`streamlit run app.py` from the repo root, reading the same SQLite file as the training run."""
    app = REPO_ROOT / "app.py"
    if not app.is_file():
        raise FileNotFoundError(f"--dashboard needs the dashboard at {app}, which does not exist yet")
    env = {**os.environ, "PREDICTIONS_DB": str(db_path.resolve())}
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port)]
    command += ["--server.headless", "true"]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env)
