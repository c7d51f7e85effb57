"""User scorers: checked at construction, run per sample with faults contained, stored with the rows."""

from __future__ import annotations

import logging

import pytest
from transformers import TrainerControl

from predictions import ConfigError, PredictionsCallback, PredictionsConfig
from predictions.scorers import ChoiceMatch, NumericAnswer
from predictions.scoring.sample import Sample
from predictions.scoring.user_scorers import as_score, describe, run_scorers
from predictions.store.records import PageQuery
from tests import helpers_training as h
from tests.test_callback import at, begin


def length(prediction, ground_truth, sample):
    return len(prediction)


@pytest.mark.parametrize(
    ("scorers", "message"),
    [
        ([length], "scorers=.* valid: a dict"),
        ({"char_error_rate": length}, "name 'char_error_rate'"),
        ({"prompt": length}, "name 'prompt'"),
        ({"text_replacements": length}, "name 'text_replacements'"),
        ({"reward": length}, "name 'reward'"),
        ({"2nd": length}, "name '2nd'"),
        ({"has space": length}, "name 'has space'"),
        ({"ok": "not callable"}, r"scorers\['ok'\]='not callable' is not callable"),
    ],
)
def test_bad_scorers_fail_at_construction_naming_the_option(scorers, message):
    with pytest.raises(ConfigError, match=message):
        PredictionsConfig(scorers=scorers)


def test_every_column_of_every_frame_is_a_reserved_name():
    import predictions.store.frames as frames
    from predictions.scoring.names import is_custom_name

    columns = {c for name in dir(frames) if name.endswith("_COLUMNS") for c in getattr(frames, name)}
    assert [c for c in columns if is_custom_name(c)] == []  # a scorer of that name would shadow it


@pytest.mark.parametrize("fields", ["category", ["a", "a"], ["bad-name"], []])
def test_bad_metadata_fields_fail_at_construction(fields):
    with pytest.raises(ConfigError, match="metadata_fields="):
        PredictionsConfig(metadata_fields=fields)


def test_the_job_config_describes_each_scorer_for_the_dashboard():
    config = PredictionsConfig(scorers={"length": length, "answer": NumericAnswer()})
    assert config.as_dict()["scorers"] == {
        "length": {"title": "length", "higher_is_better": True, "bounds": [None, None]},
        "answer": {"title": "Numeric answer", "higher_is_better": True, "bounds": [0.0, 1.0]},
    }
    assert describe({}) == {}


def test_a_scorer_that_raises_on_one_sample_leaves_none_and_warns_once(caplog):
    samples = [Sample(i, f"p{i}", "4", record={"prompt": f"p{i}", "n": i}) for i in range(4)]

    def fragile(prediction, ground_truth, sample):
        if sample["n"] in (1, 2):
            raise ValueError(f"cannot score sample {sample['n']}")
        return prediction == ground_truth

    with caplog.at_level(logging.WARNING, logger="predictions.scoring.user_scorers"):
        values = run_scorers({"fragile": fragile, "answer": NumericAnswer()}, samples, ["4", "x", "4", "5"])
    assert values == [
        {"fragile": 1.0, "answer": 1.0},
        {"fragile": None, "answer": 0.0},
        {"fragile": None, "answer": 1.0},
        {"fragile": 0.0, "answer": 0.0},
    ]
    (warning,) = caplog.records
    assert "'fragile' failed on 2 of 4 samples" in warning.getMessage()
    assert "cannot score sample 1" in warning.getMessage()


def test_a_scorer_gets_the_whole_row_and_returns_a_number_bool_or_none():
    seen = []
    sample = Sample(0, "p", None, record={"prompt": "p", "category": "math"})
    run_scorers({"spy": lambda p, t, s: seen.append((p, t, s))}, [sample], ["answer"])
    assert seen == [("answer", None, {"prompt": "p", "category": "math"})]
    assert (as_score(True), as_score(3), as_score(None), as_score(float("nan"))) == (1.0, 3.0, None, None)
    with pytest.raises(TypeError, match="returned 'yes'"):
        as_score("yes")


def test_no_scorers_give_no_scores():
    assert run_scorers({}, [Sample(0, "p", "t")], ["a"]) == [None]


def test_a_round_stores_user_scores_and_metadata_even_when_a_scorer_raises(tmp_path, sqlite_store):
    rows = [{**pair, "category": "even" if i % 2 == 0 else "odd"} for i, pair in enumerate(h.pairs(6))]

    def broken_on_odd(prediction, ground_truth, sample):
        if sample["category"] == "odd":
            raise RuntimeError("odd")
        return 0.5

    callback = PredictionsCallback(
        rows,
        num_samples=6,
        max_new_tokens=3,
        store=sqlite_store,
        scorers={"half": broken_on_odd, "label": ChoiceMatch(["a", "b"])},
        metadata_fields=["category"],
    )
    args, state, model, _ = begin(callback, tmp_path, run_name="custom")
    control = TrainerControl()
    callback.on_epoch_end(args, at(state, 3, 1.0), control, model=model)
    callback.on_train_end(args, state, control, model=model)
    history = sqlite_store.predictions_page(callback.job_id, PageQuery(limit=10)).rows
    assert len(history) == 6
    categories = history["metadata"].map(lambda metadata: metadata["category"])
    assert history.loc[categories == "even", "half"].tolist() == [0.5] * 3
    assert history.loc[categories == "odd", "half"].isna().all()  # None stored for the failed calls
    assert set(history["label"].dropna()) <= {0.0, 1.0}
    trends = sqlite_store.trends(callback.job_id)
    assert [m.name for m in trends.metrics][-2:] == ["half", "label"]
    assert trends.metrics[-1].title == "Choice match"
    assert trends.group_fields == ("category",)
    assert trends.rounds["avg_half"].tolist() == [0.5]
