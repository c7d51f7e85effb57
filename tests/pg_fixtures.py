"""Real PostgreSQL for the Supabase tests, and the fixtures built on it.

One server per test session (devtools/local_postgres.py: pgserver, or PREDICTIONS_TEST_DATABASE_URL).
Each use gets its own database with Supabase's bootstrap and our migrations applied; tests of the API
get a clean state by truncating the tables, never a new server. Registered in conftest.py as a plugin.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devtools.local_postgres import Postgres
from tests.postgrest_server import PostgrestTestServer

USER_A = "a0000000-0000-4000-8000-00000000000a"
USER_B = "b0000000-0000-4000-8000-00000000000b"
EMAIL_A, EMAIL_B = "ada@example.com", "bob@example.com"
PASSWORD = "correct horse battery staple"


def login_as(conninfo: str, role: str) -> str:
    """The same database as another login role (PostgREST logs in as `authenticator`).

    With pgserver every local login is trusted; an external server may refuse one that has no
    password, and then the admin login is used: `set local role` still drops its privileges.
    """
    candidate = make_conninfo(conninfo, user=role)
    try:
        psycopg.connect(candidate).close()
    except psycopg.OperationalError:
        return conninfo
    return candidate


@contextmanager
def acting_as(conninfo: str, role: str, user_id: str | None = None) -> Iterator[psycopg.Connection]:
    """A connection inside one transaction as `role` with a JWT's claims, as PostgREST runs a request.

    The transaction is rolled back at the end, so a test may try writes without leaving them behind.
    """
    claims = {"role": role, **({"sub": user_id} if user_id else {})}
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        try:
            yield conn
        finally:
            conn.rollback()


def truncate(conninfo: str) -> None:
    with psycopg.connect(conninfo) as conn:
        tables = (
            "training_predictions, training_jobs, training_rollouts, training_series, training_deleted_runs, "
            "ingest_keys"
        )
        conn.execute(f"truncate {', '.join(f'public.{name}' for name in tables.split(', '))}")


# fixtures


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The session's server, in a directory of its own: pytest deletes old basetemp directories, and
    with several pytest sessions on one machine that could be this one while its server runs."""
    directory = Path(tempfile.mkdtemp(prefix="predictions-pg-"))
    server = Postgres(directory)
    yield server
    server.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def database(postgres: Postgres) -> Iterator[str]:
    """A new database prepared as Supabase prepares one (roles, auth schema), unmigrated; as `postgres`."""
    conninfo = postgres.create_database("predictions_migration")
    yield conninfo
    postgres.drop_database(conninfo)


@pytest.fixture
def migrated_database(postgres: Postgres) -> Iterator[str]:
    """A new database with every migration applied, as `postgres`: a copy of a migrated template, for
    tests that start from the current schema (those of the migrations' own steps take `database`)."""
    conninfo = postgres.migrated_copy()
    yield conninfo
    postgres.drop_database(conninfo)


@pytest.fixture(scope="session")
def supabase_database(postgres: Postgres) -> Iterator[str]:
    """The session's migrated database (admin conninfo), shared by the API tests."""
    conninfo = postgres.migrated_database()
    yield conninfo
    postgres.drop_database(conninfo)


@pytest.fixture(scope="session")
def postgrest_server(supabase_database: str) -> Iterator[PostgrestTestServer]:
    with PostgrestTestServer(login_as(supabase_database, "authenticator")) as server:
        server.add_user(EMAIL_A, PASSWORD, USER_A)
        server.add_user(EMAIL_B, PASSWORD, USER_B)
        yield server


@pytest.fixture
def postgrest(postgrest_server: PostgrestTestServer, supabase_database: str) -> PostgrestTestServer:
    """The session's API server over empty tables."""
    truncate(supabase_database)
    return postgrest_server


def user_store(server: PostgrestTestServer, user_id: str = USER_A, **options):
    """A SupabaseStore as a signed-in user: the anon key plus that user's session token."""
    from predictions.store.supabase import SupabaseStore

    return SupabaseStore(server.url, server.anon_key, access_token=server.access_token(user_id), **options)


def service_store(server: PostgrestTestServer, user_id: str | None = USER_A, **options):
    """A SupabaseStore as a training machine: the service-role key, writing for `user_id`."""
    from predictions.store.supabase import SupabaseStore

    return SupabaseStore(server.url, server.service_key, user_id=user_id, **options)
