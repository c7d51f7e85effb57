"""The migrations on a real PostgreSQL: an empty database, a second run, and the seed's old table."""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from tests.pg_fixtures import USER_A, apply_migrations, migration_files

DASHBOARD_FUNCTIONS = {
    "predictions_list_jobs",
    "predictions_trends",
    "predictions_rounds",
    "predictions_sample_history",
    "predictions_sample_matrix",
    "predictions_page",
}

# The seed plan's table, as the seed project created it: no scores, no natural key, no defaults.
SEED_TABLE = """
CREATE TABLE training_predictions (
  id UUID PRIMARY KEY,
  job_id TEXT NOT NULL,
  user_id UUID NOT NULL,
  epoch INTEGER NOT NULL,
  step INTEGER NOT NULL,
  sample_index INTEGER NOT NULL,
  prompt TEXT NOT NULL,
  ground_truth TEXT,
  prediction TEXT NOT NULL,
  created_at TIMESTAMPTZ
)
"""

INSERT_NEW = (
    "insert into training_predictions (job_id, user_id, epoch, step, sample_index, prompt, prediction)"
)
"""An insert as the new writers make it: neither id nor created_at."""


def fetch(conninfo: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(query, params or None).fetchall()


def schema_snapshot(conninfo: str) -> dict[str, list[tuple]]:
    """Everything the migrations define, to compare one run with two."""
    return {
        "columns": fetch(
            conninfo,
            "select table_name, column_name, data_type, is_nullable, column_default"
            " from information_schema.columns where table_schema = 'public' order by 1, 2",
        ),
        "indexes": fetch(
            conninfo, "select indexname, indexdef from pg_indexes where schemaname = 'public' order by 1"
        ),
        "policies": fetch(
            conninfo, "select tablename, policyname, cmd, roles::text from pg_policies order by 1, 2"
        ),
        "functions": fetch(
            conninfo,
            "select p.oid::regprocedure::text from pg_proc as p"
            " where p.pronamespace = 'public'::regnamespace order by 1",
        ),
        "triggers": fetch(conninfo, "select tgname from pg_trigger where not tgisinternal order by 1"),
    }


def test_migration_files_follow_the_supabase_cli_naming():
    names = [path.name for path in migration_files()]
    assert len(names) >= 4
    assert all(re.fullmatch(r"\d{14}_[a-z0-9_]+\.sql", name) for name in names), names
    assert len({name[:14] for name in names}) == len(names), "timestamps must be unique"


def test_an_empty_database_gets_the_tables_keys_and_indexes(database):
    apply_migrations(database)
    columns = {(t, c): (d, n) for t, c, d, n, _ in schema_snapshot(database)["columns"]}
    for metric in ("exact_match", "char_error_rate", "length_ratio", "word_overlap"):
        assert columns["training_predictions", metric] == ("double precision", "YES")
    assert columns["training_predictions", "user_id"] == ("uuid", "NO")
    assert columns["training_jobs", "config"] == ("jsonb", "YES")
    assert columns["training_jobs", "started_at"] == ("timestamp with time zone", "NO")
    indexes = dict(fetch(database, "select indexname, indexdef from pg_indexes where schemaname = 'public'"))
    assert "UNIQUE INDEX training_predictions_natural_key" in indexes["training_predictions_natural_key"]
    assert indexes["training_predictions_natural_key"].endswith("(job_id, step, sample_index)")
    assert indexes["idx_training_predictions_job_epoch"].endswith("(job_id, epoch)")
    assert indexes["idx_training_predictions_job_step"].endswith("(job_id, step)")
    assert "training_predictions_duplicates" not in {t for t, _ in columns}


def test_row_level_security_is_on_and_every_policy_is_for_authenticated_only(database):
    apply_migrations(database)
    enabled = fetch(
        database,
        "select relname, relrowsecurity from pg_class"
        " where relname in ('training_predictions', 'training_jobs', 'training_rounds') order by 1",
    )
    assert enabled == [("training_jobs", True), ("training_predictions", True), ("training_rounds", True)]
    policies = fetch(database, "select tablename, cmd, roles::text from pg_policies order by 1, 2")
    # the round summary is written by its trigger alone: users may only read their own rounds
    assert {(table, cmd) for table, cmd, _ in policies} == {
        (table, cmd)
        for table in ("training_jobs", "training_predictions")
        for cmd in ("SELECT", "INSERT", "UPDATE", "DELETE")
    } | {("training_rounds", "SELECT")}
    assert {roles for _, _, roles in policies} == {"{authenticated}"}


def test_every_dashboard_function_exists_runs_as_the_caller_and_is_closed_to_anon(database):
    apply_migrations(database)
    rows = fetch(
        database,
        "select proname, prosecdef, provolatile, prorettype::regtype::text,"
        " has_function_privilege('anon', oid, 'execute'),"
        " has_function_privilege('authenticated', oid, 'execute')"
        " from pg_proc where pronamespace = 'public'::regnamespace and proname like 'predictions\\_%'",
    )
    assert {row[0] for row in rows} == DASHBOARD_FUNCTIONS
    for name, definer, volatility, returns, anon, authenticated in rows:
        assert (definer, volatility, returns) == (False, "s", "jsonb"), name
        assert (anon, authenticated) == (False, True), name


def test_applying_twice_is_harmless_and_keeps_rows(database):
    apply_migrations(database)
    with psycopg.connect(database) as conn:
        conn.execute(
            "insert into training_predictions (job_id, user_id, epoch, step, sample_index, prompt,"
            " prediction, exact_match) values ('job', %s, 1, 1, 0, 'p', 'x', 1.0)",
            (USER_A,),
        )
        conn.execute("insert into training_jobs (id, user_id, name) values ('job', %s, 'kept')", (USER_A,))
    before = schema_snapshot(database)
    apply_migrations(database)
    assert schema_snapshot(database) == before
    assert fetch(database, "select job_id, exact_match from training_predictions") == [("job", 1.0)]
    assert fetch(database, "select name, status from training_jobs") == [("kept", "running")]


def test_the_seed_table_gains_scores_and_keeps_its_rows(database):
    rows = [(str(uuid.uuid4()), "seed-job", USER_A, 1, 10, i, f"p{i}", f"t{i}", f"x{i}") for i in range(3)]
    with psycopg.connect(database) as conn:
        conn.execute(SEED_TABLE)
        conn.cursor().executemany(
            "insert into training_predictions (id, job_id, user_id, epoch, step, sample_index, prompt,"
            " ground_truth, prediction, created_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
            rows,
        )
    apply_migrations(database)
    kept = fetch(
        database,
        "select id::text, job_id, user_id::text, epoch, step, sample_index, prompt, ground_truth,"
        " prediction, exact_match, char_error_rate, length_ratio, word_overlap"
        " from training_predictions order by sample_index",
    )
    assert [row[:9] for row in kept] == rows
    assert all(row[9:] == (None, None, None, None) for row in kept)
    with psycopg.connect(database) as conn:
        conn.execute(
            f"{INSERT_NEW} values ('seed-job', %s, 2, 20, 0, 'p', 'x')"
            " on conflict (job_id, step, sample_index) do update set prediction = excluded.prediction",
            (USER_A,),
        )
    assert fetch(database, "select count(*), count(created_at) from training_predictions") == [(4, 4)]


def test_old_duplicates_of_the_natural_key_are_set_aside_not_lost(database):
    older, newer, other = (str(uuid.uuid4()) for _ in range(3))
    with psycopg.connect(database) as conn:
        conn.execute(SEED_TABLE)
        conn.cursor().executemany(
            "insert into training_predictions (id, job_id, user_id, epoch, step, sample_index, prompt,"
            " prediction, created_at) values (%s, 'job', %s, 1, 5, %s, 'p', %s, now() - %s::interval)",
            [
                (older, USER_A, 0, "first try", "1 hour"),
                (newer, USER_A, 0, "retry", "1 minute"),
                (other, USER_A, 1, "unique", "1 hour"),
            ],
        )
    apply_migrations(database)
    apply_migrations(database)
    assert fetch(database, "select id::text, prediction from training_predictions order by sample_index") == [
        (newer, "retry"),
        (other, "unique"),
    ]
    assert fetch(database, "select id::text, prediction from training_predictions_duplicates") == [
        (older, "first try")
    ]
    with pytest.raises(psycopg.errors.UniqueViolation), psycopg.connect(database) as conn:
        conn.execute(
            f"{INSERT_NEW} values ('job', %s, 1, 5, 0, 'p', 'again')",
            (USER_A,),
        )
