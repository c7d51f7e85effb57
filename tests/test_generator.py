"""The generator on a real tiny model: batching is correct, and model and tokenizer are left as found."""

from __future__ import annotations

import pytest
import torch

from predictions.scoring.sample import Sample
from predictions.training.generator import (
    CHAT_TEMPLATE,
    RAW,
    cut_at_stop,
    end_of_turn_id,
    generate,
    prompt_texts,
    rendering,
    stop_token_ids,
    unwrap,
)
from tests import helpers_training as h

SAMPLES = [Sample(i, p["prompt"], p["response"]) for i, p in enumerate(h.pairs(5))]


def test_a_batch_gives_the_same_answers_as_one_prompt_at_a_time():
    """Left padding: a short prompt padded in a batch ends where generation starts."""
    model, tok = h.model(), h.tokenizer()
    batched = generate(model, tok, SAMPLES, batch_size=5, max_new_tokens=6)
    single = [generate(model, tok, [s], batch_size=1, max_new_tokens=6)[0] for s in SAMPLES]
    assert batched == single
    assert len(batched) == 5 and all(isinstance(a, str) for a in batched)
    assert not any(s.prompt in a for s, a in zip(SAMPLES, batched, strict=True))  # prompt tokens stripped


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_model_and_tokenizer_state_is_restored(kind):
    model, tok = h.model(kind), h.tokenizer()
    model.train()
    model.config.use_cache = False
    model.activation_checkpointing_enable()
    tok.padding_side, tok.truncation_side = "right", "right"
    generate(model, tok, SAMPLES[:3], batch_size=2, max_new_tokens=3)
    assert (tok.padding_side, tok.truncation_side) == ("right", "right")
    assert model.training and model.config.use_cache is False
    assert model.is_activation_checkpointing
    model.eval()
    generate(model, tok, SAMPLES[:1], max_new_tokens=2)
    assert not model.training


def test_pad_token_falls_back_to_eos_and_is_unset_again():
    tok = h.build_tokenizer(h.ALPHABET + h.PROMPT_SUFFIX, pad_token=False)
    model = h.build_tiny_model("gpt2", tok, hidden_size=32, layers=1, heads=2)
    answers = generate(model, tok, SAMPLES[:3], batch_size=3, max_new_tokens=3)
    assert len(answers) == 3 and tok.pad_token is None


def test_long_prompts_are_cut_to_their_last_tokens():
    """A prompt longer than the model's positions still generates: only its end is kept."""
    model, tok = h.model(), h.tokenizer()
    long = Sample(0, "abcdefghij" * 20 + "=", "x")
    cut = Sample(1, ("abcdefghij" * 20 + "=")[-20:], "x")
    assert generate(model, tok, [long], max_prompt_tokens=20, max_new_tokens=4) == generate(
        model, tok, [cut], max_prompt_tokens=20, max_new_tokens=4
    )


def test_chat_template_with_generation_prompt_is_used_when_present():
    tok = h.tokenizer(chat=True)
    turns = [{"role": "user", "content": "abc="}]
    sample = Sample(0, "abc=", "cba", turns)
    assert prompt_texts([sample], tok, chat=True) == ["<user>abc=<eos><assistant>"]
    assert prompt_texts([sample], tok, chat=False) == ["abc="]
    answers = generate(h.model(tok=tok), tok, [sample], max_new_tokens=3, use_chat_template="auto")
    assert len(answers) == 1 and "<" not in answers[0]  # role and special tokens skipped


def test_greedy_is_deterministic_and_generation_kwargs_are_passed():
    model, tok = h.model(), h.tokenizer()
    assert generate(model, tok, SAMPLES[:2], max_new_tokens=4) == generate(
        model, tok, SAMPLES[:2], max_new_tokens=4
    )
    shorter = generate(model, tok, SAMPLES[:2], max_new_tokens=6, generation_kwargs={"min_new_tokens": 6})
    assert all(len(a) == 6 for a in shorter)  # one character a token, no eos allowed before 6


def test_wrapped_models_are_unwrapped():
    model = h.model()
    compiled = torch.compile(model)  # compilation is lazy: nothing is compiled here
    assert unwrap(compiled) is model
    assert unwrap(torch.nn.DataParallel(model)) is model
    assert len(generate(compiled, h.tokenizer(), SAMPLES[:1], max_new_tokens=2)) == 1


def test_rendering_follows_trl_under_auto_and_the_override_otherwise():
    plain, chat = SAMPLES[:1], [Sample(0, "abc=", "cba", [{"role": "user", "content": "abc="}])]
    templated, bare = h.tokenizer(chat=True), h.tokenizer()
    assert rendering(plain, templated, "auto") == RAW  # SFTTrainer feeds plain strings as they are
    assert rendering(chat, templated, "auto") == CHAT_TEMPLATE
    assert rendering(chat, bare, "auto") == RAW  # no template: the turns as text
    assert rendering(plain, templated, "on") == CHAT_TEMPLATE and rendering(chat, templated, "off") == RAW


def test_every_end_of_turn_token_stops_generation():
    tok = h.chatml_tokenizer()
    model = h.model(tok=tok)
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids("j"), tok.eos_token_id]
    stops = tok.convert_ids_to_tokens(stop_token_ids(model, tok))
    assert stops == ["<eos>", "j", "<|im_end|>"]  # eos, the generation config's, the template's end of turn
    assert end_of_turn_id(h.tokenizer(chat=True)) == h.tokenizer().eos_token_id
    assert end_of_turn_id(h.tokenizer()) is None
    assert cut_at_stop([5, 6, 2, 7], [2]) == [5, 6] and cut_at_stop([5, 6], [2]) == [5, 6]
