"""The run's context: the training arguments that explain a run's curves, recorded with its job.

Two runs whose CER differs usually differ in a learning rate, a batch size or a dataset: the job keeps
those (`config["training"]`), so Trends can say how a run was trained and Compare what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from predictions.config import jsonable

TRAINING_KEY = "training"
"""The job config key that holds the run's context."""
RL_ARGUMENTS = (
    "num_generations",
    "max_completion_length",
    "temperature",
    "beta",
    "loss_type",
    "steps_per_generation",
    "num_iterations",
)
"""A GRPO-style trainer's arguments that shape its rollouts and its loss, kept when the arguments have
them (TRL's GRPOConfig and its relatives); a plain Trainer's have none."""


def trainer_context(
    args: Any, state: Any, trainer: Any = None, train_dataloader: Any = None
) -> dict[str, Any]:
    """What the Trainer's arguments and state say about the run, at train begin, as JSON.

    `state` has the resolved length of the run (epochs and steps after `max_steps`); the dataset size
    is the training dataloader's dataset's, when it has one.
    """
    per_device = int(args.per_device_train_batch_size)
    accumulation = int(args.gradient_accumulation_steps)
    world = int(getattr(args, "world_size", 1) or 1)
    context = {
        "trainer": type(trainer).__name__ if trainer is not None else None,
        "learning_rate": args.learning_rate,
        "epochs": state.num_train_epochs or args.num_train_epochs,
        "max_steps": state.max_steps or (args.max_steps if args.max_steps > 0 else None),
        "batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "world_size": world,
        "effective_batch_size": per_device * accumulation * world,
        "dataset_size": dataset_size(train_dataloader),
        "seed": args.seed,
        "optimizer": _value(args.optim),
        "lr_scheduler": _value(args.lr_scheduler_type),
        "warmup_steps": getattr(args, "warmup_steps", None),
        "weight_decay": args.weight_decay,
        "max_grad_norm": args.max_grad_norm,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "gradient_checkpointing": bool(args.gradient_checkpointing),
    }
    context |= {name: _value(getattr(args, name, None)) for name in RL_ARGUMENTS}
    return clean_context(context)


def clean_context(context: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A user's or the Trainer's context as JSON: keys as text, empty values dropped, other objects named."""
    if context is None:
        return None
    return {str(key): jsonable(value) for key, value in context.items() if value is not None}


def dataset_size(dataloader: Any) -> int | None:
    """How many rows the run trains on: the dataloader's dataset length, None for an iterable dataset."""
    dataset = getattr(dataloader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:  # an IterableDataset has no length
        return None


def _value(option: Any) -> Any:
    """An enum option (`SchedulerType.LINEAR`) as its value (`"linear"`)."""
    return getattr(option, "value", option)
