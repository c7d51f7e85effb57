"""Setups beyond SFT on a bare causal model: preference (DPO-shaped) datasets, a PEFT adapter, the monitor's
`every_n_steps`, and an install without the `train` extra."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import Trainer

from predictions import PredictionsCallback, PredictionsConfig, PredictionsMonitor
from predictions.demo.run import encode_pairs
from predictions.store import SQLiteStore
from predictions.store.records import PageQuery
from predictions.training.model_info import adapter, model_name
from predictions.training.samples import select_samples
from tests import helpers_training as h

REPO = Path(__file__).resolve().parents[1]
PAIRS = h.pairs(12)


def preference_rows(conversational: bool) -> list[dict]:
    """TRL's preference shape: the prompt, the preferred answer, and a rejected one."""
    rows = [{"prompt": p["prompt"], "chosen": p["response"], "rejected": p["response"][:1]} for p in PAIRS]
    if not conversational:
        return rows
    return [
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
        }
        for row in rows
    ]


# preference datasets


@pytest.mark.parametrize("conversational", [False, True], ids=["plain", "conversational"])
def test_a_preference_dataset_is_scored_against_chosen(conversational, sqlite_store):
    rows = preference_rows(conversational)
    samples = select_samples(rows, PredictionsConfig(num_samples=4))
    assert [s.ground_truth for s in samples] == [PAIRS[s.index]["response"] for s in samples]
    assert [s.prompt for s in samples] == [PAIRS[s.index]["prompt"] for s in samples]
    tok = h.tokenizer(chat=conversational)
    model = h.model(tok=tok)
    with PredictionsMonitor(
        rows, tokenizer=tok, num_samples=4, max_new_tokens=3, store=sqlite_store
    ) as monitor:
        monitor.start(model)
        monitor.round(model, step=1, epoch=1)
    stored = sqlite_store.predictions_page(monitor.job_id, PageQuery(limit=10)).rows
    assert stored["char_error_rate"].notna().all() and stored["exact_match"].notna().all()
    assert stored["ground_truth"].tolist() == [PAIRS[i]["response"] for i in stored["sample_index"]]


def test_an_implicit_prompt_preference_dataset_is_read_as_a_chat():
    """No `prompt` field: the chosen conversation's turns before its last answer are the prompt."""
    rows = [
        {
            "chosen": [
                {"role": "user", "content": p["prompt"]},
                {"role": "assistant", "content": p["response"]},
            ],
            "rejected": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": "x"}],
        }
        for p in PAIRS
    ]
    (sample,) = select_samples(rows, PredictionsConfig(sample_indices=[3]))
    assert (sample.prompt, sample.ground_truth) == (PAIRS[3]["prompt"], PAIRS[3]["response"])
    assert sample.messages == [{"role": "user", "content": PAIRS[3]["prompt"]}]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("conversational", [False, True], ids=["plain", "conversational"])
def test_a_dpo_trainer_run_gets_scored_rounds(tmp_path, sqlite_store, conversational):
    """TRL's DPOTrainer on the rows as they are; conversational ones asked through the chat template, as
    DPOTrainer renders them."""
    from trl import DPOConfig, DPOTrainer

    tok = h.tokenizer(chat=conversational)
    rows = preference_rows(conversational)
    callback = PredictionsCallback(rows, max_new_tokens=4, store=sqlite_store)
    options = h.training_options(tmp_path / "out", 1, max_length=32, per_device_train_batch_size=4)
    DPOTrainer(
        model=h.model(tok=tok),
        ref_model=h.model(tok=tok),  # built here: TRL would load it from the hub by the model's name
        args=DPOConfig(**options),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[callback],
    ).train()
    stored = sqlite_store.predictions_page(callback.job_id, PageQuery(limit=100)).rows
    assert len(stored) == len(rows) and stored["char_error_rate"].notna().all()
    assert stored["ground_truth"].tolist() == [PAIRS[i]["response"] for i in stored["sample_index"]]
    config = sqlite_store.trends(callback.job_id).config
    assert config["rendering"] == ("chat_template" if conversational else "raw")
    index, asked = next(iter(config["model_inputs"].items()))  # the exact text the model was given
    prompt = rows[int(index)]["prompt"]
    render = tok.apply_chat_template
    assert asked == (render(prompt, add_generation_prompt=True, tokenize=False) if conversational else prompt)


