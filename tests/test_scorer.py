"""The scorer against hand-computed values for every rule in README.md ("Metrics"), and its properties."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import threading
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from predictions.scoring import metrics
from predictions.scoring.metrics import METRICS, Scores, score, score_batch, word_overlap

texts = st.text(max_size=40)


def test_none_truth_scores_nothing():
    assert score("anything", None) == Scores(None, None, None, None)


def test_identical_answers_are_perfect():
    assert score("Paris", "Paris") == Scores(1.0, 0.0, 1.0, 1.0)


def test_whitespace_is_stripped_before_every_metric():
    assert score("  Paris \n", "\tParis") == Scores(1.0, 0.0, 1.0, 1.0)


def test_exact_match_is_case_sensitive_but_word_overlap_is_not():
    scores = score("paris", "Paris")
    assert scores.exact_match == 0.0
    assert scores.char_error_rate == pytest.approx(1 / 5)
    assert scores.word_overlap == 1.0


def test_char_error_rate_is_edit_distance_over_truth_length():
    # kitten -> sitting: 3 edits over 7 characters of truth
    assert score("kitten", "sitting").char_error_rate == pytest.approx(3 / 7)


def test_char_error_rate_is_clipped_to_one():
    # 9 edits over 2 characters would be 4.5
    scores = score("completely wrong", "ok")
    assert scores.char_error_rate == 1.0
    assert scores.length_ratio == pytest.approx(16 / 2)


def test_empty_prediction():
    assert score("   ", "abcd") == Scores(0.0, 1.0, 0.0, 0.0)


def test_empty_truth_with_an_answer():
    assert score("abc", "  ") == Scores(0.0, 1.0, None, 0.0)


def test_both_empty():
    assert score("", " ") == Scores(1.0, 0.0, None, 1.0)


def test_unicode_counts_characters_not_bytes():
    scores = score("naïve café", "naive café")
    assert scores.char_error_rate == pytest.approx(1 / 10)
    assert scores.length_ratio == 1.0
    assert score("日本語", "日本").length_ratio == pytest.approx(3 / 2)


def test_word_overlap_counts_repeated_words_as_a_multiset():
    # prediction "the the the" vs truth "the cat": shared = min(3, 1) = 1 -> F1 = 2*1 / (3 + 2)
    assert word_overlap("the the the", "the cat") == pytest.approx(2 / 5)


def test_word_overlap_is_token_f1():
    # shared {a, b}: precision 2/3, recall 2/4 -> F1 = 2 * 2 / (3 + 4)
    assert word_overlap("a b c", "A B d e") == pytest.approx(4 / 7)


def test_word_overlap_with_nothing_shared_is_zero():
    assert word_overlap("x y", "a b") == 0.0


def test_char_error_rate_of_empty_truth():
    assert score("", "").char_error_rate == 0.0
    assert score("x", "").char_error_rate == 1.0


@given(st.lists(st.tuples(texts, st.none() | texts), max_size=20))
def test_score_batch_agrees_with_score(pairs):
    predictions = [p for p, _ in pairs]
    truths = [t for _, t in pairs]
    assert score_batch(predictions, truths) == [score(p, t) for p, t in pairs]


def test_score_batch_keeps_order_and_checks_lengths():
    assert score_batch(["a", "b"], ["a", None]) == [score("a", "a"), score("b", None)]
    with pytest.raises(ValueError, match="2 predictions but 1 ground truths"):
        score_batch(["a", "b"], ["a"])


def test_as_dict_uses_the_table_column_names():
    assert tuple(score("a", "b").as_dict()) == METRICS


@given(texts, texts)
def test_metrics_stay_in_their_bounds(prediction, truth):
    scores = score(prediction, truth)
    assert scores.exact_match in (0.0, 1.0)
    assert 0.0 <= scores.char_error_rate <= 1.0
    assert 0.0 <= scores.word_overlap <= 1.0
    assert scores.length_ratio is None or scores.length_ratio >= 0.0


@given(texts)
def test_an_answer_equal_to_its_truth_is_perfect(text):
    scores = score(text, text)
    assert (scores.exact_match, scores.char_error_rate, scores.word_overlap) == (1.0, 0.0, 1.0)


@given(texts, texts)
def test_word_overlap_is_symmetric(a, b):
    assert math.isclose(word_overlap(a, b), word_overlap(b, a))


words = st.lists(st.sampled_from(["a", "A", "b", "the", "café", "x"]), max_size=12).map(" ".join)


@given(words, words)
def test_word_overlap_matches_the_counter_definition(a, b):
    a_words, b_words = a.lower().split(), b.lower().split()
    shared = sum((Counter(a_words) & Counter(b_words)).values())
    expected = 1.0 if not a_words and not b_words else 2 * shared / (len(a_words) + len(b_words))
    assert math.isclose(word_overlap(a, b), expected)


@given(texts, texts)
def test_exact_match_means_zero_error(prediction, truth):
    scores = score(prediction, truth)
    assert (scores.exact_match == 1.0) == (scores.char_error_rate == 0.0)


def test_scorer_and_store_do_not_import_torch():
    code = (
        "import predictions, predictions.store, predictions.scoring.metrics, sys; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# edit distances: score_hint and the shared distance thread change the speed, never the result

near_misses = st.tuples(
    st.text(alphabet="abcde fgh", min_size=1, max_size=300),
    st.lists(st.tuples(st.integers(0, 299), st.sampled_from(["sub", "del", "ins"]), st.sampled_from("axz"))),
)


def edited(text: str, edits: list[tuple[int, str, str]]) -> str:
    """`text` with each edit applied at its position (modulo the current length)."""
    chars = list(text)
    for position, kind, char in edits:
        at = position % max(len(chars), 1)
        if kind == "sub" and chars:
            chars[at] = char
        elif kind == "del" and chars:
            del chars[at]
        else:
            chars.insert(at, char)
    return "".join(chars)


@given(st.lists(near_misses | st.tuples(texts, texts), max_size=12), st.sampled_from([4, 16, 64]))
def test_hinted_distances_equal_the_plain_distance(drawn, window):
    """Small windows and a small threshold put every branch (hinted, unhinted, far) on short texts."""
    pairs = [(edited(a, b), a) if isinstance(b, list) else (a, b) for a, b in drawn]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "HINT_FROM", window * 2)
        patch.setattr(metrics, "PROBE", window)
        assert metrics.edit_distances(pairs) == [Levenshtein.distance(p, t) for p, t in pairs]


def test_long_near_misses_get_a_hint_and_the_plain_distance():
    rng = random.Random(3)
    truths = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz  ", k=6000)) for _ in range(4)]
    predictions = [edited(t, [(rng.randrange(len(t)), "sub", "q") for _ in range(30)]) for t in truths[:2]]
    predictions += [truths[0], truths[3][:2000] + truths[2][2000:]]
    pairs = list(zip(predictions, truths, strict=True))
    hints = metrics._hints(pairs)
    assert hints[0] is not None and hints[1] is not None  # near misses: banded
    assert hints[2] is None and hints[3] is None  # unrelated, or right only at the start: plain
    assert metrics.edit_distances(pairs) == [Levenshtein.distance(p, t) for p, t in pairs]


def test_large_batches_share_one_distance_thread():
    text = "the quick brown fox jumps over the lazy dog " * 300
    batch = [text[::-1]] * 3, [text] * 3
    assert score_batch(*batch) == [score(text[::-1], text)] * 3
    before = {thread.ident for thread in threading.enumerate() if thread.name.startswith("edit-distances")}
    for _ in range(5):
        score_batch(*batch)
    after = {thread.ident for thread in threading.enumerate() if thread.name.startswith("edit-distances")}
    assert len(after) == 1 and before <= after
