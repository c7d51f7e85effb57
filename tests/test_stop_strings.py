"""`stop_strings` from `generation_kwargs` alone: generation stops there and the stored answer ends before
it; the job config keeps only JSON, with a short summary of anything else."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import LogitsProcessorList, Trainer

from predictions import ConfigError, PredictionsCallback, PredictionsConfig
from predictions.config import RESERVED_GENERATION_KWARGS
from predictions.demo.run import encode_pairs
from predictions.demo.tiny_model import build_tokenizer
from predictions.store.records import PageQuery
from predictions.training.generator import cut_at_string, stop_strings
from tests import helpers_training as h

WORDS = ["abc", "bad", "cafe", "dead", "face", "jade", "hide", "gig"]
STOP = "\n###"
TRAILER = STOP + "\nabc"
"""What the model learns to write after its answer: a separator and more text, as a template might."""


def stop_tokenizer() -> Any:
    return build_tokenizer(h.ALPHABET + "=\n#")


def test_the_answer_is_cut_before_the_first_stop_string():
    assert cut_at_string("cba\n###\nabc", [STOP]) == "cba"
    assert cut_at_string("cba\n##", [STOP]) == "cba\n##"  # not a stop string: kept
    assert cut_at_string("a;b|c", ["|", ";"]) == "a" and cut_at_string("abc", []) == "abc"
    model = h.model()
    assert stop_strings(model, {"stop_strings": STOP}) == [STOP]
    model.generation_config.stop_strings = ["|"]
    assert stop_strings(model, {}) == ["|"]  # the model's own generation config counts too


def test_the_job_config_is_json_with_a_summary_of_other_values():
    config = PredictionsConfig(
        generation_kwargs={
            "stop_strings": [STOP],
            "bad_words_ids": [[1, 2]],
            "logits_processor": LogitsProcessorList(),
            "epsilon_cutoff": float("nan"),
        }
    )
    recorded = config.as_dict()["generation_kwargs"]
    assert recorded == {
        "stop_strings": [STOP],
        "bad_words_ids": [[1, 2]],
        "logits_processor": "<LogitsProcessorList>",
        "epsilon_cutoff": "nan",
    }
    json.dumps(config.as_dict(), allow_nan=False)
    with pytest.raises(
        ConfigError, match=r"generation_kwargs sets tokenizer; .*passed to generate\(\) for you"
    ):
        PredictionsConfig(generation_kwargs={"stop_strings": [STOP], "tokenizer": stop_tokenizer()})


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
OTHER_VALUES = st.floats() | st.binary(max_size=4) | st.sets(st.integers(), max_size=2) | st.builds(object)


@given(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4), st.lists(OTHER_VALUES, max_size=3))
def test_any_generation_kwargs_are_recorded_as_json(json_kwargs, others):
    """JSON values are kept as given; anything else (NaN, bytes, sets, objects, nested) becomes text."""
    refused = (*RESERVED_GENERATION_KWARGS, "num_return_sequences", "temperature", "other_values")
    kwargs = {k: v for k, v in json_kwargs.items() if k not in refused}
    mixed = {**kwargs, "other_values": [[value] for value in others]}
    recorded = PredictionsConfig(generation_kwargs=mixed).as_dict()["generation_kwargs"]
    assert json.loads(json.dumps(recorded, allow_nan=False)) == recorded
    assert {k: recorded[k] for k in kwargs} == kwargs
    assert all(isinstance(item[0], str | float) for item in recorded["other_values"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_model_that_writes_past_the_stop_string_is_stored_up_to_it(tmp_path, sqlite_store):
    tok = stop_tokenizer()
    pairs = [{"prompt": f"{word}=", "response": word[::-1]} for word in WORDS]
    trained = [{**pair, "response": pair["response"] + TRAILER} for pair in pairs]
    callback = PredictionsCallback(
        pairs, max_new_tokens=12, store=sqlite_store, generation_kwargs={"stop_strings": [STOP]}
    )
    trainer = Trainer(
        model=h.model(tok=tok),
        args=h.arguments(tmp_path / "out", 1, learning_rate=1e-2),
        train_dataset=encode_pairs(trained * 80, tok, length=h.SEQ_LEN),
        processing_class=tok,
        callbacks=[callback],
    )
    trainer.train()
    rows = sqlite_store.predictions_page(callback.job_id, PageQuery(limit=100)).rows
    raw = [continuation(trainer.model, tok, prompt) for prompt in rows["prompt"]]
    assert all(STOP in text for text in raw), "the model never wrote the stop string: the test shows nothing"
    assert not rows["prediction"].str.contains("#").any()
    assert rows["prediction"].tolist() == [text[: text.index(STOP)] for text in raw]
    assert rows["exact_match"].tolist() == (rows["prediction"] == rows["ground_truth"]).astype(float).tolist()
    assert rows["exact_match"].mean() >= 0.75  # it learned: right answers are stored whole
    (job,) = sqlite_store.list_jobs()
    config = sqlite_store.trends(job.id).config
    assert config["generation_kwargs"] == {"stop_strings": [STOP]}
    assert len(json.dumps(config, allow_nan=False)) < 2000


def continuation(model: Any, tok: Any, prompt: str) -> str:
    """What greedy generation writes after the prompt with no stop string: the answer and the trailer."""
    inputs = tok(prompt, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
