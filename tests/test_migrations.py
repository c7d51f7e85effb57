"""The migrations on a real PostgreSQL: an empty database, a second run, and the seed's old table."""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from devtools.local_postgres import apply_migrations, migration_files, replay_migrations
from tests.pg_fixtures import USER_A, USER_B, acting_as

DASHBOARD_FUNCTIONS = {
    "predictions_list_jobs",
    "predictions_trends",
    "predictions_rounds",
    "predictions_sample_history",
    "predictions_sample_matrix",
    "predictions_sample_summary",
    "predictions_page",
    "predictions_group_trends",
    "predictions_rollout_trends",
    "predictions_rollout_prompts",
    "predictions_prompt_rollouts",
    "predictions_step_rollouts",
    "predictions_jobs_version",
    "predictions_rows_after",
    "predictions_training_series",
}

WRITE_FUNCTIONS = {"predictions_delete_job", "predictions_set_job_details"}
"""What the dashboard changes, as the caller (row-level security: the owner only)."""

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


def test_row_level_security_is_on_and_every_policy_is_for_authenticated_only(migrated_database):
    enabled = fetch(
        migrated_database,
        "select relname, relrowsecurity from pg_class"
        " where relname in ('training_predictions', 'training_jobs', 'training_rounds', 'training_rollouts',"
        " 'training_rollout_steps', 'training_series', 'training_job_summary', 'training_deleted_runs')"
        " order by 1",
    )
    assert enabled == [
        ("training_deleted_runs", True),
        ("training_job_summary", True),
        ("training_jobs", True),
        ("training_predictions", True),
        ("training_rollout_steps", True),
        ("training_rollouts", True),
        ("training_rounds", True),
        ("training_series", True),
    ]
    policies = fetch(migrated_database, "select tablename, cmd, roles::text from pg_policies order by 1, 2")
    # the summaries are written by their triggers alone: users may only read their own
    assert {(table, cmd) for table, cmd, _ in policies} == {
        (table, cmd)
        for table in ("training_jobs", "training_predictions", "training_rollouts", "training_series")
        for cmd in ("SELECT", "INSERT", "UPDATE", "DELETE")
    } | {
        ("training_rounds", "SELECT"),
        ("training_rollout_steps", "SELECT"),
        ("training_job_summary", "SELECT"),
        # deletions: recorded by their owner (through predictions_delete_job), never changed
        ("training_deleted_runs", "SELECT"),
        ("training_deleted_runs", "INSERT"),
    }
    assert {roles for _, _, roles in policies} == {"{authenticated}"}


def test_every_dashboard_function_exists_runs_as_the_caller_and_is_closed_to_anon(migrated_database):
    rows = fetch(
        migrated_database,
        "select proname, prosecdef, provolatile, prorettype::regtype::text,"
        " has_function_privilege('anon', oid, 'execute'),"
        " has_function_privilege('authenticated', oid, 'execute')"
        " from pg_proc where pronamespace = 'public'::regnamespace and proname like 'predictions\\_%'"
        " and proname <> 'predictions_schema_version'",  # test_schema_version.py: anyone may ask it
    )
    assert {row[0] for row in rows} == DASHBOARD_FUNCTIONS | WRITE_FUNCTIONS
    for name, definer, volatility, returns, anon, authenticated in rows:
        expected_volatility = "v" if name in WRITE_FUNCTIONS else "s"
        assert (definer, volatility, returns) == (False, expected_volatility, "jsonb"), name
        assert (anon, authenticated) == (False, True), name
    assert len(rows) == len(DASHBOARD_FUNCTIONS) + len(WRITE_FUNCTIONS), "an old signature was left behind"


def test_applying_twice_is_harmless_and_keeps_rows(migrated_database):
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            "insert into training_predictions (job_id, user_id, epoch, step, sample_index, prompt,"
            " prediction, exact_match) values ('job', %s, 1, 1, 0, 'p', 'x', 1.0)",
            (USER_A,),
        )
        conn.execute("insert into training_jobs (id, user_id, name) values ('job', %s, 'kept')", (USER_A,))
    before = schema_snapshot(migrated_database)
    replay_migrations(migrated_database)
    assert schema_snapshot(migrated_database) == before
    assert fetch(migrated_database, "select job_id, exact_match from training_predictions") == [("job", 1.0)]
    assert fetch(migrated_database, "select name, status from training_jobs") == [("kept", "running")]


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
    replay_migrations(database)
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


