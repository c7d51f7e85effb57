"""The migrations as a user deploys them, with Supabase's own tools.

The official Supabase CLI (npm `supabase`, pinned in devtools/package-lock.json, installed by `make
setup`) pushes supabase/migrations onto a PostgreSQL prepared as Supabase prepares one (`postgres` not a
superuser, the API roles, the auth schema; devtools/local_postgres.py), under the default grants of
projects before and after Supabase's 2026 change. Its advisors may report only what docs/supabase.md
lists as expected, so no new warning goes unnoticed.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from devtools.local_postgres import ROOT, applied_versions, apply_migrations, migration_files
from tests.pg_fixtures import USER_A, acting_as
from tests.test_migrations import SEED_TABLE, fetch

pytestmark = pytest.mark.slow

CLI = ROOT / "devtools" / "node_modules" / ".bin" / "supabase"
DOCS = ROOT / "docs" / "supabase.md"
VERSIONS = [path.name.partition("_")[0] for path in migration_files()]


def db_url(conninfo: str) -> str:
    """The CLI's --db-url for a psycopg conninfo; a Unix socket travels as the `host` parameter."""
    parts = conninfo_to_dict(conninfo)
    password = f":{parts['password']}" if parts.get("password") else ""
    host = parts.get("host") or "localhost"
    if host.startswith("/"):
        return (
            f"postgresql://{parts['user']}{password}@localhost/{parts['dbname']}?host={host}&sslmode=disable"
        )
    port = parts.get("port") or "5432"
    return f"postgresql://{parts['user']}{password}@{host}:{port}/{parts['dbname']}?sslmode=disable"


