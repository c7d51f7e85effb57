"""Batched, greedy generation for a round, asked the way the model was trained, stopped at the turn's end.

Prompts are rendered as TRL's SFTTrainer rendered the dataset (see `rendering`). A causal model's
prompts are left padded so every prompt ends where generation starts, and only the tokens after the
prompt are its answer; an encoder-decoder model (T5, BART) reads the prompt in its encoder, right
padded as it was trained, and its answer is the decoder's output after the start token. Either way
the answer is cut at the first end-of-turn token and at the first stop string. The padding side, pad
token, truncation side, train mode and `use_cache` are restored afterwards, so the training loop
never sees a change (trl's LogCompletionsCallback leaves the padding side flipped).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import BatchEncoding

from predictions.scoring.sample import Sample
from predictions.training.distributed import sharded_generation

RAW, CHAT_TEMPLATE = "raw", "chat_template"
"""The two renderings: the prompt text as it is, or the chat template with a generation prompt."""
_PROBE = "\x00predictions-end-of-turn-probe\x00"


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


def is_encoder_decoder(model: Any) -> bool:
    """True for T5, BART and other encoder-decoder models, also inside DDP, FSDP, DeepSpeed or PEFT.

    PEFT's wrapper forwards `config` to the model it adapts; the other wrappers are unwrapped.
    """
    config = getattr(unwrap(model), "config", None) if isinstance(model, torch.nn.Module) else None
    return getattr(config, "is_encoder_decoder", False) is True


def padding_side(encoder_decoder: bool) -> str:
    """Left for a causal model (the prompt ends where the answer starts); right for an encoder's input,
    as it was trained (BART's learned positions would shift under left padding)."""
    return "right" if encoder_decoder else "left"


@contextmanager
def generation_mode(model: torch.nn.Module | None, tokenizer: Any, *, side: str = "left") -> Iterator[None]:
    """Eval mode, cache on, `side` padding, left truncation, a pad token; all put back on exit."""
    saved = (tokenizer.padding_side, tokenizer.truncation_side, model is None or model.training)
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    pad_missing = tokenizer.pad_token is None
    try:
        tokenizer.padding_side, tokenizer.truncation_side = side, "left"
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


# rendering


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def rendering(samples: Sequence[Sample], tokenizer: Any, mode: str) -> str:
    """RAW or CHAT_TEMPLATE: under "auto", TRL's rule (chat turns get the template, plain text does not)."""
    if mode != "auto":
        return CHAT_TEMPLATE if mode == "on" else RAW
    conversational = any(sample.messages is not None for sample in samples)
    return CHAT_TEMPLATE if conversational and has_chat_template(tokenizer) else RAW


def prompt_texts(samples: Sequence[Sample], tokenizer: Any, chat: bool) -> list[str]:
    """What the model is given: the chat template with a generation prompt, or the prompt itself."""
    if not chat:
        return [sample.prompt for sample in samples]
    turns = [sample.messages or [{"role": "user", "content": sample.prompt}] for sample in samples]
    return [tokenizer.apply_chat_template(t, add_generation_prompt=True, tokenize=False) for t in turns]


def encode_options(chat: bool, max_prompt_tokens: int) -> dict[str, Any]:
    """A chat template writes its own special tokens; plain prompts get the usual ones, as in TRL."""
    return {"truncation": True, "max_length": max_prompt_tokens, "add_special_tokens": not chat}


# end of turn


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends the answer: eos, the generation config's eos ids, the template's end of turn."""
    generation_config = getattr(model, "generation_config", None)
    configured = getattr(generation_config, "eos_token_id", None)
    configured = configured if isinstance(configured, list | tuple) else [configured]
    ids = [tokenizer.eos_token_id, *configured, end_of_turn_id(tokenizer)]
    return list(dict.fromkeys(i for i in ids if isinstance(i, int)))


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The special token the chat template writes right after an assistant's words (`<|im_end|>`, ...)."""
    if not has_chat_template(tokenizer):
        return None
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = tokenizer.apply_chat_template(turns, tokenize=False)
        after = text[text.rindex(_PROBE) + len(_PROBE) :]
        first = tokenizer(after, add_special_tokens=False)["input_ids"][:1]
    except Exception:  # a template that refuses this probe conversation defines no marker we can find
        return None
    special = set(tokenizer.all_special_ids) | {
        i for i, token in tokenizer.added_tokens_decoder.items() if token.special
    }
    return first[0] if first and first[0] in special else None


def cut_at_stop(ids: list[int], stops: Sequence[int]) -> list[int]:
    """The tokens before the first stop token: nothing after the end of the turn is kept."""
    end = next((i for i, token in enumerate(ids) if token in stops), len(ids))
    return ids[:end]


def stop_strings(model: Any, options: Mapping[str, Any]) -> list[str]:
    """The stop strings in play: `generation_kwargs`' own, else the model's generation config's."""
    value = options.get("stop_strings")
    if value is None:
        value = getattr(getattr(model, "generation_config", None), "stop_strings", None)
    value = [value] if isinstance(value, str) else list(value or [])
    return [text for text in value if isinstance(text, str) and text]


def cut_at_string(text: str, strings: Sequence[str]) -> str:
    """The text before the first stop string: generate stops after one, the answer ends before it."""
    ends = [found for found in (text.find(s) for s in strings) if found >= 0]
    return text[: min(ends)] if ends else text


# generating


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
        encoder_decoder=is_encoder_decoder(model),
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
    encoder_decoder: bool = False,
) -> list[BatchEncoding]:
    """The prompts rendered and tokenized, padded for the model's kind, `batch_size` at a time.

    Everything that can fail on one rank alone happens here, before any rank enters a collective.
    """
    chat = rendering(samples, tokenizer, use_chat_template) == CHAT_TEMPLATE
    texts = prompt_texts(samples, tokenizer, chat)
    encode = encode_options(chat, max_prompt_tokens)
    with generation_mode(None, tokenizer, side=padding_side(encoder_decoder)):
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
    options = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "eos_token_id": stop_token_ids(inner, tokenizer),
        **(generation_kwargs or {}),
    }
    strings = stop_strings(inner, options)
    if strings:
        options["tokenizer"] = tokenizer  # generate needs it to find stop strings in the tokens
    encoder_decoder = is_encoder_decoder(model)
    answers: list[str] = []
    side = padding_side(encoder_decoder)
    with generation_mode(inner, tokenizer, side=side), sharded_generation(model) as synced, torch.no_grad():
        for batch in batches:
            texts = _generate_batch(inner, tokenizer, batch, {**synced, **options}, encoder_decoder)
            answers += [cut_at_string(text, strings) for text in texts]
    return answers


def _generate_batch(
    model: Any, tokenizer: Any, batch: BatchEncoding, options: dict[str, Any], encoder_decoder: bool
) -> list[str]:
    """Generate one batch and decode only the answer's tokens, up to a stop token.

    A causal model's output repeats the prompt (left padded, so it ends at the same column in every
    row); an encoder-decoder's output is the decoder's alone, opened by its start token.
    """
    inputs = batch.to(model.device)
    options = {"pad_token_id": tokenizer.pad_token_id, "use_cache": True, **options}
    output = model.generate(**inputs, **options)
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"generate() returned a {type(output).__name__}, not token ids")
    stops = options["eos_token_id"]
    stops = stops if isinstance(stops, list | tuple) else [stops]
    start = 1 if encoder_decoder else inputs["input_ids"].shape[1]
    new_tokens = output[:, start:].tolist()
    return tokenizer.batch_decode([cut_at_stop(ids, stops) for ids in new_tokens], skip_special_tokens=True)
