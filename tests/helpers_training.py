"""Shared pieces for the tests that train: tiny models, the reverse task, a Trainer factory."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from predictions.demo.run import ALPHABET, PROMPT_SUFFIX, encode_pairs, make_pairs
from predictions.demo.tiny_model import build_tiny_model, build_tokenizer

torch.set_num_threads(1)
SEQ_LEN = 24


def tokenizer(chat: bool = False) -> Any:
    return build_tokenizer(ALPHABET + PROMPT_SUFFIX + " ", chat_template=chat)


def pairs(count: int = 48, seed: int = 0) -> list[dict[str, str]]:
    return make_pairs(count, seed)


def chat_rows(count: int = 6) -> list[dict[str, Any]]:
    """Chat samples: a system turn, a user turn, and the assistant's answer (the ground truth)."""
    return [
        {
            "messages": [
                {"role": "system", "content": "reverse"},
                {"role": "user", "content": pair["prompt"]},
                {"role": "assistant", "content": pair["response"]},
            ]
        }
        for pair in pairs(count, seed=1)
    ]


def model(kind: str = "gpt2", tok: Any = None, seed: int = 0) -> Any:
    return build_tiny_model(
        kind, tok or tokenizer(), hidden_size=32, layers=1, heads=2, max_positions=96, seed=seed
    )


def training_options(output_dir: Path, epochs: int = 2, **overrides: Any) -> dict[str, Any]:
    """Quiet, seeded, CPU-only Trainer settings; TrainingArguments and TRL's SFTConfig both take them."""
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": epochs,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "logging_strategy": "no",
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        **overrides,
    }


def arguments(output_dir: Path, epochs: int = 2, **overrides: Any) -> TrainingArguments:
    return TrainingArguments(**training_options(output_dir, epochs, **overrides))


class EventRecorder(TrainerCallback):
    """Records the name of every hook the Trainer calls, in order."""

    def __init__(self):
        self.events = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            self.events.append(name)
        return super().__getattribute__(name)


def trainer(
    tmp_path: Path,
    callbacks: list[TrainerCallback],
    kind: str = "gpt2",
    tok: Any = None,
    eval_pairs: list[dict[str, str]] | None = None,
    **args: Any,
) -> Trainer:
    """A real Trainer on 32 reverse-task examples (4 steps an epoch); `eval_pairs` its eval set."""
    tok = tok or tokenizer()
    return Trainer(
        model=model(kind, tok),
        args=arguments(tmp_path / "out", **args),
        train_dataset=encode_pairs(pairs(32, seed=2), tok, length=SEQ_LEN),
        eval_dataset=encode_pairs(eval_pairs, tok, length=SEQ_LEN) if eval_pairs else None,
        processing_class=tok,
        callbacks=callbacks,
    )


@contextmanager
def locked(db_path: Path):
    """Hold SQLite's write lock from another connection: the store is really unavailable meanwhile."""
    connection = sqlite3.connect(db_path, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def count_rows(db_path: Path, job_id: str) -> int:
    with sqlite3.connect(db_path) as connection:
        query = "SELECT COUNT(*) FROM training_predictions WHERE job_id = ?"
        return connection.execute(query, (job_id,)).fetchone()[0]


CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""ChatML, as Qwen's and many others' templates: the turn ends with `<|im_end|>`, which is not eos."""


def chatml_tokenizer() -> Any:
    """A character tokenizer with ChatML's turn markers as special tokens and eos left as `<eos>`."""
    tok = build_tokenizer(ALPHABET + PROMPT_SUFFIX + " \nusertm", chat_template=False)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML_TEMPLATE
    return tok