def supabase(*args: str, conninfo: str) -> str:
    """Run the CLI against the database, from the repository (it reads supabase/); its stdout."""
    assert CLI.exists(), f"{CLI} is missing: run `make setup` (npm ci --prefix devtools)"
    done = subprocess.run(
        [str(CLI), *args, "--db-url", db_url(conninfo), "--yes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"supabase {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def remote_versions(listing: str) -> list[str]:
    """The Remote column of `supabase migration list`."""
    rows = re.findall(r"^\s*`?(\d{14})?`?\s*\|\s*`?(\d{14})?`?\s*\|", listing, re.MULTILINE)
    return [remote for _, remote in rows if remote]


def expected_advice() -> set[tuple[str, str]]:
    """(lint, object) pairs docs/supabase.md lists under "What the advisors say", as `lint` `object`."""
    section = DOCS.read_text().split("## What the advisors say", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \| `([\w.]+)` \|", section, re.MULTILINE))


def advice(conninfo: str) -> set[tuple[str, str]]:
    """(lint, object) of everything `supabase db advisors` reports, at every level; the object is the
    first name its detail quotes (the index, function or table)."""
    out = supabase("db", "advisors", "--type", "all", "--level", "info", conninfo=conninfo)
    lints = json.loads(out[out.index("[") : out.rindex("]") + 1]) if "[" in out else []
    return {(lint["name"], re.search(r"`([^`]+)`", lint["detail"]).group(1)) for lint in lints}


def check_grants(conninfo: str) -> None:
    """What each API role may do, whatever the project's default grants gave it."""
    for role, table, allowed in (
        ("anon", "training_predictions", False),
        ("authenticated", "training_predictions", True),
        ("service_role", "training_predictions", True),
        ("authenticated", "training_rounds", True),
        ("authenticated", "ingest_keys", False),
        ("service_role", "training_rounds", True),
    ):
        query = f"select has_table_privilege('{role}', 'public.{table}', 'select')"
        assert fetch(conninfo, query) == [(allowed,)], (role, table)
    with acting_as(conninfo, "service_role") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "select public.ingest_upsert('auth.refresh_tokens', '{id}', %s, '[{\"token\": \"x\"}]')",
            (USER_A,),
        )


@pytest.mark.parametrize("grants", ["new", "old"])
def test_the_cli_applies_every_migration_once_under_both_default_grants(postgres, grants):
    conninfo = postgres.create_database("predictions_cli", grants=grants)
    try:
        pushed = supabase("db", "push", conninfo=conninfo)
        assert re.findall(r"Applying migration (\d{14})_", pushed) == VERSIONS
        assert "Remote database is up to date" in supabase("db", "push", conninfo=conninfo)
        assert remote_versions(supabase("migration", "list", conninfo=conninfo)) == VERSIONS
        assert applied_versions(conninfo) == VERSIONS
        assert apply_migrations(conninfo) == [], "the project's helper sees what the CLI applied"
        check_grants(conninfo)
        assert advice(conninfo) == expected_advice()
    finally:
        postgres.drop_database(conninfo)


def test_the_cli_sees_what_the_projects_helper_applied(postgres):
    conninfo = postgres.create_database("predictions_cli")
    try:
        apply_migrations(conninfo)
        assert remote_versions(supabase("migration", "list", conninfo=conninfo)) == VERSIONS
        assert "Remote database is up to date" in supabase("db", "push", conninfo=conninfo)
    finally:
        postgres.drop_database(conninfo)


def test_the_cli_upgrades_the_seed_table_keeping_every_row_even_without_created_at(postgres):
    """The seed's table allows null created_at and ground_truth: such rows migrate, all of them."""
    conninfo = postgres.create_database("predictions_cli")
    rows = [
        (str(uuid.uuid4()), "seed-job", USER_A, 1, step, index, f"p{index}", truth, f"x{index}")
        for step in (5, 10)
        for index, truth in enumerate(["t0", None, "t2"])
    ]
    columns = "id, job_id, user_id, epoch, step, sample_index, prompt, ground_truth, prediction, created_at"
    try:
        with psycopg.connect(conninfo) as conn:
            conn.execute(SEED_TABLE)
            conn.cursor().executemany(
                f"insert into training_predictions ({columns})"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, null)",
                rows,
            )
            conn.execute(
                f"insert into training_predictions ({columns})"
                " values (%s, 'seed-job', %s, 1, 15, 0, 'p', 't', 'x', now())",
                (str(uuid.uuid4()), USER_A),
            )
        pushed = supabase("db", "push", conninfo=conninfo)
        assert re.findall(r"Applying migration (\d{14})_", pushed) == VERSIONS
        kept = fetch(
            conninfo, f"select {columns} from training_predictions where created_at is null order by 5, 6"
        )
        assert [tuple(str(v) if isinstance(v, uuid.UUID) else v for v in row[:9]) for row in kept] == rows
        rounds = "select step, sample_count, created_at is null from training_rounds order by step"
        assert fetch(conninfo, rounds) == [(5, 3, True), (10, 3, True), (15, 1, False)]
        with acting_as(conninfo, "authenticated", USER_A) as conn:
            (jobs,) = conn.execute("select predictions_list_jobs()").fetchone()
            (trends,) = conn.execute("select predictions_trends('seed-job')").fetchone()
        assert [(job["id"], job["round_count"]) for job in jobs] == [("seed-job", 3)]
        assert [r["step"] for r in trends["rounds"]] == [5, 10, 15]
    finally:
        postgres.drop_database(conninfo)


def test_every_advice_the_docs_expect_has_a_reason():
    section = DOCS.read_text().split("## What the advisors say", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `\w+` \| `[\w.]+` \|(.*)\|\s*$", section, re.MULTILINE)
    assert rows and all(len(reason.strip()) > 20 for reason in rows), rows


def test_the_cli_is_pinned_and_its_project_files_are_committed():
    lock = json.loads((ROOT / "devtools" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/supabase"]["version"] == "2.117.0"
    assert ".temp" in (ROOT / "supabase" / ".gitignore").read_text().split()
    assert 'project_id = "predictions-monitor"' in (ROOT / "supabase" / "config.toml").read_text()
    assert Path(CLI).name == "supabase"


def test_every_migration_is_listed_in_the_docs():
    listed = set(re.findall(r"^\| `\*_(\w+)\.sql` \|", DOCS.read_text(), re.MULTILINE))
    assert {path.stem.partition("_")[2] for path in migration_files()} == listed
