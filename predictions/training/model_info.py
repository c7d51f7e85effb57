"""What a job records about the model: its name, and the PEFT adapter being trained on it, if any.

A PEFT model's own class (`PeftModelForCausalLM`) says nothing about what is fine-tuned: the job
names the base model and records the adapter's type and rank, which the dashboard shows.
"""

from __future__ import annotations

from typing import Any

from predictions.training.generator import unwrap


def model_name(model: Any) -> str | None:
    """The checkpoint name when the model was loaded from one, else its class name; under PEFT, the base's."""
    if model is None:
        return None
    model = base_model(unwrap(model))
    return getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__


def base_model(model: Any) -> Any:
    """The model a PEFT wrapper adapts (itself when it is not one)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) and _adapter_configs(model) else model


def adapter(model: Any) -> dict[str, Any] | None:
    """The active adapter's type, rank and name, and the base model's name; None without an adapter.

    Read from `peft_config`, which PEFT's wrappers and transformers' own adapter loading both keep.
    """
    if model is None:
        return None
    inner = unwrap(model)
    configs = _adapter_configs(inner)
    if not configs:
        return None
    active = getattr(inner, "active_adapter", None)
    name = active if isinstance(active, str) and active in configs else next(iter(configs))
    config = configs[name]
    kind = getattr(config, "peft_type", None)
    rank = getattr(config, "r", None)
    return {
        "type": str(getattr(kind, "value", kind or type(config).__name__)),
        "rank": rank if isinstance(rank, int) else None,
        "name": str(name),
        "base_model": model_name(inner),
    }


def _adapter_configs(model: Any) -> dict[str, Any]:
    configs = getattr(model, "peft_config", None)
    return configs if isinstance(configs, dict) else {}