# PEFT


def lora(model, rank: int = 4):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=rank, target_modules=["c_attn"], task_type="CAUSAL_LM"))


def test_the_adapter_and_its_base_model_are_named():
    base = h.model()
    base.config.name_or_path = "tiny-gpt2"
    assert adapter(base) is None and model_name(base) == "tiny-gpt2"
    adapted = lora(base, rank=8)
    expected = {"type": "LORA", "rank": 8, "name": "default", "base_model": "tiny-gpt2"}
    assert model_name(adapted) == "tiny-gpt2" and adapter(adapted) == expected
    unnamed = lora(h.model())
    assert model_name(unnamed) == "GPT2LMHeadModel" and adapter(unnamed)["base_model"] == "GPT2LMHeadModel"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_lora_run_records_its_adapter_and_the_sidebar_shows_it(tmp_path, open_app):
    db = tmp_path / "p.db"
    store = SQLiteStore(db)
    tok = h.tokenizer()
    base = h.model(tok=tok)
    base.config.name_or_path = "tiny-gpt2"
    callback = PredictionsCallback(PAIRS, num_samples=3, max_new_tokens=3, store=store)
    Trainer(
        model=lora(base),
        args=h.arguments(tmp_path / "out", 1),
        train_dataset=encode_pairs(h.pairs(16, seed=2), tok, length=h.SEQ_LEN),
        processing_class=tok,
        callbacks=[callback],
    ).train()
    (job,) = store.list_jobs()
    assert job.model == "tiny-gpt2" and job.round_count == 1
    config = store.trends(job.id).config
    assert config["adapter"] == {"type": "LORA", "rank": 4, "name": "default", "base_model": "tiny-gpt2"}
    json.dumps(config, allow_nan=False)
    store.close()
    at = open_app(db)
    captions = [caption.value.replace("\\", "") for caption in at.sidebar.caption]
    assert "Model: tiny-gpt2 · LORA adapter, rank 4" in captions


# the monitor's every_n_steps


def test_the_monitor_step_helper_honours_every_n_steps(sqlite_store):
    tok = h.tokenizer()
    model = h.model(tok=tok)
    options = {"num_samples": 2, "max_new_tokens": 2, "store": sqlite_store}
    with PredictionsMonitor(PAIRS, tokenizer=tok, every_n_steps=2, **options) as every_two:
        every_two.start(model)
        for step in range(1, 8):
            every_two.step(model, step=step, epoch=1)
        every_two.round(model, step=7, epoch=1)  # the epoch's end, called by the loop
    assert sqlite_store.rounds(every_two.job_id)["step"].tolist() == [2, 4, 6, 7]
    with PredictionsMonitor(PAIRS, tokenizer=tok, **options) as by_hand:
        by_hand.start(model)
        assert not any(by_hand.step(model, step=step, epoch=1).averages for step in range(1, 5))
    assert sqlite_store.rounds(by_hand.job_id).empty


# an install without the train extra


@pytest.mark.parametrize("missing", ["transformers", "torch", "accelerate"])
def test_importing_the_callback_without_the_train_extra_names_it(missing):
    """The module is made unimportable in a fresh interpreter, as in an install without the extra (a venv
    really without each one gives the same error): it is named before anything is imported."""
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "import predictions\n"
        "assert predictions.open_store and predictions.score\n"  # the dashboard's names still load
        "from predictions import PredictionsCallback\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "ModuleNotFoundError: PredictionsCallback needs the 'train' extra, and "
        f"{missing!r} is not installed; install it with pip install 'predictions-monitor[train]' "
        "(torch first, the build for your machine: see the README)"
    )


def test_a_train_module_missing_only_at_import_is_named_through_transformers_own_error():
    """Every module is found, yet importing fails on one (a broken or partial install): the name is read
    from the causes, as transformers wraps a missing accelerate in its own error."""
    from predictions import missing_train_module

    with pytest.raises(ModuleNotFoundError) as wrapped:
        try:
            raise ModuleNotFoundError("No module named 'accelerate.utils'", name="accelerate.utils")
        except ModuleNotFoundError as cause:
            raise ModuleNotFoundError("Could not import module 'TrainerCallback'") from cause
    assert missing_train_module(wrapped.value) == "accelerate"
    assert missing_train_module(ModuleNotFoundError("No module named 'pandas'", name="pandas")) is None