def test_per_owner_keys_keep_every_row_and_its_owner_of_the_schema_before(database):
    apply_migrations(database, before=OWNER_KEYS)
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
    replay_migrations(database)
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


API_FUNCTIONS = {
    # a trainer with the publishable key and an ingest key (security definer: they check the key)
    "ingest_whoami": ("anon",),
    "ingest_write_predictions": ("anon",),
    "ingest_start_job": ("anon",),
    "ingest_write_rollouts": ("anon",),
    "ingest_write_series": ("anon",),
    # a signed-in user managing their keys
    "ingest_key_create": ("authenticated",),
    "ingest_key_list": ("authenticated",),
    "ingest_key_revoke": ("authenticated",),
    # the dashboard's reads (security invoker) and the pure helpers they call as their caller
    **{name: ("authenticated", "service_role") for name in DASHBOARD_FUNCTIONS | WRITE_FUNCTIONS},
    "training_predictions_number": ("authenticated", "service_role"),
    "training_numeric_double": ("authenticated", "service_role"),
    "training_predictions_metric": ("authenticated", "service_role"),
    "training_predictions_check_metric": ("authenticated", "service_role"),
    "training_owner_low": ("authenticated", "service_role"),
    "training_owner_high": ("authenticated", "service_role"),
    # which migrations the database has: asked by trainers and the dashboard before sign-in
    "predictions_schema_version": ("anon", "authenticated", "service_role"),
}
"""Who may call each function; every other function of public is an internal helper nobody calls."""


@pytest.mark.parametrize("grants", ["new", "old"])
def test_each_api_role_executes_exactly_its_functions_and_no_internal_helper(postgres, grants):
    """Under either default grants: with the old ones, whatever `postgres` created was granted to every
    API role, and service_role kept EXECUTE on the internal helpers (ingest_upsert writes any table)."""
    conninfo = postgres.migrated_database(grants)
    try:
        rows = fetch(
            conninfo,
            "select proname, prosecdef, coalesce(proconfig, '{}'),"
            " array(select r from unnest(array['anon', 'authenticated', 'service_role']) as r"
            "       where has_function_privilege(r, p.oid, 'execute'))"
            " from pg_proc as p where pronamespace = 'public'::regnamespace",
        )
        callers = {name: tuple(roles) for name, _, _, roles in rows}
        assert {name: roles for name, roles in callers.items() if roles} == API_FUNCTIONS
        assert all('search_path=""' in config for _, definer, config, _ in rows if definer), rows
        assert "ingest_update_job" not in callers, "the dead function is gone"
        with acting_as(conninfo, "service_role") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select ingest_upsert('auth.users', '{id}', %s, '[{\"email\": \"x\"}]')", (USER_A,))
        assert fetch(conninfo, "select has_table_privilege('authenticated', 'ingest_keys', 'select')") == [
            (False,)
        ]
    finally:
        postgres.drop_database(conninfo)


def test_ingest_upsert_writes_tables_of_this_project_only(migrated_database):
    """Even its owner (the definer functions run as postgres) cannot point it at auth's tables."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not a table of this project"):
        fetch(
            migrated_database,
            "select ingest_upsert('auth.refresh_tokens', '{id}', %s, '[{\"token\": \"x\"}]')",
            (USER_A,),
        )


def test_a_users_ingest_keys_are_deleted_with_the_user(migrated_database):
    with psycopg.connect(migrated_database) as conn:
        conn.execute("set role supabase_auth_admin")
        conn.execute("insert into auth.users (id, email) values (%s, 'a@x'), (%s, 'b@x')", (USER_A, USER_B))
        conn.execute("reset role")
        for user, label in ((USER_A, "gpu"), (USER_B, "gpu")):
            conn.execute(
                "insert into ingest_keys (user_id, label, key_hash, key_prefix) values (%s, %s, %s, 'pmi_')",
                (user, label, f"hash-{user}"),
            )
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute(
                "insert into ingest_keys (user_id, label, key_hash, key_prefix)"
                " values (gen_random_uuid(), 'ghost', 'h', 'p')"
            )
        conn.execute("set role supabase_auth_admin")
        conn.execute("delete from auth.users where id = %s", (USER_A,))
    assert fetch(migrated_database, "select user_id::text from ingest_keys") == [(USER_B,)]


def scans(conninfo: str) -> dict[str, tuple[int, int]]:
    """(sequential, index) scans so far of each table of ours, from PostgreSQL's statistics."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("select pg_stat_clear_snapshot()")
        rows = conn.execute(
            "select relname, seq_scan, coalesce(idx_scan, 0)"
            " from pg_stat_user_tables where schemaname = 'public'"
        ).fetchall()
    return {name: (seq, idx) for name, seq, idx in rows}


