"""User scores at the edge of floating point (1e308, 5e-324, mixed signs): every store keeps the round,
its summary holds finite averages equal to an exact recomputation (`math.fsum`), and every page renders.

A sum of finite floats can overflow where their mean cannot: SQLite's AVG became inf (its JSON then
unreadable), Postgres' sum raised in the summary trigger and refused the round."""

from __future__ import annotations

import math
import sqlite3
import sys
import uuid
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictions.scoring.metrics import score
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow
from predictions.store.sqlite_schema import schema_is_current
from tests.test_app_pages import COMPARE, PREDICTIONS, SAMPLES
from tests.test_rollouts_contract import rollout

HUGE = sys.float_info.max
PAGES = (None, SAMPLES, PREDICTIONS, COMPARE)


def scored_rows(job_id: str, values: list[list[float]]) -> list[PredictionRow]:
    """One round per list of `values`, a sample per value, each scored `big` and its half as `half`."""
    rows = []
    for step, round_values in enumerate(values, start=1):
        for i, value in enumerate(round_values):
            scores = {"big": value, "half": value / 2}
            rows.append(
                PredictionRow(
                    job_id, step, step, i, f"p{i}", "a", "a", **score("a", "a").as_dict(), scores=scores
                )
            )
    return rows


def exact_mean(values: list[float]) -> float:
    """The mean correctly rounded (`math.fsum` overflows where the sum does)."""
    return float(sum(map(Fraction, values)) / len(values))


JSON_DIGITS = 1e-14
"""SQLite's JSON keeps 15 significant digits of a user score's aggregates."""


def assert_mean(stored: float, values: list[float]) -> None:
    """Within what summing n floats in any order can differ from the exact sum (n ulps of the largest),
    and 15 significant digits."""
    mean = exact_mean(values)
    bound = len(values) * sys.float_info.epsilon * max(abs(v) for v in values) + JSON_DIGITS * abs(mean)
    assert math.isfinite(stored)
    assert abs(stored - mean) <= bound + 5e-324, (stored, mean)


def assert_summary(store, job_id: str, values: list[list[float]]) -> None:
    rounds = store.trends(job_id).rounds
    assert rounds["step"].tolist() == list(range(1, len(values) + 1))  # no round lost
    for (_, summary), round_values in zip(rounds.iterrows(), values, strict=True):
        assert_mean(summary["avg_big"], round_values)
        assert_mean(summary["avg_half"], [v / 2 for v in round_values])
        for aggregate, exact in (("min", min(round_values)), ("max", max(round_values))):
            assert math.isfinite(summary[f"{aggregate}_big"])
            assert summary[f"{aggregate}_big"] == pytest.approx(exact, rel=JSON_DIGITS, abs=5e-324)


EDGES = [
    [HUGE, HUGE, HUGE],
    [1e308, 1e308, -1e308, 5e-324],
    [-HUGE, -HUGE],
    [5e-324, 5e-324, 5e-324],
    [HUGE, -HUGE, 1.0],
]


def test_a_round_whose_sum_overflows_is_kept_with_finite_averages(store):
    store.start_job("edge", name="edge")
    store.write_predictions(scored_rows("edge", EDGES))
    assert_summary(store, "edge", EDGES)
    groups = store.group_trends("edge", "category")
    assert all(math.isfinite(v) for v in groups["avg_big"].dropna())


finite = st.floats(allow_nan=False, allow_infinity=False)
edge = st.sampled_from([HUGE, -HUGE, 1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308, 0.0])
rounds_of = st.lists(st.lists(st.one_of(finite, edge), min_size=1, max_size=6), min_size=1, max_size=3)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=rounds_of)
def test_any_finite_scores_average_exactly_in_every_store(store, values):
    job_id = f"job-{uuid.uuid4().hex[:8]}"  # the store is shared by the examples
    store.write_predictions(scored_rows(job_id, values))
    assert_summary(store, job_id, values)


