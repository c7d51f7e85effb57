"""The Postgres round summary (`training_rounds`): always equal to aggregating the rows themselves,
whoever writes, per owner, and filtered by row-level security like the rows."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from devtools.local_postgres import apply_migrations, replay_migrations
from predictions.store.frames import TREND_COLUMNS
from predictions.store.records import PredictionRow
from tests.pg_fixtures import USER_A, USER_B, acting_as, user_store
from tests.test_migrations import SEED_TABLE, fetch

# The trends as computed straight from the rows, to compare the summary with.
DIRECT_TRENDS = """
select step, count(*), count(char_error_rate), avg(exact_match), avg(char_error_rate),
       avg(length_ratio), avg(word_overlap), min(char_error_rate), max(char_error_rate)
from training_predictions where job_id = %s group by step order by step
"""


SUMMARY_NAMES = ("step", "sample_count", "scored_count", *TREND_COLUMNS[4:])


def summary_trends(conninfo: str, job_id: str) -> list[tuple]:
    with psycopg.connect(conninfo) as conn:
        (result,) = conn.execute("select predictions_trends(%s)", (job_id,)).fetchone()
    return [tuple(round_[name] for name in SUMMARY_NAMES) for round_ in result["rounds"]]


def assert_summary_matches_rows(conninfo: str, job_id: str) -> None:
    direct = [
        tuple(pytest.approx(v) if isinstance(v, float) else v for v in row)
        for row in fetch(conninfo, DIRECT_TRENDS, (job_id,))
    ]
    assert summary_trends(conninfo, job_id) == direct


def insert(conn, job_id, step, index, cer, user=USER_A):
    conn.execute(
        "insert into training_predictions (job_id, user_id, epoch, step, sample_index, prompt, prediction,"
        " ground_truth, exact_match, char_error_rate, length_ratio, word_overlap)"
        " values (%s, %s, 1, %s, %s, 'p', 'x', 't', %s, %s, 1.0, 0.5)"
        " on conflict (user_id, job_id, step, sample_index)"
        " do update set char_error_rate = excluded.char_error_rate",
        (job_id, user, step, index, float(cer == 0), cer),
    )


def test_inserts_upserts_updates_and_deletes_by_hand_keep_the_summary_right(migrated_database):
    with psycopg.connect(migrated_database) as conn:
        for step in (1, 2):
            for index in range(4):
                insert(conn, "job", step, index, index / 4)
        insert(conn, "job", 1, 0, 0.75)  # an upsert that changes a row
        conn.execute(
            "update training_predictions set char_error_rate = null where step = 2 and sample_index = 3"
        )
        conn.execute("delete from training_predictions where step = 2 and sample_index = 0")
    assert_summary_matches_rows(migrated_database, "job")
    with psycopg.connect(migrated_database) as conn:
        conn.execute("delete from training_predictions where step = 1")
    assert [row[0] for row in summary_trends(migrated_database, "job")] == [2]
    with psycopg.connect(migrated_database) as conn:
        conn.execute("truncate training_predictions")
    assert fetch(migrated_database, "select count(*) from training_rounds") == [(0,)]


def test_migrating_over_old_rows_builds_their_summary(database):
    with psycopg.connect(database) as conn:
        conn.execute(SEED_TABLE)
        for step in (5, 10):
            for index in range(3):
                conn.execute(
                    "insert into training_predictions (id, job_id, user_id, epoch, step, sample_index,"
                    " prompt, prediction, created_at) values (%s, 'seed', %s, 1, %s, %s, 'p', 'x', now())",
                    (str(uuid.uuid4()), USER_A, step, index),
                )
    apply_migrations(database)
    assert summary_trends(database, "seed") == [
        (5, 3, 0, None, None, None, None, None, None),
        (10, 3, 0, None, None, None, None, None, None),
    ]
    replay_migrations(database)  # a second run changes nothing
    assert fetch(database, "select count(*) from training_rounds") == [(2,)]


def test_users_sharing_a_job_id_each_see_only_their_own_rounds(migrated_database):
    with psycopg.connect(migrated_database) as conn:
        insert(conn, "shared", 1, 0, 0.0, USER_A)
        insert(conn, "shared", 1, 1, 1.0, USER_B)
    for user, cer in ((USER_A, 0.0), (USER_B, 1.0)):
        with acting_as(migrated_database, "authenticated", user) as conn:
            (result,) = conn.execute("select predictions_trends('shared')").fetchone()
            assert [(r["sample_count"], r["avg_char_error_rate"]) for r in result["rounds"]] == [(1, cer)]
            assert conn.execute("select count(*) from training_rounds").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("insert into training_rounds select * from training_rounds")
    with acting_as(migrated_database, "anon") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select count(*) from training_rounds")


def test_the_store_reads_trends_from_the_summary_through_the_api(postgrest, supabase_database):
    store = user_store(postgrest)
    rows = [
        PredictionRow("api", 1, step, i, "p", "x", "x", 1.0, 0.0, 1.0, 1.0)
        for step in (1, 2)
        for i in range(3)
    ]
    store.write_predictions(rows)
    store.write_predictions(rows[:2])  # a replay leaves the rounds as they were
    assert store.trends("api").rounds["sample_count"].tolist() == [3, 3]
    assert fetch(supabase_database, "select count(*) from training_rounds where job_id = 'api'") == [(2,)]
