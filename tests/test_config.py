"""PredictionsConfig: defaults are valid; a bad value fails naming the option, the value and what is valid."""

from __future__ import annotations

import json

import pytest

from predictions import ConfigError, PredictionsConfig


def test_defaults_are_valid_and_serializable():
    config = PredictionsConfig()
    assert config.num_samples is None and config.use_chat_template == "auto"  # 16, or every row
    assert config.every_n_steps is None and config.stop_after_regressions is None
    assert json.loads(json.dumps(config.as_dict()))["max_new_tokens"] == 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_return_sequences": 2}, r"num_return_sequences=2 is not supported: one answer is stored"),
        ({"temperature": -1.0}, r"temperature=-1.0 is invalid; valid: a number > 0"),
        ({"temperature": "hot"}, r"temperature='hot' is invalid"),
    ],
)
def test_generation_values_that_fail_every_round_fail_at_construction(kwargs, message):
    with pytest.raises(ConfigError, match=rf"^generation_kwargs {message}"):
        PredictionsConfig(generation_kwargs=kwargs)


@pytest.mark.parametrize(
    ("option", "value", "valid"),
    [
        ("num_samples", 0, "None or an integer >= 1"),
        ("num_samples", True, "None or an integer >= 1"),
        ("max_new_tokens", -3, "an integer >= 1"),
        ("max_prompt_tokens", 2.5, "an integer >= 1"),
        ("batch_size", "8", "an integer >= 1"),
        ("every_n_steps", 0, "None or an integer >= 1"),
        ("stop_after_regressions", 0, "None or an integer >= 1"),
        ("seed", "42", "an integer"),
        ("job_id", "  ", "a non-empty string"),
        ("prompt_field", 3, "a non-empty string"),
        ("sample_indices", [], "distinct integers >= 0"),
        ("sample_indices", [1, 1], "distinct integers >= 0"),
        ("sample_indices", [-1], "distinct integers >= 0"),
        ("sample_indices", "12", "distinct integers >= 0"),
        ("use_chat_template", "yes", "'auto', 'on', 'off'"),
        ("generation_kwargs", ["do_sample"], "a dict"),
        ("store", object(), "a Store with write_predictions"),
    ],
)
def test_invalid_value_names_option_value_and_valid(option, value, valid):
    with pytest.raises(ConfigError) as caught:
        PredictionsConfig(**{option: value})
    message = str(caught.value)
    assert message.startswith(f"{option}=") or option in message
    assert repr(value) in message or str(value) in message
    assert valid in message


def test_error_message_example_from_the_brief():
    with pytest.raises(ConfigError, match=r"^num_samples=0 is invalid; valid: None or an integer >= 1$"):
        PredictionsConfig(num_samples=0)


def test_generation_kwargs_may_not_set_reserved_arguments():
    with pytest.raises(ConfigError, match="max_new_tokens"):
        PredictionsConfig(generation_kwargs={"max_new_tokens": 5})
    assert PredictionsConfig(generation_kwargs={"num_beams": 2}).generation_kwargs == {"num_beams": 2}


def test_unknown_option_lists_close_matches():
    with pytest.raises(ConfigError, match=r"'num_sample' is not an option; did you mean num_samples"):
        PredictionsConfig.from_options(num_sample=3)


def test_unknown_option_without_close_match_lists_all_options():
    with pytest.raises(ConfigError, match="valid: num_samples, seed"):
        PredictionsConfig.from_options(banana=1)


def test_chat_and_prompt_fields_cannot_be_combined():
    with pytest.raises(ConfigError, match="messages_field='conversation' cannot be combined"):
        PredictionsConfig(messages_field="conversation", prompt_field="question")


def test_booleans_mean_on_and_off_for_the_chat_template():
    assert PredictionsConfig(use_chat_template=True).use_chat_template == "on"
    assert PredictionsConfig(use_chat_template=False).use_chat_template == "off"


def test_sample_indices_are_kept_as_a_tuple(sqlite_store):
    config = PredictionsConfig(num_samples=16, sample_indices=[4, 2, 9], store=sqlite_store)
    assert config.sample_indices == (4, 2, 9)
    assert "store" not in config.as_dict()


def test_callback_rejects_a_typo_at_construction():
    from predictions import PredictionsCallback

    with pytest.raises(ConfigError, match="did you mean num_samples"):
        PredictionsCallback([{"prompt": "a", "response": "b"}], num_sample=3)


@pytest.mark.parametrize("source", [42, b"bytes", "samples.parquet"])
def test_callback_rejects_a_source_of_the_wrong_kind(source):
    from predictions import PredictionsCallback

    with pytest.raises(ConfigError, match="samples="):
        PredictionsCallback(source)


def test_every_option_is_documented_in_the_docstring():
    from dataclasses import fields

    undocumented = [
        f.name for f in fields(PredictionsConfig) if f"    {f.name}:" not in PredictionsConfig.__doc__
    ]
    assert undocumented == []