def test_a_step_whose_rewards_overflow_is_kept_without_a_standard_deviation(store):
    rewards = [HUGE, HUGE, -1e308, 5e-324]
    rows = [
        rollout("rl", 1, 1, 0, i, rewards={"accuracy": value, "brevity": 1.0}, reward=value)
        for i, value in enumerate(rewards)
    ]
    store.write_rollouts(rows)
    trends = store.rollout_trends("rl")
    (step,) = trends.steps.to_dict("records")
    assert step["rollout_count"] == 4  # kept: Postgres refused the step's write before
    assert_mean(step["avg_reward"], rewards)
    assert math.isnan(step["std_reward"])  # a variance past the largest double: not a number, not shown
    accuracy = trends.rewards[trends.rewards["name"] == "accuracy"].iloc[0]
    assert_mean(accuracy["avg"], rewards)
    assert math.isnan(accuracy["std"])
    brevity = trends.rewards[trends.rewards["name"] == "brevity"].iloc[0]
    assert (brevity["avg"], brevity["std"]) == (1.0, 0.0)


def test_every_page_renders_a_job_of_overflowing_scores(open_app, tmp_path: Path):
    db = tmp_path / "predictions.db"
    store = SQLiteStore(db)
    store.start_job("edge", name="edge")
    store.write_predictions(scored_rows("edge", EDGES))
    store.close()
    for page in PAGES:
        at = open_app(db, job="edge", page=page)
        if page is None:
            shown = {metric.label: metric.value for metric in at.metric}
            assert shown["big"] == f"{exact_mean(EDGES[-1]):.3f}"
            assert shown["half"] == f"{exact_mean([v / 2 for v in EDGES[-1]]):.3f}"


def test_an_older_files_infinite_summary_is_rebuilt_on_opening(tmp_path: Path):
    db = tmp_path / "predictions.db"
    SQLiteStore(db).write_predictions(scored_rows("edge", EDGES[:1]))
    with sqlite3.connect(db) as conn:  # as a version before finite averages left it
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'training_rounds'").fetchone()[0]
        rows = conn.execute("SELECT * FROM training_rounds").fetchall()
        conn.execute("DROP TABLE training_rounds")
        conn.execute(sql[: sql.index(" --")])
        infinite = '{"big":{"avg":Inf,"min":1.0,"max":1.0,"count":3}}'
        conn.executemany(f"INSERT INTO training_rounds VALUES ({', '.join('?' * len(rows[0]))})", rows)
        conn.execute("UPDATE training_rounds SET scores = ?", (infinite,))
    store = SQLiteStore(db)
    assert_summary(store, "edge", EDGES[:1])
    store.close()
    with sqlite3.connect(db) as conn:  # rebuilt once: the file is current now, opened without writing
        assert schema_is_current(conn)


def test_an_older_files_infinite_rollout_summary_is_rebuilt_on_opening(tmp_path: Path):
    db = tmp_path / "predictions.db"
    rewards = [HUGE, HUGE, 1.0]
    rows = [rollout("rl", 1, 1, 0, i, rewards={"accuracy": v}, reward=v) for i, v in enumerate(rewards)]
    SQLiteStore(db).write_rollouts(rows)
    with sqlite3.connect(db) as conn:  # as a version before finite averages left it
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'training_rounds'").fetchone()[0]
        conn.execute("DROP TABLE training_rounds")
        conn.execute(sql[: sql.index(" --")])
        infinite = '{"accuracy":{"count":3,"avg":Inf,"var":Inf,"min":1.0,"max":1.0}}'
        conn.execute("UPDATE training_rollout_steps SET rewards = ?, avg_reward = 9e999", (infinite,))
    store = SQLiteStore(db)
    trends = store.rollout_trends("rl")
    assert_mean(trends.steps["avg_reward"].iloc[0], rewards)
    assert_mean(trends.rewards["avg"].iloc[0], rewards)
    store.close()
