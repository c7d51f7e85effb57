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

ALPHABET = "abcdef"
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


def make_pairs(count: int, seed: int, min_len: int = 3, max_len: int = 6) -> list[dict[str, str]]:
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
    db_path: str | os.PathLike[str] = ".predictions/predictions.db",
    job_id: str | None = None,
    epochs: int = 6,
    train_size: int = 3000,
    num_samples: int = 16,
    rounds_per_epoch: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    """Train the tiny model, with the callback writing to the SQLite store at `db_path`."""
    import torch
    from transformers import Trainer, TrainingArguments

    from predictions.callback import PredictionsCallback
    from predictions.store import SQLiteStore
    from predictions.tiny import build_tiny_model, build_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(ALPHABET + PROMPT_SUFFIX)
    pairs = make_pairs(train_size + num_samples, seed)
    random.Random(seed).shuffle(pairs)
    held_out, train = pairs[:num_samples], pairs[num_samples:]
    batch_size = 32
    steps_per_epoch = -(-len(train) // batch_size)
    store = SQLiteStore(db_path)
    job_id = job_id or f"demo-reverse-{random.Random().getrandbits(24):06x}"
    callback = PredictionsCallback(
        held_out,
        num_samples=num_samples,
        seed=seed,
        max_new_tokens=8,
        every_n_steps=max(1, steps_per_epoch // rounds_per_epoch),
        job_id=job_id,
        job_name=f"Demo: reverse strings ({job_id})",
        store=store,
    )
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=3e-3,
            warmup_steps=20,
            weight_decay=0.0,
            lr_scheduler_type="cosine",
            logging_strategy="no",
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=seed,
            disable_tqdm=not progress,
            dataloader_num_workers=0,
        )
        model = build_tiny_model(
            "gpt2", tokenizer, hidden_size=64, layers=2, heads=4, max_positions=32, seed=seed
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=encode_pairs(train, tokenizer, length=16),
            processing_class=tokenizer,
            callbacks=[callback],
        )
        trainer.train()
    return summarize(store, job_id, Path(db_path))


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
