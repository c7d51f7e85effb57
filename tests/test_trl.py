"""Real `trl.SFTTrainer` runs on tiny local models, one per dataset shape: each round asks the model the
way SFTTrainer trained it, and stores only the answer up to the end of the turn."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from predictions import PredictionsCallback
from predictions.store.records import PageQuery
from tests import helpers_training as h

pytestmark = pytest.mark.slow

WORDS = ["abc", "bad", "cafe", "dead", "face", "jade", "hide", "gig"]
"""Eight prompts the tiny model learns to answer (reversed) within 80 steps."""


def sft_trainer(
    tmp_path, tok: Any, rows: list[dict], callbacks: list, repeats: int, **args: Any
) -> SFTTrainer:
    """SFTTrainer as a user would set it up: the rows repeated `repeats` times, one epoch, batch 8."""
    options = h.training_options(tmp_path / "out", 1, learning_rate=1e-2, max_length=48, **args)
    return SFTTrainer(
        model=h.model(tok=tok),
        args=SFTConfig(**options),
        train_dataset=Dataset.from_list(rows * repeats),
        processing_class=tok,
        callbacks=callbacks,
    )


def plain_rows() -> list[dict[str, str]]:
    return [{"prompt": f"{word}=", "completion": word[::-1]} for word in WORDS]


def conversational_rows() -> list[dict[str, list[dict[str, str]]]]:
    return [
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": row["completion"]}],
        }
        for row in plain_rows()
    ]


def stored(store, callback) -> tuple[Any, dict]:
    """The job's rows and its recorded config."""
    rows = store.predictions_page(callback.job_id, PageQuery(limit=100)).rows
    return rows, store.trends(callback.job_id).config


@pytest.mark.timeout(300)
def test_plain_prompt_completion_is_asked_raw_even_with_a_chat_template(tmp_path, sqlite_store):
    """SFTTrainer trains plain-string rows without the template: "auto" asks the same as "off"."""
    tok = h.tokenizer(chat=True)
    callbacks = {
        mode: PredictionsCallback(plain_rows(), use_chat_template=mode, max_new_tokens=6, store=sqlite_store)
        for mode in ("auto", "off", "on")
    }
    sft_trainer(tmp_path, tok, plain_rows(), list(callbacks.values()), repeats=80).train()
    auto, auto_config = stored(sqlite_store, callbacks["auto"])
    off, _ = stored(sqlite_store, callbacks["off"])
    forced, forced_config = stored(sqlite_store, callbacks["on"])
    assert auto["exact_match"].mean() >= 0.75  # the model learned the task
    assert auto["prediction"].tolist() == off["prediction"].tolist()
    assert auto["exact_match"].mean() == off["exact_match"].mean()
    assert forced["exact_match"].mean() < auto["exact_match"].mean()  # the template asks something unseen
    assert auto_config["rendering"] == "raw" and forced_config["rendering"] == "chat_template"
    assert auto_config["model_inputs"]["0"] == "abc="
    assert forced_config["model_inputs"]["0"] == "<user>abc=<eos><assistant>"


@pytest.mark.timeout(300)
def test_conversational_prompt_completion_stores_the_assistant_completion(tmp_path, sqlite_store):
    tok = h.tokenizer(chat=True)
    callback = PredictionsCallback(conversational_rows(), max_new_tokens=6, store=sqlite_store)
    sft_trainer(tmp_path, tok, conversational_rows(), [callback], repeats=4).train()
    rows, config = stored(sqlite_store, callback)
    assert len(rows) == len(WORDS)  # fewer rows than the default 16: every one is tracked
    assert rows["ground_truth"].tolist() == [word[::-1] for word in WORDS]
    assert rows["prompt"].tolist() == [f"{word}=" for word in WORDS]
    assert rows["char_error_rate"].notna().all()
    assert config["rendering"] == "chat_template"
    assert config["model_inputs"]["1"] == "<user>bad=<eos><assistant>"


@pytest.mark.timeout(300)
def test_chatml_stores_nothing_after_the_end_of_turn(tmp_path, sqlite_store):
    """`<|im_end|>` ends the turn but is not eos: generation must stop there, and the answer be cut."""
    tok = h.chatml_tokenizer()
    callback = PredictionsCallback(conversational_rows(), max_new_tokens=12, store=sqlite_store)
    trainer = sft_trainer(tmp_path, tok, conversational_rows(), [callback], repeats=80)
    trainer.train()
    rows, config = stored(sqlite_store, callback)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    raw = [continuation(trainer.model, tok, text) for text in config["model_inputs"].values()]
    assert all(end in ids for ids in raw), "the model never ended its turn: the test shows nothing"
    leaked = [tok.decode(ids[ids.index(end) + 1 :], skip_special_tokens=True) for ids in raw]
    assert any(text.strip() for text in leaked), "eos-only generation would leak nothing: no test"
    assert rows["prediction"].tolist() == [tok.decode(ids[: ids.index(end)]) for ids in raw]
    assert not any("\n" in prediction or "assistant" in prediction for prediction in rows["prediction"])
    assert rows["exact_match"].sum() >= 2  # it learned some: right answers are stored whole


def continuation(model: Any, tok: Any, text: str) -> list[int]:
    """What greedy generation stopping at eos only (the old behaviour) produces after the prompt."""
    inputs = tok(text, return_tensors="pt", add_special_tokens=False)
    model.eval()
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_token_id)
    return output[0, inputs["input_ids"].shape[1] :].tolist()
