"""A throwaway PostgreSQL with Supabase's bootstrap and our migrations, for tests and benchmarks.

pgserver in a temporary directory (about a second to start), or the server at
PREDICTIONS_TEST_DATABASE_URL (a superuser URL, e.g. `supabase start`'s database). Each use gets its own
database with Supabase's roles and `auth.uid()` (supabase_bootstrap.sql) and every migration applied.
Lives outside tests/ so that bench/ and tests/ share it without one importing the other.
"""

from __future__ import annotations

import atexit
import itertools
import os
import tempfile
import time
import warnings
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = ROOT / "supabase" / "migrations"
BOOTSTRAP_SQL = Path(__file__).with_name("supabase_bootstrap.sql")
DATABASE_URL_ENV = "PREDICTIONS_TEST_DATABASE_URL"

_database_numbers = itertools.count(1)


def migration_files() -> list[Path]:
    """The migrations in the order `supabase db push` applies them: by their timestamp prefix."""
    return sorted(MIGRATIONS_DIR.glob("[0-9]*_*.sql"))


def run_sql_file(conninfo: str, path: Path) -> None:
    """Run one file in one transaction, as the Supabase CLI applies a migration."""
    with psycopg.connect(conninfo) as conn:
        conn.execute(path.read_text())


def bootstrap(conninfo: str) -> None:
    """Create what a Supabase project has before our migrations: roles, auth.uid(), grants."""
    run_sql_file(conninfo, BOOTSTRAP_SQL)


def apply_migrations(conninfo: str) -> None:
    for path in migration_files():
        run_sql_file(conninfo, path)


class Postgres:
    """One PostgreSQL server: pgserver in `directory`, or the one at PREDICTIONS_TEST_DATABASE_URL."""

    def __init__(self, directory: Path):
        self._server = None
        self.admin = os.environ.get(DATABASE_URL_ENV, "")
        if not self.admin:
            with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
                warnings.simplefilter("ignore")
                import pgserver

                self._server = pgserver.get_server(directory, cleanup_mode="delete")
            self.admin = self._server.get_uri()
            self._throwaway()

    def _throwaway(self) -> None:
        """No durability for a throwaway server: faster writes, and a stop without a slow checkpoint."""
        with self._first_connection() as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(sql.SQL("alter system set {} = off").format(sql.Identifier(setting)))
            conn.execute("select pg_reload_conf()")

    def _first_connection(self, timeout_s: float = 30.0) -> psycopg.Connection:
        """pgserver can return before its socket accepts connections on a busy machine: wait for it."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return psycopg.connect(self.admin, autocommit=True)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def create_database(self, prefix: str = "predictions_test") -> str:
        """A new, empty database; returns its conninfo (as the admin user)."""
        name = f"{prefix}_{os.getpid()}_{next(_database_numbers)}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        return make_conninfo(self.admin, dbname=name)

    def drop_database(self, conninfo: str) -> None:
        name = conninfo_to_dict(conninfo)["dbname"]
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    def migrated_database(self) -> str:
        conninfo = self.create_database()
        bootstrap(conninfo)
        apply_migrations(conninfo)
        return conninfo

    def close(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


_shared: Postgres | None = None


def migrated_database_uri() -> str:
    """A fresh, migrated database for benchmarks and scripts: its psycopg conninfo, as a superuser.

    Starts one pgserver for the process (or uses PREDICTIONS_TEST_DATABASE_URL), runs the Supabase
    bootstrap and every migration in a new database, and stops the server at exit. Pass the result
    to `psycopg.connect`, or to `PostgrestTestServer(login_as(uri, "authenticator"))` to reach it
    through supabase-py.
    """
    global _shared
    if _shared is None:
        _shared = Postgres(Path(tempfile.mkdtemp(prefix="predictions-pg-")))
        atexit.register(_shared.close)
    return _shared.migrated_database()
