"""The run's context in words: how a job was trained (`config["training"]`, its model and adapter).

Trends shows it in one line and a table; Compare lays the chosen jobs side by side, the arguments that
differ first. Every value is made text here and shown as text by the pages (never Markdown).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from predictions.store.records import Job

LABELS = {
    "model": "Model",
    "adapter": "Adapter",
    "trainer": "Trainer",
    "trial": "Search trial",
    "hyperparameters": "Trial's hyperparameters",
    "learning_rate": "Learning rate",
    "epochs": "Epochs",
    "max_steps": "Steps",
    "batch_size": "Batch size per device",
    "gradient_accumulation_steps": "Gradient accumulation",
    "world_size": "Processes",
    "effective_batch_size": "Effective batch size",
    "dataset_size": "Training rows",
    "seed": "Seed",
    "optimizer": "Optimizer",
    "lr_scheduler": "LR schedule",
    "warmup_steps": "Warmup steps",
    "weight_decay": "Weight decay",
    "max_grad_norm": "Max grad norm",
    "precision": "Precision",
    "gradient_checkpointing": "Gradient checkpointing",
    "num_generations": "Completions per prompt",
    "max_completion_length": "Max completion tokens",
    "temperature": "Sampling temperature",
    "beta": "KL coefficient (beta)",
    "loss_type": "Loss type",
    "steps_per_generation": "Steps per generation",
    "num_iterations": "Iterations per generation",
}
"""Known arguments in the order shown; a key a user recorded by hand follows under its own name."""

SUMMARY = ("learning_rate", "epochs", "effective_batch_size", "dataset_size", "seed")
"""The arguments of Trends' one-line summary (after the model)."""


def context(job: Job, config: Mapping[str, Any] | None) -> dict[str, str]:
    """The job's context as label-ordered text values: model and adapter, then the training arguments."""
    config = config if isinstance(config, Mapping) else {}
    training = config.get("training")
    values: dict[str, Any] = {"model": job.model, "adapter": adapter_text(config.get("adapter"))}
    values |= dict(training) if isinstance(training, Mapping) else {}
    known = {key: values[key] for key in LABELS if values.get(key) is not None}
    extra = {str(key): value for key, value in values.items() if key not in LABELS and value is not None}
    return {key: text(value) for key, value in (known | extra).items()}


def has_training(config: Mapping[str, Any] | None) -> bool:
    return isinstance(config, Mapping) and isinstance(config.get("training"), Mapping)


def label(key: str) -> str:
    return LABELS.get(key, key)


def adapter_text(adapter: Any) -> str | None:
    """`LORA, rank 8` for a PEFT adapter the job recorded; None without one."""
    if not isinstance(adapter, Mapping):
        return None
    rank = f", rank {adapter['rank']}" if adapter.get("rank") is not None else ""
    return f"{adapter.get('type') or 'PEFT'}{rank}"


def text(value: Any) -> str:
    """One value as people read it: 0.0001 as 1e-04, 1200 as 1,200, True as yes, a search trial's
    hyperparameters as `learning_rate=0.001, warmup_steps=10`."""
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={text(item)}" for key, item in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return str(value)


def summary_line(values: Mapping[str, str]) -> str:
    """Trends' one line: model, adapter, then the summary arguments the job has, `·` between."""
    parts = [f"{label(key)} {values[key]}" for key in ("model", "adapter", *SUMMARY) if key in values]
    return "Run: " + " · ".join(parts)


def table(values: Mapping[str, str]) -> pd.DataFrame:
    """Every argument of one job: a row each (argument, value)."""
    return pd.DataFrame({"argument": [label(k) for k in values], "value": list(values.values())})


FIXED = ("differs", "argument")


def comparison(contexts: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    """The chosen jobs side by side: a row per argument, a column per job (by its legend name), the
    arguments whose values differ first and marked; a job without an argument shows it blank."""
    keys = list(dict.fromkeys(key for values in contexts.values() for key in values))
    contexts = {(f"{name} (job)" if name in FIXED else name): values for name, values in contexts.items()}
    rows = []
    for key in keys:
        cells = {name: values.get(key, "") for name, values in contexts.items()}
        rows.append({"differs": len(set(cells.values())) > 1, "argument": label(key), **cells})
    frame = pd.DataFrame(rows, columns=[*FIXED, *contexts])
    return frame.sort_values("differs", ascending=False, kind="stable").reset_index(drop=True)
