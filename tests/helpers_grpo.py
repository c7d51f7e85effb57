"""A real `trl.GRPOTrainer` on the tiny reverse-task model: two reward functions that count their calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from tests import helpers_training as h

GROUP = 4
"""Completions per prompt (num_generations)."""


def rows(count: int = 8, *, conversational: bool = False) -> list[dict[str, Any]]:
    """Reverse-task prompts with an `answer` (the ground truth) and an `id` column."""
    made = []
    for i, pair in enumerate(h.pairs(count, seed=3)):
        prompt: Any = pair["prompt"]
        if conversational:
            prompt = [{"role": "user", "content": pair["prompt"]}]
        made.append({"prompt": prompt, "answer": pair["response"], "id": f"q{i}"})
    return made


class Counted:
    """A reward function that records every call: how many rollouts, and the values it returned."""

    def __init__(self, name: str, score: Callable[[str, dict[str, Any]], float | None]):
        self.__name__ = name
        self.score = score
        self.calls: list[dict[str, Any]] = []

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        columns = {key: value for key, value in kwargs.items() if isinstance(value, list)}
        values = [
            self.score(text_of(c), {k: v[i] for k, v in columns.items()}) for i, c in enumerate(completions)
        ]
        state = kwargs["trainer_state"]
        self.calls.append({"step": state.global_step, "values": values, "ids": list(kwargs.get("id") or [])})
        return values


def text_of(completion: Any) -> str:
    return completion if isinstance(completion, str) else completion[0]["content"]


def reward_functions() -> list[Counted]:
    """One rule-based against the `answer` column, one on length (longer is worse)."""
    accuracy = Counted("accuracy", lambda text, row: float(text.strip() == row["answer"]))
    brevity = Counted("brevity", lambda text, row: -len(text) / 10.0)
    return [accuracy, brevity]


def held_scorer(release: Path, limit_s: float = 60.0) -> Callable[..., float]:
    """A user scorer that holds each row until `release` exists (at most `limit_s`): a test that stops a
    run with a signal is then sure the batches scored so far are still in the builder when it comes, and
    creates the file right after sending it to let them go."""

    def held(prediction: str, ground_truth: str | None, sample: Any) -> float:
        deadline = time.monotonic() + limit_s
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return 1.0

    return held


def grpo_trainer(
    tmp_path: Path,
    reward_funcs: list[Any],
    callbacks: list[Any],
    *,
    conversational: bool = False,
    peft_config: Any = None,
    **args: Any,
) -> GRPOTrainer:
    """GRPOTrainer as a user would set it up: 8 prompts, groups of GROUP, seeded, logging every step;
    `peft_config` (a `peft.LoraConfig`) trains an adapter on the model, as TRL does with it."""
    tok = h.tokenizer(chat=conversational)
    options = h.training_options(tmp_path / "out", 1, learning_rate=1e-2, logging_strategy="steps")
    options.pop("num_train_epochs")
    settings = {"per_device_train_batch_size": 8, "max_steps": 3, "logging_steps": 1, **args}
    config = GRPOConfig(**{**options, **settings}, num_generations=GROUP, max_completion_length=8)
    return GRPOTrainer(
        model=h.model(tok=tok),
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=Dataset.from_list(rows(conversational=conversational)),
        processing_class=tok,
        callbacks=callbacks,
        peft_config=peft_config,
    )


def lora(rank: int = 4) -> Any:
    """A LoRA adapter of `rank` on the tiny GPT-2's attention."""
    from peft import LoraConfig

    return LoraConfig(r=rank, target_modules=["c_attn"], task_type="CAUSAL_LM")


def count_generate(trainer: GRPOTrainer) -> list[int]:
    """Counts the model's `generate` calls (the instance attribute shadows the class's method)."""
    calls: list[int] = []
    original = trainer.model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    trainer.model.generate = generate
    return calls


def logged(trainer: GRPOTrainer, *keys: str) -> list[tuple]:
    """Per-step values of the trainer's own log (loss, reward means...), in step order."""
    return [tuple(entry.get(key) for key in keys) for entry in trainer.state.log_history if "loss" in entry]


def seed_grpo_job(
    tmp_path: Path, store: Any, steps: int = 6, name: str = "grpo-demo", peft_config: Any = None
) -> str:
    """A real GRPO run of `steps` steps recorded into `store`; returns the job id."""
    from predictions import RolloutRecorder

    recorder = RolloutRecorder(store=store, job_name=name)
    funcs = recorder.wrap(reward_functions())
    trainer = grpo_trainer(tmp_path, funcs, [recorder], max_steps=steps, peft_config=peft_config)
    trainer.train()
    return recorder.job_id
