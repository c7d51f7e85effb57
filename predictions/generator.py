"""Batched, greedy generation for a round, leaving the model and tokenizer as it found them.

Left padding so every prompt ends where generation starts; only the new tokens are decoded. The
padding side, pad token, truncation side, train mode and `use_cache` are restored afterwards, so
the training loop never sees a change (trl's LogCompletionsCallback leaves the padding side flipped).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import BatchEncoding

from predictions.distributed import sharded_generation
from predictions.sampler import Sample


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP, DataParallel, FSDP1, DeepSpeed and torch.compile wrappers.

    Those wrappers keep the model in `.module` (torch.compile in `._orig_mod`) and forward unknown
    attributes to it, so `generate` is looked up on the class: the model with its own is the one to call.
    """
    while not hasattr(type(model), "generate"):
        inner = model._modules.get("_orig_mod") or getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner
    return model


@contextmanager
def generation_mode(model: torch.nn.Module | None, tokenizer: Any) -> Iterator[None]:
    """Eval mode, cache on, left padding and truncation, a pad token; all put back on exit."""
    saved = (tokenizer.padding_side, tokenizer.truncation_side, model is None or model.training)
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    pad_missing = tokenizer.pad_token is None
    try:
        tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
        if pad_missing:
            tokenizer.pad_token = tokenizer.eos_token
        if model is not None:
            model.eval()
        if use_cache is not None:
            config.use_cache = True
        yield
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = saved[0], saved[1]
        if pad_missing:
            tokenizer.pad_token = None
        if model is not None:
            model.train(saved[2])
        if use_cache is not None:
            config.use_cache = use_cache


def uses_chat_template(tokenizer: Any, mode: str) -> bool:
    """ "auto" follows the tokenizer; "on" and "off" are decided by the config (checked at train begin)."""
    if mode == "auto":
        return bool(getattr(tokenizer, "chat_template", None))
    return mode == "on"


def prompt_texts(samples: Sequence[Sample], tokenizer: Any, chat: bool) -> list[str]:
    """What the model is given: the chat template with a generation prompt, or the prompt itself."""
    if not chat:
        return [sample.prompt for sample in samples]
    turns = [sample.messages or [{"role": "user", "content": sample.prompt}] for sample in samples]
    return [tokenizer.apply_chat_template(t, add_generation_prompt=True, tokenize=False) for t in turns]


def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    samples: Sequence[Sample],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    max_prompt_tokens: int = 512,
    use_chat_template: str = "auto",
    generation_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """The model's answer to each sample, in order, generated `batch_size` prompts at a time."""
    batches = encode_batches(
        tokenizer,
        samples,
        batch_size=batch_size,
        max_prompt_tokens=max_prompt_tokens,
        use_chat_template=use_chat_template,
    )
    return generate_batches(
        model, tokenizer, batches, max_new_tokens=max_new_tokens, generation_kwargs=generation_kwargs
    )


def encode_batches(
    tokenizer: Any,
    samples: Sequence[Sample],
    *,
    batch_size: int = 8,
    max_prompt_tokens: int = 512,
    use_chat_template: str = "auto",
) -> list[BatchEncoding]:
    """The prompts rendered and tokenized, left-padded, `batch_size` at a time.

    Everything that can fail on one rank alone happens here, before any rank enters a collective.
    """
    chat = uses_chat_template(tokenizer, use_chat_template)
    texts = prompt_texts(samples, tokenizer, chat)
    # A chat template writes its own special tokens; plain prompts get the tokenizer's usual ones.
    encode = {"truncation": True, "max_length": max_prompt_tokens, "add_special_tokens": not chat}
    with generation_mode(None, tokenizer):
        return [
            tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True, **encode)
            for start in range(0, len(texts), batch_size)
        ]


def generate_batches(
    model: torch.nn.Module,
    tokenizer: Any,
    batches: Sequence[BatchEncoding],
    *,
    max_new_tokens: int = 64,
    generation_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """The answers to encoded batches, in order; every rank of a sharded model must call it alike.

    `no_grad`, not `inference_mode`: parameters that ZeRO-3 gathers inside an inference-mode block
    become inference tensors, and the next training step fails on them.
    """
    inner = unwrap(model)
    options = {"max_new_tokens": max_new_tokens, "do_sample": False, **(generation_kwargs or {})}
    answers: list[str] = []
    with generation_mode(inner, tokenizer), sharded_generation(model) as synced, torch.no_grad():
        for batch in batches:
            answers += _generate_batch(inner, tokenizer, batch, {**synced, **options})
    return answers


def _generate_batch(model: Any, tokenizer: Any, batch: BatchEncoding, options: dict[str, Any]) -> list[str]:
    """Generate one left-padded batch and decode only the tokens after the prompt."""
    inputs = batch.to(model.device)
    options = {"pad_token_id": tokenizer.pad_token_id, "use_cache": True, **options}
    output = model.generate(**inputs, **options)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
