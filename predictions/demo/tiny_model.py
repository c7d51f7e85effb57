"""Tiny language models and a character-level tokenizer, built locally with nothing downloaded.

The demo, the tests and the benchmarks all train from scratch on the CPU, so they need a model of a
few hundred thousand parameters and a tokenizer whose vocabulary is the task's alphabet.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

DEFAULT_ALPHABET = string.ascii_lowercase + string.digits + " =?.,:-"
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
ROLE_TOKENS = ("<system>", "<user>", "<assistant>")

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<' + message['role'] + '>' + message['content'] + '<eos>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<assistant>' }}{% endif %}"
)
"""Role tokens around each turn; the generation prompt opens an assistant turn."""


def build_tokenizer(
    alphabet: str = DEFAULT_ALPHABET, *, chat_template: bool = False, pad_token: bool = True
) -> PreTrainedTokenizerFast:
    """One token per character of `alphabet`, plus special and role tokens; no special tokens added.

    `pad_token=False` leaves the pad token unset, as many released tokenizers do, so the generator's
    fall back to eos can be exercised.
    """
    specials = [*SPECIAL_TOKENS.values(), *ROLE_TOKENS]
    vocab = {token: i for i, token in enumerate([*specials, *dict.fromkeys(alphabet)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokens = (
        dict(SPECIAL_TOKENS) if pad_token else {k: v for k, v in SPECIAL_TOKENS.items() if k != "pad_token"}
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, additional_special_tokens=list(ROLE_TOKENS), **tokens
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    kind: str = "gpt2",
    tokenizer: PreTrainedTokenizerFast | None = None,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 64,
    seed: int = 0,
) -> PreTrainedModel:
    """A freshly initialised GPT-2 or Llama (causal), or T5 or BART (encoder-decoder), seeded.

    Sized for the tokenizer's vocabulary; the encoder-decoders start decoding at the pad token (T5)
    or at eos (BART), as their released checkpoints do, and have no dropout so they learn in a few
    hundred steps.
    """
    import torch

    tokenizer = tokenizer or build_tokenizer()
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(seed)
    if kind == "gpt2":
        config = GPT2Config(
            n_embd=hidden_size, n_layer=layers, n_head=heads, n_positions=max_positions, **ids
        )
        return GPT2LMHeadModel(config)
    if kind == "llama":
        config = LlamaConfig(
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max_positions,
            **ids,
        )
        return LlamaForCausalLM(config)
    if kind in ("t5", "bart"):
        return _encoder_decoder(kind, ids, hidden_size, layers, heads, max_positions)
    raise ValueError(f"kind={kind!r} is not a tiny model; valid: 'gpt2', 'llama', 't5', 'bart'")


def _encoder_decoder(
    kind: str, ids: dict[str, int], hidden_size: int, layers: int, heads: int, max_positions: int
) -> PreTrainedModel:
    if kind == "t5":
        config = T5Config(
            d_model=hidden_size,
            d_kv=hidden_size // heads,
            d_ff=hidden_size * 2,
            num_layers=layers,
            num_heads=heads,
            dropout_rate=0.0,
            decoder_start_token_id=ids["pad_token_id"],
            **ids,
        )
        return T5ForConditionalGeneration(config)
    config = BartConfig(
        d_model=hidden_size,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=hidden_size * 2,
        decoder_ffn_dim=hidden_size * 2,
        max_position_embeddings=max_positions,
        dropout=0.0,
        decoder_start_token_id=ids["eos_token_id"],
        forced_eos_token_id=None,
        **ids,
    )
    return BartForConditionalGeneration(config)