def test_owner_filters_use_the_owner_first_keys(migrated_database):
    """A read for one owner goes through an index on user_id, never a scan of every owner's rows."""
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            f"{INSERT_NEW} select 'job-' || (i % 20),"
            " ('a0000000-0000-4000-8000-' || lpad((i % 50)::text, 12, '0'))::uuid,"
            " 1, i % 7, i, 'p', 'x' from generate_series(1, 20000) as i"
        )
        conn.execute(
            "insert into training_jobs (id, user_id)"
            " select distinct job_id, user_id from training_predictions"
        )
        conn.execute("analyze")
    owner = "a0000000-0000-4000-8000-000000000007"
    before = scans(migrated_database)
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute("set role service_role")
        for call in (
            "predictions_list_jobs(p_user_id => %s)",
            "predictions_trends('job-7', %s)",
            "predictions_rounds('job-7', %s)",
            "predictions_page('job-7', p_user_id => %s)",
            "predictions_sample_history('job-7', 7, %s)",
            "predictions_sample_matrix('job-7', p_user_id => %s)",
            "predictions_sample_summary('job-7', p_user_id => %s)",
        ):
            conn.execute(f"select {call}", (owner,))
        conn.execute("select pg_stat_force_next_flush()")
        conn.execute("select 1")
    after = scans(migrated_database)
    for table in ("training_predictions", "training_jobs", "training_rounds", "training_job_summary"):
        assert after[table][0] == before[table][0], f"{table} was scanned whole"
        assert after[table][1] > before[table][1], f"no index of {table} was used"


def test_the_seed_table_gains_the_replacement_count_and_jobs_their_status_time(database):
    with psycopg.connect(database) as conn:
        conn.execute(SEED_TABLE)
        conn.execute(
            "insert into training_predictions (id, job_id, user_id, epoch, step, sample_index, prompt,"
            " prediction, created_at) values (gen_random_uuid(), 'seed-job', %s, 1, 1, 0, 'p', 'x', now())",
            (USER_A,),
        )
    apply_migrations(database)
    replay_migrations(database)
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


def test_a_database_from_before_the_stopped_status_takes_it_and_keeps_the_reason_with_its_status(database):
    (stopped,) = [
        path.name.partition("_")[0] for path in migration_files() if path.name.endswith("_job_stopped.sql")
    ]
    apply_migrations(database, before=stopped)
    with psycopg.connect(database) as conn:
        conn.execute(
            "insert into training_jobs (id, user_id, status, status_at) values ('old', %s, 'finished', %s)",
            (USER_A, "2026-01-01T00:00:00Z"),
        )
    assert apply_migrations(database)[0] == stopped
    replay_migrations(database)  # pasted again into the SQL editor: harmless
    reason = '{"metric": "char_error_rate", "rounds": 2, "step": 30}'
    stop = "update training_jobs set status = %s, status_at = %s, stop_reason = %s::jsonb where id = 'old'"
    with psycopg.connect(database) as conn:
        conn.execute(stop, ("stopped", "2026-01-01T00:01:00Z", reason))
        conn.execute(stop, ("failed", "2026-01-01T00:00:30Z", None))  # an older call, replayed
        assert conn.execute("select status, stop_reason from training_jobs").fetchall() == [
            ("stopped", {"metric": "char_error_rate", "rounds": 2, "step": 30})
        ]
        conn.execute(stop, ("running", "2026-01-01T00:02:00Z", reason))  # resumed: no reason any more
        assert conn.execute("select status, stop_reason from training_jobs").fetchall() == [("running", None)]
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("update training_jobs set status = 'paused', status_at = now() where id = 'old'")
