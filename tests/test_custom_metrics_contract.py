"""User scorers' values and metadata groups in every store: stored per row, aggregated in SQL per round,
and equal to what pandas computes from the rows themselves."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from predictions.errors import ConfigError
from predictions.scoring.metrics import METRICS, score
from predictions.store.frames import GROUP_COLUMNS, TREND_COLUMNS
from predictions.store.records import PageQuery, PredictionRow

CATEGORIES = ("math", "code", "chat")


def custom_rows(job_id: str, rounds: int = 3, samples: int = 12, seed: int = 1) -> list[PredictionRow]:
    """Rows with two user scorers (one with gaps, as a failing scorer leaves) and a category each."""
    rng = random.Random(seed)
    rows = []
    for step in range(1, rounds + 1):
        for i in range(samples):
            prediction, truth = rng.choice(["4", "5", "four"]), "4"
            quality = None if i == 3 else rng.random()
            rows.append(
                PredictionRow(
                    job_id, step, step * 10, i, f"prompt {i}", prediction, truth,
                    **score(prediction, truth).as_dict(),
                    scores={"answer": float(prediction == truth), "quality": quality},
                    metadata={"category": CATEGORIES[i % 3]} if i != 11 else None,
                )
            )  # fmt: skip
    return rows


def rows_frame(store, job_id: str) -> pd.DataFrame:
    """Every row of the job as the store gives it back, page by page."""
    page = store.predictions_page(job_id, PageQuery(sort_by="step", limit=1000))
    assert page.total_count == len(page.rows)
    return page.rows


@pytest.fixture
def custom_store(store):
    store.start_job("job", config={"scorers": {"quality": {"title": "Quality", "higher_is_better": False}}})
    store.write_predictions(custom_rows("job"))
    store.write_predictions(custom_rows("other", rounds=1, seed=2))
    return store


def test_each_rows_user_scores_are_stored_as_written(custom_store):
    rows = rows_frame(custom_store, "job")
    written = {(r.step, r.sample_index): r for r in custom_rows("job")}
    assert len(rows) == len(written) == 36
    for row in rows.itertuples():
        expected = written[(row.step, row.sample_index)]
        assert row.answer == expected.scores["answer"]
        quality = expected.scores["quality"]
        assert math.isnan(row.quality) if quality is None else row.quality == pytest.approx(quality)
        assert row.metadata == expected.metadata


def test_per_round_aggregates_equal_pandas_on_the_rows(custom_store):
    rows = rows_frame(custom_store, "job")
    expected = rows.groupby("step").agg(
        avg_answer=("answer", "mean"), min_answer=("answer", "min"), max_answer=("answer", "max"),
        avg_quality=("quality", "mean"), min_quality=("quality", "min"), max_quality=("quality", "max"),
        avg_char_error_rate=("char_error_rate", "mean"),
    )  # fmt: skip
    trends = custom_store.trends("job")
    rounds = trends.rounds.set_index("step")
    assert list(trends.rounds.columns[: len(TREND_COLUMNS)]) == list(TREND_COLUMNS)
    pd.testing.assert_frame_equal(rounds[expected.columns], expected, check_exact=False, rtol=1e-9)


def test_the_jobs_metric_list_comes_from_the_store(custom_store):
    metrics = custom_store.trends("job").metrics
    assert [m.name for m in metrics] == [*METRICS, "answer", "quality"]
    answer, quality = metrics[-2:]
    assert (answer.title, answer.lower_is_better, answer.builtin) == ("answer", False, False)
    assert (quality.title, quality.lower_is_better) == ("Quality", True)
    assert [m.name for m in custom_store.trends("no-such-job").metrics] == list(METRICS)


def test_pages_sort_and_filter_by_a_user_score(custom_store):
    page = custom_store.predictions_page("job", PageQuery(sort_by="quality", descending=True, limit=1000))
    values = page.rows["quality"]
    assert values.iloc[:-3].is_monotonic_decreasing and values.iloc[-3:].isna().all()  # nulls last
    kept = custom_store.predictions_page("job", PageQuery(metric_range=("quality", 0.25, 0.75), limit=1000))
    rows = rows_frame(custom_store, "job")
    assert kept.total_count == int(rows["quality"].between(0.25, 0.75).sum())
    assert kept.rows["quality"].between(0.25, 0.75).all()
    wrong = custom_store.predictions_page("job", PageQuery(metric_range=("answer", None, 0.0), limit=1000))
    assert wrong.total_count == int((rows["answer"] == 0).sum())


def test_the_heatmap_reads_a_user_score(custom_store):
    matrix = custom_store.sample_matrix("job", "answer")
    rows = rows_frame(custom_store, "job")
    expected = rows.set_index(["sample_index", "step"])["answer"].sort_index()
    assert matrix.set_index(["sample_index", "step"])["value"].sort_index().tolist() == expected.tolist()


def test_group_trends_equal_a_pandas_groupby(custom_store):
    rows = rows_frame(custom_store, "job")
    rows["group"] = rows["metadata"].map(lambda metadata: (metadata or {}).get("category"))
    expected = (
        rows.groupby(["step", "group"], dropna=False)
        .agg(sample_count=("sample_index", "size"), **{f"avg_{m}": (m, "mean") for m in (*METRICS, "answer")},
             avg_quality=("quality", "mean"))
        .reset_index()
    )  # fmt: skip
    grouped = custom_store.group_trends("job", "category")
    assert list(grouped.columns) == [*GROUP_COLUMNS, "avg_answer", "avg_quality"]
    assert set(grouped["group"].dropna()) == set(CATEGORIES) and grouped["group"].isna().sum() == 3
    key = ["step", "group"]
    actual = grouped.drop(columns="epoch").fillna({"group": "~"}).sort_values(key, ignore_index=True)
    expected = expected.fillna({"group": "~"}).sort_values(key, ignore_index=True)[actual.columns]
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=1e-9, check_dtype=False)


def test_group_trends_of_an_unknown_field_put_every_row_in_one_group(custom_store):
    grouped = custom_store.group_trends("job", "nothing")
    assert grouped["group"].isna().all() and grouped["sample_count"].tolist() == [12, 12, 12]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.sample_matrix("job", "no such"), "metric='no such'"),
        (lambda s: s.predictions_page("job", PageQuery(sort_by="x; drop table")), "sort_by="),
        (
            lambda s: s.predictions_page("job", PageQuery(metric_range=("prompt", 0, 1))),
            "metric_range='prompt'",
        ),
        (lambda s: s.group_trends("job", "a.b"), "field='a.b'"),
    ],
)
def test_names_that_are_not_identifiers_never_reach_sql(custom_store, call, message):
    with pytest.raises(ConfigError, match=message):
        call(custom_store)
