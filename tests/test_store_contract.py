"""The Store contract: every backend in `conftest.BACKENDS` must pass each of these the same way."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hyp

from predictions.dashboard import analysis
from predictions.errors import ConfigError, StoreError
from predictions.scoring.metrics import score
from predictions.store.frames import MATRIX_COLUMNS, PREDICTION_COLUMNS, SAMPLE_SUMMARY_COLUMNS, TREND_COLUMNS
from predictions.store.records import PageQuery, PredictionRow


def round_rows(job_id, step, pairs, *, epoch=1, start=0):
    """Scored rows of one round: pairs of (prediction, ground truth or None), sample indices from start."""
    return [
        PredictionRow(
            job_id=job_id,
            epoch=epoch,
            step=step,
            sample_index=start + i,
            prompt=f"prompt {start + i}",
            prediction=prediction,
            ground_truth=truth,
            **score(prediction, truth).as_dict(),
        )
        for i, (prediction, truth) in enumerate(pairs)
    ]


def test_writing_the_same_rows_twice_keeps_one_copy(store):
    rows = round_rows("job", 10, [("a", "a"), ("b", "x")])
    store.write_predictions(rows)
    store.write_predictions(rows)
    page = store.predictions_page("job")
    assert page.total_count == 2
    assert page.rows["sample_index"].tolist() == [0, 1]


def test_a_rewrite_updates_the_row_in_place(store):
    store.write_predictions(round_rows("job", 10, [("wrong", "right")]))
    store.write_predictions(round_rows("job", 10, [("right", "right")]))
    rows = store.sample_history("job", 0)
    assert len(rows) == 1
    assert rows.loc[0, "prediction"] == "right"
    assert rows.loc[0, "exact_match"] == 1.0


def test_trends_average_each_round_in_step_order(store):
    store.write_predictions(round_rows("job", 20, [("abcd", "abcd"), ("abcx", "abcd")], epoch=2))
    store.write_predictions(round_rows("job", 10, [("xxxx", "abcd"), ("abxx", "abcd")], epoch=1))
    trends = store.trends("job")
    assert list(trends.rounds.columns) == list(TREND_COLUMNS)
    first, second = trends.rounds.to_dict("records")
    assert (first["epoch"], first["step"], first["sample_count"], first["scored_count"]) == (1, 10, 2, 2)
    assert first["avg_char_error_rate"] == pytest.approx((1.0 + 0.5) / 2)
    assert (first["min_char_error_rate"], first["max_char_error_rate"]) == (0.5, 1.0)
    assert second["avg_exact_match"] == pytest.approx(0.5)
    assert second["avg_char_error_rate"] == pytest.approx(0.125)
    assert second["avg_word_overlap"] == pytest.approx(0.5)
    assert second["avg_length_ratio"] == pytest.approx(1.0)
    assert trends.overall_improvement == pytest.approx((0.75 - 0.125) / 0.75 * 100)


def test_a_job_without_ground_truth_has_null_scores_and_averages(store):
    store.write_predictions(round_rows("job", 1, [("a", None), ("b", None)]))
    store.write_predictions(round_rows("job", 2, [("c", None), ("d", None)]))
    trends = store.trends("job")
    assert trends.rounds["sample_count"].tolist() == [2, 2]
    assert trends.rounds["scored_count"].tolist() == [0, 0]
    for column in TREND_COLUMNS[4:]:
        assert trends.rounds[column].isna().all(), column
    assert trends.overall_improvement is None
    history = store.sample_history("job", 0)
    assert history["ground_truth"].isna().all() and history["char_error_rate"].isna().all()


def test_mixed_rows_average_only_the_scored_ones(store):
    store.write_predictions(round_rows("job", 1, [("abcd", "abcd"), ("zz", None), ("abxx", "abcd")]))
    (trend,) = store.trends("job").rounds.to_dict("records")
    assert (trend["sample_count"], trend["scored_count"]) == (3, 2)
    assert trend["avg_char_error_rate"] == pytest.approx(0.25)
    assert trend["avg_exact_match"] == pytest.approx(0.5)


def test_overall_improvement_skips_unscored_rounds_and_zero_start(store):
    store.write_predictions(round_rows("perfect", 1, [("a", "a")]))
    store.write_predictions(round_rows("perfect", 2, [("b", "a")]))
    assert store.trends("perfect").overall_improvement is None
    store.write_predictions(round_rows("one", 1, [("ab", "aa")]))
    assert store.trends("one").overall_improvement is None
    assert store.trends("missing").rounds.empty


def test_more_than_1500_rows_read_back_in_full_through_pages(store):
    for step in range(1, 5):
        pairs = [(f"p{step}-{i}", f"t{i}") for i in range(400)]
        store.write_predictions(round_rows("big", step, pairs, epoch=step))
    seen, offset = [], 0
    while True:
        page = store.predictions_page("big", PageQuery(sort_by="step", limit=500, offset=offset))
        assert page.total_count == 1600
        if page.rows.empty:
            break
        seen.extend(zip(page.rows["step"], page.rows["sample_index"], strict=True))
        offset += len(page.rows)
    assert len(seen) == len(set(seen)) == 1600
    assert store.trends("big").rounds["sample_count"].tolist() == [400] * 4
    assert len(store.sample_matrix("big")) == 1600


def test_two_jobs_are_never_mixed(store):
    store.write_predictions(round_rows("a", 1, [("x", "x")] * 3))
    store.write_predictions(round_rows("b", 1, [("y", "z")]))
    assert store.trends("a").rounds["sample_count"].tolist() == [3]
    assert store.trends("b").rounds["avg_exact_match"].tolist() == [0.0]
    assert store.predictions_page("b").total_count == 1
    assert set(store.predictions_page("a").rows["job_id"]) == {"a"}
    assert store.sample_history("b", 0)["prediction"].tolist() == ["y"]
    assert len(store.sample_matrix("a")) == 3


def test_rounds_and_sample_history_are_ordered_by_step(store):
    for step in (30, 10, 20):
        store.write_predictions(round_rows("job", step, [(f"s{step}", "t")], epoch=step // 10))
    rounds = store.rounds("job")
    assert rounds["step"].tolist() == [10, 20, 30]
    assert rounds["epoch"].tolist() == [1, 2, 3]
    assert rounds["sample_count"].tolist() == [1, 1, 1]
    history = store.sample_history("job", 0)
    assert list(history.columns) == list(PREDICTION_COLUMNS)
    assert history["prediction"].tolist() == ["s10", "s20", "s30"]


def test_sample_matrix_holds_one_metric_per_sample_and_round(store):
    store.write_predictions(round_rows("job", 1, [("ab", "ab"), ("xx", "ab")]))
    store.write_predictions(round_rows("job", 2, [("ab", "ab"), ("ax", "ab")], epoch=2))
    matrix = store.sample_matrix("job", "char_error_rate")
    assert list(matrix.columns) == list(MATRIX_COLUMNS)
    cells = {(r.sample_index, r.step): r.value for r in matrix.itertuples()}
    assert cells == {(0, 1): 0.0, (1, 1): 1.0, (0, 2): 0.0, (1, 2): 0.5}
    with pytest.raises(ConfigError, match="metric='prompt'"):
        store.sample_matrix("job", "prompt")


def test_page_filters_by_round_and_wrong_answers(store):
    store.write_predictions(round_rows("job", 1, [("a", "a"), ("b", "a"), ("c", None)]))
    store.write_predictions(round_rows("job", 2, [("a", "a"), ("a", "a"), ("c", None)], epoch=2))
    assert store.predictions_page("job", PageQuery(step=2)).total_count == 3
    wrong = store.predictions_page("job", PageQuery(wrong_only=True))
    assert wrong.total_count == 1
    assert wrong.rows[["step", "sample_index"]].values.tolist() == [[1, 1]]
    assert store.predictions_page("job", PageQuery(step=2, wrong_only=True)).total_count == 0


def test_page_sorts_by_a_metric_with_nulls_last(store):
    store.write_predictions(
        round_rows("job", 1, [("abxx", "abcd"), ("c", None), ("abcd", "abcd"), ("x", "abcd")])
    )
    ascending = store.predictions_page("job", PageQuery(sort_by="char_error_rate"))
    assert ascending.rows["sample_index"].tolist() == [2, 0, 3, 1]
    descending = store.predictions_page("job", PageQuery(sort_by="char_error_rate", descending=True))
    assert descending.rows["sample_index"].tolist() == [3, 0, 2, 1]
    second_page = store.predictions_page("job", PageQuery(sort_by="char_error_rate", limit=2, offset=2))
    assert second_page.rows["sample_index"].tolist() == [3, 1]
    assert second_page.total_count == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sort_by": "prompt; DROP TABLE x"}, "sort_by="),
        ({"limit": 0}, "limit=0"),
        ({"limit": 5000}, "limit=5000"),
        ({"offset": -1}, "offset=-1"),
    ],
)
def test_a_page_query_rejects_invalid_arguments_before_any_store_sees_them(options, message):
    with pytest.raises(ConfigError, match=message):
        PageQuery(**options)


def test_equal_page_queries_are_one_cache_key():
    """The dashboard caches pages by query: a step from a frame (numpy) or a range given as a list
    must key the same page as plain values."""
    plain = PageQuery(step=3, metric_range=("char_error_rate", 0, None), limit=25)
    from_frame = PageQuery(step=np.int64(3), metric_range=["char_error_rate", 0.0, None], limit=np.int32(25))
    assert plain == from_frame and hash(plain) == hash(from_frame)
    assert type(from_frame.step) is int and from_frame.metric_range == ("char_error_rate", 0.0, None)
    assert plain.page(3) == PageQuery(step=3, metric_range=("char_error_rate", 0, None), limit=25, offset=50)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plain.offset = 10
    with pytest.raises(ConfigError, match="limit=True"):
        PageQuery(limit=True)
    with pytest.raises(ConfigError, match="bound 'low' is not a number"):
        PageQuery(metric_range=("char_error_rate", "low", None))


def test_jobs_are_listed_most_recent_first_with_their_latest_round(store):
    store.start_job("old", name="Old run", model="gpt2", config={"num_samples": 2})
    store.write_predictions(round_rows("old", 5, [("a", "a")], epoch=1))
    store.finish_job("old")
    time.sleep(0.01)
    store.write_predictions(round_rows("orphan", 7, [("a", "a")], epoch=3))
    time.sleep(0.01)
    store.start_job("new", name="New run")
    jobs = {job.id: job for job in store.list_jobs()}
    assert [job.id for job in store.list_jobs()] == ["new", "orphan", "old"]
    assert (jobs["old"].status, jobs["old"].name, jobs["old"].model) == ("finished", "Old run", "gpt2")
    assert store.trends("old").config == {"num_samples": 2}  # the light list carries no config
    assert jobs["old"].finished_at is not None
    assert (jobs["old"].latest_step, jobs["old"].round_count) == (5, 1)
    assert (jobs["orphan"].status, jobs["orphan"].latest_epoch, jobs["orphan"].latest_step) == (
        "unknown",
        3,
        7,
    )
    assert (jobs["new"].status, jobs["new"].round_count, jobs["new"].latest_step) == ("running", 0, None)
    assert jobs["new"].label.startswith("●") and not jobs["old"].label.startswith("●")


def test_a_jobs_last_activity_moves_with_its_rounds(store):
    store.start_job("job")
    registered = datetime.fromisoformat(store.list_jobs()[0].last_active)
    time.sleep(0.01)
    store.write_predictions(round_rows("job", 1, [("a", "a")]))
    time.sleep(0.01)
    store.write_predictions(round_rows("orphan", 1, [("a", "b")]))
    jobs = {job.id: datetime.fromisoformat(job.last_active) for job in store.list_jobs()}
    assert registered < jobs["job"] < jobs["orphan"] <= datetime.now(UTC)
    assert list(jobs) == ["orphan", "job"]


def test_restarting_a_job_keeps_its_first_start(store):
    store.start_job("job", name="first")
    started = store.list_jobs()[0].started_at
    store.finish_job("job", status="failed")
    assert store.list_jobs()[0].status == "failed"
    store.start_job("job")
    (job,) = store.list_jobs()
    assert (job.status, job.name, job.started_at, job.finished_at) == ("running", "first", started, None)
    with pytest.raises(ConfigError, match="status='done'"):
        store.finish_job("job", status="done")


def test_text_is_stored_verbatim(store):
    job_id = 'run\'; DROP TABLE training_predictions; -- "quoted" %s ?'
    odd = "<script>alert('x')</script>\n日本語 \\ \x01 emoji 🙂"
    store.start_job(job_id, name=odd)
    store.write_predictions(round_rows(job_id, 1, [(odd, odd)]))
    (job,) = store.list_jobs()
    assert (job.id, job.name) == (job_id, odd)
    row = store.sample_history(job_id, 0).iloc[0]
    assert (row["job_id"], row["prediction"], row["ground_truth"]) == (job_id, odd, odd)


def test_a_deleted_job_is_gone_with_its_rows_and_rounds(store):
    for job_id in ("keep", "junk"):
        store.start_job(job_id)
        store.write_predictions(round_rows(job_id, 1, [("a", "a"), ("b", "a")]))
    store.write_predictions(round_rows("orphan", 1, [("a", "a")]))
    store.delete_job("junk")
    store.delete_job("orphan")
    assert [job.id for job in store.list_jobs()] == ["keep"]
    assert store.predictions_page("junk").total_count == 0
    assert store.trends("junk").rounds.empty and store.rounds("junk").empty
    assert store.predictions_page("keep").total_count == 2
    with pytest.raises(StoreError, match="no job 'junk'"):
        store.delete_job("junk")


def test_the_jobs_version_moves_with_every_change_the_job_list_shows(store):
    """What the dashboard polls instead of the list: equal while nothing changed, different after a start,
    a new round, a finish and a delete."""
    versions = [store.jobs_version()]

    def changed() -> bool:
        versions.append(store.jobs_version())
        return versions[-1] != versions[-2]

    assert not changed()
    store.start_job("run")
    assert changed()
    time.sleep(0.01)
    store.write_predictions(round_rows("run", 1, [("a", "a")]))
    assert changed() and not changed()
    time.sleep(0.01)
    store.write_predictions(round_rows("run", 2, [("a", "a")]))
    assert changed()
    time.sleep(0.01)
    store.finish_job("run")
    assert changed()
    store.delete_job("run")
    assert changed() and not changed()


def test_rows_after_pages_through_a_job_by_its_key(store):
    store.write_predictions([r for step in (2, 1) for r in round_rows("job", step, [("a", "a")] * 3)])
    store.write_predictions(round_rows("other", 1, [("a", "a")]))
    first = store.rows_after("job", limit=4)
    assert list(zip(first["step"], first["sample_index"], strict=True)) == [(1, 0), (1, 1), (1, 2), (2, 0)]
    rest = store.rows_after("job", (2, 0), limit=4)
    assert list(zip(rest["step"], rest["sample_index"], strict=True)) == [(2, 1), (2, 2)]
    assert store.rows_after("job", (2, 2)).empty
    with pytest.raises(ConfigError, match="limit=0"):
        store.rows_after("job", limit=0)


def test_the_list_reads_the_most_recent_jobs_a_search_or_one_job(store):
    for i in range(5):
        store.start_job(
            f"run-{i}", name=f"Run {'Alpha' if i % 2 else 'beta'} {i}", model=f"org/model-{i % 3}"
        )
        time.sleep(0.005)
    store.write_predictions(round_rows("rows-only", 3, [("a", "a")], epoch=2))
    everything = [job.id for job in store.list_jobs()]
    assert everything == ["rows-only", "run-4", "run-3", "run-2", "run-1", "run-0"]
    assert [job.id for job in store.list_jobs(limit=2)] == everything[:2]
    assert [job.id for job in store.list_jobs(search="ALPHA")] == ["run-3", "run-1"]  # name, any case
    assert [job.id for job in store.list_jobs(search="model-2")] == ["run-2"]  # model
    assert [job.id for job in store.list_jobs(search="only")] == ["rows-only"]  # id
    assert [job.id for job in store.list_jobs(search="run-", limit=1)] == ["run-4"]
    assert store.list_jobs(search="%") == [] and store.list_jobs(search="no such") == []
    assert store.find_job("run-0") == store.list_jobs()[-1]
    assert store.find_job("rows-only").latest_epoch == 2 and store.find_job("run") is None
    with pytest.raises(ConfigError, match="limit=0"):
        store.list_jobs(limit=0)


JOB_IDS = ("a", "b", "c")
job_operations = hyp.lists(
    hyp.one_of(
        hyp.tuples(
            hyp.just("write"),
            hyp.sampled_from(JOB_IDS),
            hyp.lists(
                hyp.tuples(hyp.integers(1, 5), hyp.integers(0, 2), hyp.integers(1, 3)), min_size=1, max_size=6
            ),
        ),
        hyp.tuples(hyp.just("start"), hyp.sampled_from(JOB_IDS)),
        hyp.tuples(hyp.just("finish"), hyp.sampled_from(JOB_IDS), hyp.sampled_from(("finished", "failed"))),
        hyp.tuples(hyp.just("delete"), hyp.sampled_from(JOB_IDS)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=job_operations)
def test_the_job_summary_equals_a_fresh_aggregate_after_any_writes(store, operations):
    """The list reads a job-level summary kept by every write; after batches that add, rewrite and
    delete rows and start, finish and delete jobs, it holds what aggregating the rows and jobs gives."""
    prefix = f"{uuid.uuid4().hex[:8]}-"  # each example its own jobs: the store lives across examples
    rows: dict[str, dict[tuple[int, int], int]] = {}  # job -> (step, sample) -> epoch
    status: dict[str, str] = {}
    for operation, job, *more in operations:
        job_id = prefix + job
        if operation == "write":
            batch = [
                PredictionRow(job_id, epoch, step, sample, "p", "a", "a") for step, sample, epoch in more[0]
            ]
            store.write_predictions(batch)
            rows.setdefault(job, {}).update({(r.step, r.sample_index): r.epoch for r in batch})
        elif operation == "start":
            store.start_job(job_id)
            status[job] = "running"
        elif operation == "finish":
            store.finish_job(job_id, status=more[0])
            status[job] = more[0]
        elif job in rows or job in status:
            store.delete_job(job_id)
            rows.pop(job, None), status.pop(job, None)
        else:
            with pytest.raises(StoreError):
                store.delete_job(job_id)
    expected = {}
    for job in {*rows, *status}:
        kept = rows.get(job, {})
        rounds = {step for step, _ in kept}
        epochs = {step: max(e for (s, _), e in kept.items() if s == step) for step in rounds}
        latest = (max(epochs.values()), max(rounds)) if rounds else (None, None)
        expected[prefix + job] = (status.get(job, "unknown"), *latest, len(rounds))
    listed = store.list_jobs(search=prefix)
    assert {j.id: (j.status, j.latest_epoch, j.latest_step, j.round_count) for j in listed} == expected
    assert len(listed) == len(expected)
    moments = [datetime.fromisoformat(job.last_active) for job in listed]
    assert moments == sorted(moments, reverse=True)
    for job in JOB_IDS:
        found = store.find_job(prefix + job)
        assert (found is None) == (prefix + job not in expected)
        assert found is None or found in listed


def test_a_page_of_the_matrix_holds_only_its_samples_and_rounds(store):
    for step in (1, 2, 3):
        store.write_predictions(
            round_rows("job", step, [("ab", "ab"), ("xx", "ab"), ("ax", "ab")], epoch=step)
        )
    whole = store.sample_matrix("job")
    page = store.sample_matrix("job", samples=[2, 0], steps=[3, 1])
    expected = whole[whole["sample_index"].isin([0, 2]) & whole["step"].isin([1, 3])].reset_index(drop=True)
    pd.testing.assert_frame_equal(page, expected)
    assert store.sample_matrix("job", samples=[]).empty and len(store.sample_matrix("job", steps=[2])) == 3


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=hyp.dictionaries(
        hyp.tuples(hyp.integers(0, 4), hyp.integers(1, 6)),
        hyp.one_of(hyp.none(), hyp.just(0.0), hyp.floats(0, 1)),
        min_size=1,
        max_size=20,
    )
)
def test_the_sample_summary_equals_one_computed_from_every_value(store, cells):
    """Per sample: first, latest and lowest value, lowest before the latest, last step at 0; for a
    built-in metric and a user scorer, unscored samples included, rounds written in any order."""
    job_id = uuid.uuid4().hex[:8]
    store.write_predictions(
        [
            PredictionRow(
                job_id, 1, step, sample, "p", "a", "a", char_error_rate=value, scores={"judge": value}
            )
            for (sample, step), value in cells.items()
        ]
    )
    for metric in ("char_error_rate", "judge"):
        summary = store.sample_summary(job_id, metric)
        assert list(summary.columns) == list(SAMPLE_SUMMARY_COLUMNS)
        pd.testing.assert_frame_equal(summary, analysis.matrix_summary(store.sample_matrix(job_id, metric)))
    assert store.sample_summary("no such job").empty
