"""The migrations on a real PostgreSQL: an empty database, a second run, and the seed's old table."""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from devtools.local_postgres import apply_migrations, migration_files, run_sql_file
from tests.pg_fixtures import USER_A, USER_B

DASHBOARD_FUNCTIONS = {
    "predictions_list_jobs",
    "predictions_trends",
    "predictions_rounds",
    "predictions_sample_history",
    "predictions_sample_matrix",
    "predictions_page",
    "predictions_group_trends",
    "predictions_rollout_trends",
    "predictions_rollout_prompts",
    "predictions_prompt_rollouts",
    "predictions_step_rollouts",
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
    assert indexes["training_predictions_natural_key"].endswith("(user_id, job_id, step, sample_index)")
    assert indexes["training_jobs_pkey"].endswith("(user_id, id)")
    assert indexes["idx_training_predictions_job_epoch"].endswith("(job_id, epoch)")
    assert indexes["idx_training_predictions_job_step"].endswith("(job_id, step)")
    assert "training_predictions_duplicates" not in {t for t, _ in columns}


def test_row_level_security_is_on_and_every_policy_is_for_authenticated_only(database):
    apply_migrations(database)
    enabled = fetch(
        database,
        "select relname, relrowsecurity from pg_class"
        " where relname in ('training_predictions', 'training_jobs', 'training_rounds', 'training_rollouts',"
        " 'training_rollout_steps') order by 1",
    )
    assert enabled == [
        ("training_jobs", True),
        ("training_predictions", True),
        ("training_rollout_steps", True),
        ("training_rollouts", True),
        ("training_rounds", True),
    ]
    policies = fetch(database, "select tablename, cmd, roles::text from pg_policies order by 1, 2")
    # the summaries are written by their triggers alone: users may only read their own
    assert {(table, cmd) for table, cmd, _ in policies} == {
        (table, cmd)
        for table in ("training_jobs", "training_predictions", "training_rollouts")
        for cmd in ("SELECT", "INSERT", "UPDATE", "DELETE")
    } | {("training_rounds", "SELECT"), ("training_rollout_steps", "SELECT")}
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
    assert {row[0] for row in rows} == DASHBOARD_FUNCTIONS | {"predictions_delete_job"}
    for name, definer, volatility, returns, anon, authenticated in rows:
        expected_volatility = "v" if name == "predictions_delete_job" else "s"
        assert (definer, volatility, returns) == (False, expected_volatility, "jsonb"), name
        assert (anon, authenticated) == (False, True), name
    assert len(rows) == len(DASHBOARD_FUNCTIONS) + 1, "an old signature was left behind"


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
            " on conflict (user_id, job_id, step, sample_index)"
            " do update set prediction = excluded.prediction",
            (USER_A,),
        )
    assert fetch(database, "select count(*), count(created_at) from training_predictions") == [(4, 4)]
    with psycopg.connect(database) as conn:
        conn.execute(
            f"{INSERT_NEW} values ('seed-job', %s, 1, 10, 0, 'p', 'b has a seed-job too')", (USER_B,)
        )
    owners = "select user_id::text, count(*) from training_predictions group by 1 order by 1"
    assert fetch(database, owners) == [(USER_A, 4), (USER_B, 1)]


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


OWNER_KEYS = "20261126090000"
"""The migration that scopes job ids per owner."""

ALL_ROWS = (
    "select id::text, job_id, user_id::text, epoch, step, sample_index, prompt, ground_truth, prediction,"
    " exact_match, char_error_rate, created_at from training_predictions order by id"
)


def apply_migrations_before(conninfo: str, timestamp: str) -> None:
    for path in migration_files():
        if path.name < timestamp:
            run_sql_file(conninfo, path)


