"""The ready-made scorers of predictions.scorers, on the answers they are meant for."""

from __future__ import annotations

import pytest

from predictions.scorers import ChoiceMatch, JsonValid, NumericAnswer, RegexMatch, last_number


@pytest.mark.parametrize(
    ("text", "number"),
    [("so the answer is 42.", 42.0), ("#### 1,234", 1234.0), ("-3.5 then 7", 7.0), ("none", None)],
)
def test_last_number(text, number):
    assert last_number(text) == number


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        ("3 + 4 = 7. The answer is 7", "#### 7", 1.0),
        ("The answer is 7.0", "7", 1.0),
        ("The answer is 8", "7", 0.0),
        ("I do not know", "7", 0.0),
        ("7", "no number here", None),
        ("7", None, None),
    ],
)
def test_numeric_answer(prediction, truth, expected):
    assert NumericAnswer()(prediction, truth, {}) == expected


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [('{"a": 1}', 1.0), ('```json\n{"a": 1}\n```', 1.0), ("{'a': 1}", 0.0), ("", 0.0)],
)
def test_json_valid(prediction, expected):
    assert JsonValid()(prediction, None, {}) == expected


def test_json_valid_with_a_schema():
    scorer = JsonValid({"type": "object", "required": ["name"], "properties": {"age": {"type": "integer"}}})
    assert scorer('{"name": "Ada", "age": 36}', None, {}) == 1.0
    assert scorer('{"name": "Ada", "age": "old"}', None, {}) == 0.0
    assert scorer('{"age": 36}', None, {}) == 0.0


def test_regex_match_searches_or_matches_whole():
    assert RegexMatch(r"\d{4}-\d{2}-\d{2}")("born 1815-12-10", None, {}) == 1.0
    assert RegexMatch(r"\d{4}-\d{2}-\d{2}", fullmatch=True)("born 1815-12-10", None, {}) == 0.0
    assert RegexMatch(r"yes|no", fullmatch=True)(" yes \n", None, {}) == 1.0


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        ("The answer is B.", "B", 1.0),
        ("the answer is b", "B", 1.0),
        ("Both A and B", "B", 0.0),  # the first choice named counts
        ("Absolutely", "A", 0.0),  # whole words only
        ("no idea", "C", 0.0),
        ("A", None, None),
    ],
)
def test_choice_match(prediction, truth, expected):
    assert ChoiceMatch(["A", "B", "C"])(prediction, truth, {}) == expected


def test_choice_match_needs_choices_and_keeps_case_when_asked():
    with pytest.raises(ValueError, match="choices='AB'"):
        ChoiceMatch("AB")
    assert ChoiceMatch(["Yes", "No"], case_sensitive=True)("yes", "Yes", {}) == 0.0


def test_every_scorer_describes_itself_for_the_dashboard():
    for scorer in (NumericAnswer(), JsonValid(), RegexMatch("x"), ChoiceMatch(["a"])):
        assert scorer.title and scorer.higher_is_better is True and scorer.bounds == (0.0, 1.0)
        assert type(scorer).__name__ in repr(scorer)
