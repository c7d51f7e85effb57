"""User scores in Postgres: the summary follows writes by hand, per owner under row-level security, the
SQL functions refuse bad names themselves, and the row readers return columns added later."""

from __future__ import annotations

import json

import psycopg
import pytest

from devtools.local_postgres import replay_migrations
from tests.pg_fixtures import USER_A, USER_B, acting_as
from tests.test_migrations import fetch


def insert(conn, step, index, scores, user=USER_A, metadata=None):
    conn.execute(
        "insert into training_predictions (job_id, user_id, epoch, step, sample_index, prompt, prediction,"
        " scores, metadata) values ('job', %s, 1, %s, %s, 'p', 'x', %s, %s)",
        (user, step, index, json.dumps(scores), json.dumps(metadata) if metadata else None),
    )


def custom_trends(conninfo, user):
    with acting_as(conninfo, "authenticated", user) as conn:
        (result,) = conn.execute("select predictions_trends('job')").fetchone()
    return {r["step"]: r["scores"] for r in result["rounds"]}


def test_the_summary_of_user_scores_follows_updates_and_deletes_per_owner(migrated_database):
    with psycopg.connect(migrated_database) as conn:
        for index, value in enumerate([0.0, 0.5, 1.0, None]):
            insert(conn, 1, index, {"q": value, "text": "not a number"})
        insert(conn, 1, 0, {"q": 10.0}, user=USER_B)  # another owner's job of the same id
        conn.execute("update training_predictions set scores = '{\"q\": 2.0}' where sample_index = 1")
        conn.execute("delete from training_predictions where sample_index = 2 and user_id = %s", (USER_A,))
    expected_q = {"avg": 1.0, "min": 0.0, "max": 2.0}  # 0.0 and 2.0; the null is not counted
    assert custom_trends(migrated_database, USER_A) == {
        1: {"q": expected_q, "text": {"avg": None, "min": None, "max": None}}
    }
    assert custom_trends(migrated_database, USER_B) == {1: {"q": {"avg": 10.0, "min": 10.0, "max": 10.0}}}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("predictions_sample_matrix('job', 'x''); drop table training_jobs; --')", "metric="),
        ("predictions_page('job', p_sort_by => 'prompt')", "sort_by='prompt'"),
        ("predictions_page('job', p_metric => 'a b')", "metric_range='a b'"),
        ("predictions_group_trends('job', 'a'' or 1=1')", "field="),
    ],
)
def test_the_functions_refuse_names_that_are_not_metrics_or_fields(migrated_database, call, message):
    with (
        acting_as(migrated_database, "authenticated", USER_A) as conn,
        pytest.raises(psycopg.Error) as raised,
    ):
        conn.execute(f"select {call}")
    assert raised.value.sqlstate == "22023" and message in str(raised.value)


def test_a_column_added_later_reaches_the_row_readers(migrated_database):
    with psycopg.connect(migrated_database) as conn:
        conn.execute("alter table training_predictions add column bleu double precision")
        insert(conn, 1, 0, {"q": 1.0}, metadata={"category": "math"})
        conn.execute("update training_predictions set bleu = 0.25")
    with acting_as(migrated_database, "authenticated", USER_A) as conn:
        (history,) = conn.execute("select predictions_sample_history('job', 0)").fetchone()
        (page,) = conn.execute("select predictions_page('job')").fetchone()
    for row in (history[0], page["rows"][0]):
        assert (row["bleu"], row["scores"], row["metadata"]) == (0.25, {"q": 1.0}, {"category": "math"})
        assert "user_id" not in row and "id" not in row


def test_rows_with_scores_from_before_the_migration_get_summarised(migrated_database):
    """A database that already had the scores column (written between two migrations) is summarised."""
    with psycopg.connect(migrated_database) as conn:
        conn.execute("alter table training_predictions disable trigger training_rounds_on_insert")
        insert(conn, 1, 0, {"q": 0.5})
        conn.execute("alter table training_predictions enable trigger training_rounds_on_insert")
    assert fetch(migrated_database, "select scores from training_rounds") == []
    replay_migrations(migrated_database)
    assert fetch(migrated_database, "select scores from training_rounds") == [
        ({"q": {"sum": 0.5, "count": 1, "min": 0.5, "max": 0.5}},)
    ]