def test_per_owner_keys_keep_every_row_and_its_owner_of_the_schema_before(database):
    apply_migrations_before(database, OWNER_KEYS)
    with psycopg.connect(database) as conn:
        for job_id, user_id, steps in (("ada-run", USER_A, (1, 2)), ("bob-run", USER_B, (1,))):
            conn.execute(
                "insert into training_jobs (id, user_id, name) values (%s, %s, %s)", (job_id, user_id, job_id)
            )
            for step in steps:
                conn.execute(
                    "insert into training_predictions (job_id, user_id, epoch, step, sample_index, prompt,"
                    " prediction, exact_match, char_error_rate) values (%s, %s, 1, %s, 0, 'p', %s, 1.0, 0.0)",
                    (job_id, user_id, step, f"{job_id} {step}"),
                )
        # the old global key let B write a round of A's job id: it stays B's, as B's own job now
        conn.execute(f"{INSERT_NEW} values ('ada-run', %s, 1, 3, 0, 'p', 'bob in ada-run')", (USER_B,))
    rows_before = fetch(database, ALL_ROWS)
    jobs_before = fetch(database, "select id, user_id::text, name, started_at from training_jobs order by id")
    apply_migrations(database)
    apply_migrations(database)
    assert fetch(database, ALL_ROWS) == rows_before
    assert (
        fetch(database, "select id, user_id::text, name, started_at from training_jobs order by id")
        == jobs_before
    )
    rounds = "select user_id::text, job_id, step, sample_count from training_rounds order by 1, 2, 3"
    assert fetch(database, rounds) == [
        (USER_A, "ada-run", 1, 1),
        (USER_A, "ada-run", 2, 1),
        (USER_B, "ada-run", 3, 1),
        (USER_B, "bob-run", 1, 1),
    ]
    with psycopg.connect(database) as conn:
        conn.execute(
            "insert into training_jobs (id, user_id, name) values ('ada-run', %s, 'bob too')", (USER_B,)
        )
        conn.execute(f"{INSERT_NEW} values ('ada-run', %s, 1, 1, 0, 'p', 'bob at the same key')", (USER_B,))
    assert fetch(
        database,
        "select count(*), count(distinct user_id) from training_predictions where job_id = 'ada-run'",
    ) == [(4, 2)]


def test_definer_functions_fix_their_search_path_and_ingest_helpers_are_private(database):
    apply_migrations(database)
    rows = fetch(
        database,
        "select proname, coalesce(proconfig, '{}'), has_function_privilege('anon', oid, 'execute'),"
        " has_function_privilege('authenticated', oid, 'execute')"
        " from pg_proc where pronamespace = 'public'::regnamespace and prosecdef",
    )
    assert all('search_path=""' in config for _, config, _, _ in rows), rows
    reachable = {name: (anon, authenticated) for name, _, anon, authenticated in rows}
    for helper in (
        "ingest_key_owner",
        "ingest_upsert",
        "training_rounds_refresh",
        "training_rollout_steps_refresh",
    ):
        assert reachable[helper] == (False, False), helper
    for trainer_call in (
        "ingest_whoami",
        "ingest_write_predictions",
        "ingest_write_rollouts",
        "ingest_start_job",
        "ingest_update_job",
    ):
        assert reachable[trainer_call] == (True, True), trainer_call
    for user_call in ("ingest_key_create", "ingest_key_list", "ingest_key_revoke"):
        assert reachable[user_call] == (False, True), user_call
    assert fetch(database, "select has_table_privilege('authenticated', 'ingest_keys', 'select')") == [
        (False,)
    ]


def test_the_seed_table_gains_the_replacement_count_and_jobs_their_status_time(database):
    with psycopg.connect(database) as conn:
        conn.execute(SEED_TABLE)
        conn.execute(
            "insert into training_predictions (id, job_id, user_id, epoch, step, sample_index, prompt,"
            " prediction, created_at) values (gen_random_uuid(), 'seed-job', %s, 1, 1, 0, 'p', 'x', now())",
            (USER_A,),
        )
    apply_migrations(database)
    apply_migrations(database)
    assert fetch(database, "select text_replacements from training_predictions") == [(0,)]
    with psycopg.connect(database) as conn:
        conn.execute(
            "insert into training_jobs (id, user_id, status, status_at)"
            " values ('job', %s, 'finished', '2026-01-01T00:00:10Z')",
            (USER_A,),
        )
        late_start = "update training_jobs set status = 'running', status_at = %s where id = 'job'"
        conn.execute(late_start, ("2026-01-01T00:00:01Z",))  # a start replayed after the finish
        assert conn.execute("select status, finished_at is not null from training_jobs").fetchall() == [
            ("finished", True)
        ]
        conn.execute(late_start, ("2026-01-01T00:00:20Z",))  # a real restart, later
        assert conn.execute("select status, finished_at from training_jobs").fetchall() == [("running", None)]
