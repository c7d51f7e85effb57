"""The sampler: seeded picks, format detection, every source kind, and errors that list the fields."""

from __future__ import annotations

import csv
import json

import pytest

from predictions import ConfigError, DatasetError, PredictionsConfig
from predictions.training.samples import check_source, select_samples

ROWS = [{"prompt": f"q{i}", "response": f"a{i}", "extra": i} for i in range(20)]


def test_seeded_pick_is_reproducible_sorted_and_seed_dependent():
    first = select_samples(ROWS, PredictionsConfig(num_samples=5, seed=7))
    again = select_samples(ROWS, PredictionsConfig(num_samples=5, seed=7))
    other = select_samples(ROWS, PredictionsConfig(num_samples=5, seed=8))
    indices = [s.index for s in first]
    assert indices == [s.index for s in again] == sorted(indices)
    assert indices != [s.index for s in other]
    assert all(s.prompt == f"q{s.index}" and s.ground_truth == f"a{s.index}" for s in first)


def test_explicit_indices_are_kept_in_order():
    samples = select_samples(ROWS, PredictionsConfig(sample_indices=[9, 3]))
    assert [(s.index, s.prompt) for s in samples] == [(9, "q9"), (3, "q3")]


def test_out_of_range_indices_fail():
    with pytest.raises(DatasetError, match=r"sample_indices \[20\] are out of range: the source has 20 rows"):
        select_samples(ROWS, PredictionsConfig(sample_indices=[1, 20]))


def test_too_few_rows_names_both_counts():
    with pytest.raises(DatasetError, match="num_samples=21 but the source has only 20 rows"):
        select_samples(ROWS, PredictionsConfig(num_samples=21))


@pytest.mark.parametrize("response", ["response", "completion", "answer"])
def test_ground_truth_field_is_detected(response):
    rows = [{"prompt": "p", response: "t"}]
    assert select_samples(rows, PredictionsConfig(num_samples=1))[0].ground_truth == "t"


def test_no_ground_truth_field_means_unscored_samples():
    assert select_samples([{"prompt": "p"}], PredictionsConfig(num_samples=1))[0].ground_truth is None


def test_missing_prompt_field_lists_the_fields_that_exist():
    rows = [{"question": "q", "label": "a"}]
    with pytest.raises(DatasetError, match=r"no field 'prompt'; fields: 'question', 'label'"):
        select_samples(rows, PredictionsConfig(num_samples=1))


def test_named_fields_are_used_and_checked():
    rows = [{"question": "q", "label": "a"}]
    config = PredictionsConfig(num_samples=1, prompt_field="question", response_field="label")
    assert select_samples(rows, config)[0].ground_truth == "a"
    with pytest.raises(DatasetError, match="no field 'answer_text'"):
        select_samples(
            rows, PredictionsConfig(num_samples=1, prompt_field="question", response_field="answer_text")
        )


def test_chat_messages_split_at_the_last_assistant_turn():
    turns = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "reverse abc"},
        {"role": "assistant", "content": "cba"},
    ]
    sample = select_samples([{"messages": turns}], PredictionsConfig(num_samples=1))[0]
    assert sample.ground_truth == "cba"
    assert sample.messages == turns[:3]
    assert sample.prompt == "user: hi\nassistant: hello\nuser: reverse abc"


def test_chat_without_an_assistant_turn_is_unscored():
    rows = [{"conv": [{"role": "user", "content": "hi"}]}]
    sample = select_samples(rows, PredictionsConfig(num_samples=1, messages_field="conv"))[0]
    assert (sample.prompt, sample.ground_truth) == ("hi", None)


def test_malformed_chat_turns_fail_with_the_row():
    rows = [{"messages": [{"role": "user"}]}]
    with pytest.raises(DatasetError, match="row 0: 'messages' has the turn"):
        select_samples(rows, PredictionsConfig(num_samples=1))


def test_jsonl_json_and_csv_files(tmp_path):
    rows = ROWS[:4]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "s.json").write_text(json.dumps(rows))
    with (tmp_path / "s.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = PredictionsConfig(sample_indices=[2])
    for name in ("s.jsonl", "s.json", "s.csv"):
        (sample,) = select_samples(tmp_path / name, config)
        assert (sample.index, sample.prompt, sample.ground_truth) == (2, "q2", "a2")


def test_missing_or_unreadable_files_fail_as_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        select_samples(tmp_path / "none.jsonl", PredictionsConfig(num_samples=1))
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(DatasetError, match="cannot read samples"):
        select_samples(tmp_path / "bad.jsonl", PredictionsConfig(num_samples=1))


def test_a_datasets_dataset():
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list(ROWS)
    samples = select_samples(dataset, PredictionsConfig(num_samples=3, seed=1))
    assert samples == select_samples(ROWS, PredictionsConfig(num_samples=3, seed=1))
    with pytest.raises(DatasetError, match="fields: 'prompt', 'response', 'extra'"):
        select_samples(dataset, PredictionsConfig(num_samples=1, prompt_field="text"))


def test_source_kinds_are_checked_at_construction(tmp_path):
    check_source(ROWS)
    check_source(tmp_path / "later.jsonl")
    with pytest.raises(ConfigError, match="unknown suffix"):
        check_source("data.txt")
