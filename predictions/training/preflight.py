"""Checks at train begin, on every rank, that a round can run, so a bad option fails before step 1.

Without them a generation option that fails in every round (an unknown argument, a dict instead of
token ids, more new tokens than the model has positions) lets training finish "successfully" with no
round stored and only a logged traceback. The checks render and tokenize every tracked prompt and
generate one token on one batch, the way a round does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from predictions.config import PredictionsConfig
from predictions.errors import ConfigError
from predictions.scoring.sample import Sample
from predictions.training.distributed import all_ranks_ok
from predictions.training.generator import (
    CHAT_TEMPLATE,
    encode_options,
    generate,
    generation_mode,
    is_encoder_decoder,
    prompt_texts,
    rendering,
    unwrap,
)


@dataclass(frozen=True)
class ModelInputs:
    """How the prompts are rendered (RAW or CHAT_TEMPLATE) and the exact text each sample gives the model."""

    rendering: str
    texts: dict[int, str]


def preflight(
    model: Any, tokenizer: Any, samples: list[Sample], batch: list[Sample], config: PredictionsConfig
) -> ModelInputs:
    """Every prompt renders and fits beside the answer, and `batch` generates one token; else ConfigError.

    Every rank calls it; each check ends in one all-reduce, so every rank raises or none does.
    """
    inner = unwrap(model)
    inputs = None
    with agreed():
        inputs, longest = tokenize_prompts(inner, tokenizer, samples, config)
        check_room(inner, longest, config.max_new_tokens, encoder_decoder=is_encoder_decoder(inner))
    with agreed():
        check_one_token(model, tokenizer, batch, config)  # the wrapper: a sharded model generates in step
    return inputs


@contextmanager
def agreed() -> Iterator[None]:
    """Run the checks inside; then every rank learns whether any rank failed, and all raise together."""
    problem: ConfigError | None = None
    try:
        yield
    except ConfigError as error:
        problem = error
    if not all_ranks_ok(problem is None):
        raise problem or ConfigError(
            "the checks before the first step failed on another rank; its log names the option"
        )


def tokenize_prompts(
    model: Any, tokenizer: Any, samples: list[Sample], config: PredictionsConfig
) -> tuple[ModelInputs, int]:
    """The rendered, truncated prompts as the model gets them (decoded back), and the longest in tokens."""
    mode = rendering(samples, tokenizer, config.use_chat_template)
    try:
        with generation_mode(model, tokenizer):
            texts = prompt_texts(samples, tokenizer, mode == CHAT_TEMPLATE)
            encode = encode_options(mode == CHAT_TEMPLATE, config.max_prompt_tokens)
            ids = [tokenizer(text, **encode)["input_ids"] for text in texts]
            shown = {
                s.index: tokenizer.decode(i, skip_special_tokens=False)
                for s, i in zip(samples, ids, strict=True)
            }
    except Exception as error:
        raise ConfigError(
            f"tokenizer={type(tokenizer).__name__} cannot render and tokenize the tracked prompts "
            f"({_brief(error)}); valid: the tokenizer the model was trained with, or "
            f"use_chat_template='off' when the chat template is the problem"
        ) from error
    return ModelInputs(mode, shown), max((len(i) for i in ids), default=0)


def check_room(
    model: Any, longest_prompt: int, max_new_tokens: int, *, encoder_decoder: bool = False
) -> None:
    """The longest prompt plus the answer must fit in the model's positions, or generation fails.

    An encoder-decoder model reads the prompt in its encoder and writes the answer (after its start
    token) in its decoder: each must fit on its own. Relative positions (T5) have no limit.
    """
    config = getattr(model, "config", None)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return
    if encoder_decoder:
        _check_encoder_decoder_room(limit, longest_prompt, max_new_tokens)
        return
    if longest_prompt + max_new_tokens <= limit:
        return
    room = limit - longest_prompt
    valid = f"max_new_tokens <= {room}" if room >= 1 else "a smaller max_prompt_tokens"
    raise ConfigError(
        f"max_new_tokens={max_new_tokens} does not fit: the longest tracked prompt has {longest_prompt} "
        f"tokens and the model has {limit} positions; valid: {valid}"
    )


def _check_encoder_decoder_room(limit: int, longest_prompt: int, max_new_tokens: int) -> None:
    if max_new_tokens + 1 > limit:
        raise ConfigError(
            f"max_new_tokens={max_new_tokens} does not fit: the decoder has {limit} positions, one for its "
            f"start token; valid: max_new_tokens <= {limit - 1}"
        )
    if longest_prompt > limit:
        raise ConfigError(
            f"the longest tracked prompt has {longest_prompt} tokens and the encoder has {limit} positions; "
            f"valid: max_prompt_tokens <= {limit}"
        )


def check_one_token(model: Any, tokenizer: Any, batch: list[Sample], config: PredictionsConfig) -> None:
    """Generate one token for `batch` with the round's options; a failure names the option behind it."""
    try:
        _one_token(model, tokenizer, batch, config, config.generation_kwargs)
    except Exception as error:
        kwargs = config.generation_kwargs
        culprits = [
            f"{k}={v!r}" for k, v in kwargs.items() if _fails(model, tokenizer, batch, config, {k: v})
        ]
        if culprits or kwargs:
            named = ", ".join(culprits) or ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise ConfigError(
                f"generation_kwargs {named} makes generate() fail ({_brief(error)}); valid: generate() "
                "arguments this model accepts that leave it returning token ids"
            ) from error
        raise ConfigError(
            f"a one-token generate with this model and tokenizer={type(tokenizer).__name__} failed "
            f"({_brief(error)}); valid: a model with generate(), causal (GPT-2, Llama, ...) or "
            "encoder-decoder (T5, BART, ...), and its own tokenizer"
        ) from error


def _one_token(
    model: Any, tokenizer: Any, batch: list[Sample], config: PredictionsConfig, kwargs: dict
) -> None:
    generate(
        model,
        tokenizer,
        batch,
        batch_size=len(batch),
        max_new_tokens=1,
        max_prompt_tokens=config.max_prompt_tokens,
        use_chat_template=config.use_chat_template,
        generation_kwargs=kwargs,
    )


def _fails(model: Any, tokenizer: Any, batch: list[Sample], config: PredictionsConfig, kwargs: dict) -> bool:
    try:
        _one_token(model, tokenizer, batch, config, kwargs)
    except Exception:
        return True
    return False


def _brief(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 300 else text[:297] + "..."
