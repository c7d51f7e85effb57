"""A throwaway PostgreSQL prepared as Supabase prepares one, with our migrations, for tests and benchmarks.

pgserver in a temporary directory (about a second to start), or the server at
PREDICTIONS_TEST_DATABASE_URL (a superuser URL, e.g. `supabase start`'s database). As on Supabase, the
cluster's superuser is `supabase_admin` and the project's `postgres` role is not a superuser
(supabase_roles.sql); each use gets its own database with Supabase's `auth` schema and `auth.uid()`
(supabase_bootstrap.sql), the default grants of a project created before or after Supabase's 2026
change (DEFAULT_GRANTS), and every migration applied as `postgres`, recorded in the same history table
the Supabase CLI keeps, so `supabase migration list` and `db push` agree with it. Lives outside tests/
so that bench/ and tests/ share it without one importing the other.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import stat
import tempfile
import time
import warnings
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = ROOT / "supabase" / "migrations"
ROLES_SQL = Path(__file__).with_name("supabase_roles.sql")
BOOTSTRAP_SQL = Path(__file__).with_name("supabase_bootstrap.sql")
DATABASE_URL_ENV = "PREDICTIONS_TEST_DATABASE_URL"
SUPERUSER = "supabase_admin"
PROJECT_ROLE = "postgres"
"""The role the Supabase CLI and SQL editor connect as: it applies the migrations and owns their objects."""

DEFAULT_GRANTS = {
    # Projects created before 2026-05-30 (and every project until 2026-10-30): whatever `postgres`
    # creates in public is granted to the API roles.
    "old": ("tables", "functions", "sequences"),
    # Since then, new tables (and their sequences) need an explicit grant; functions are still granted.
    "new": ("functions",),
}
HISTORY = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
    version text not null primary key, statements text[], name text
)
"""
"""The Supabase CLI's migration history table, as `supabase db push` creates it."""

_database_numbers = itertools.count(1)


def migration_files() -> list[Path]:
    """The migrations in the order `supabase db push` applies them: by their timestamp prefix."""
    return sorted(MIGRATIONS_DIR.glob("[0-9]*_*.sql"))


def run_sql_file(conninfo: str, path: Path) -> None:
    """Run one file in one transaction, as the Supabase CLI applies a migration."""
    with psycopg.connect(conninfo) as conn:
        conn.execute(path.read_text())


def as_role(conninfo: str, role: str) -> str:
    """The same database, logged in as another role (every local login is trusted)."""
    return make_conninfo(conninfo, user=role)


def bootstrap(admin: str, grants: str = "new") -> None:
    """Create what a Supabase project has before our migrations: roles, the auth schema, grants.

    `admin` is a superuser's conninfo of the database; `grants` is "new" or "old" (DEFAULT_GRANTS).
    """
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(ROLES_SQL.read_text())
        name = conn.info.dbname
        conn.execute(
            sql.SQL("grant all on database {} to {}").format(
                sql.Identifier(name), sql.Identifier(PROJECT_ROLE)
            )
        )
        conn.execute(BOOTSTRAP_SQL.read_text())
        for kind in DEFAULT_GRANTS[grants]:
            conn.execute(
                sql.SQL(
                    "alter default privileges for role {} in schema public"
                    " grant all on {} to anon, authenticated, service_role"
                ).format(sql.Identifier(PROJECT_ROLE), sql.SQL(kind))
            )


def applied_versions(conninfo: str) -> list[str]:
    """The migration versions recorded in the CLI's history table, oldest first."""
    with psycopg.connect(conninfo) as conn:
        conn.execute(HISTORY)
        return [
            row[0]
            for row in conn.execute("select version from supabase_migrations.schema_migrations order by 1")
        ]


def apply_migrations(conninfo: str, before: str = "99999999999999") -> list[str]:
    """Apply the migrations not yet recorded (older than version `before`), each with its history row
    in its own transaction, as `supabase db push` does; returns the versions applied."""
    done = set(applied_versions(conninfo))
    applied = []
    for path in migration_files():
        version, _, name = path.stem.partition("_")
        if version in done or version >= before:
            continue
        with psycopg.connect(conninfo) as conn:
            conn.execute(path.read_text())
            conn.execute(
                "insert into supabase_migrations.schema_migrations (version, statements, name)"
                " values (%s, %s, %s)",
                (version, [path.read_text()], name),
            )
        applied.append(version)
    return applied


def replay_migrations(conninfo: str) -> None:
    """Run every migration again, whatever the history says: what pasting them into the SQL editor does."""
    for path in migration_files():
        run_sql_file(conninfo, path)


def initdb(directory: Path) -> None:
    """A new cluster whose superuser is supabase_admin (pgserver's own initdb names it postgres, which
    PostgreSQL 16 then cannot demote). As root, pgserver runs PostgreSQL as its `pgserver` user, which
    must reach both the cluster and pgserver's binaries: pgserver opens up their folders only when it
    starts a server, after this (a clone in a private folder, `mktemp -d` or /root, failed here)."""
    import pgserver
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    user = None
    if os.geteuid() == 0:
        user = "pgserver"
        ensure_user_exists(user)
        ensure_prefix_permissions(directory)
        shutil.chown(directory, user, user)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)  # as pgserver's own start does, before initdb needs it
        readable, runnable = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | runnable)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    pgserver.initdb(
        ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", SUPERUSER],
        pgdata=directory,
        user=user,
    )


class Postgres:
    """One PostgreSQL server: pgserver in `directory`, or the one at PREDICTIONS_TEST_DATABASE_URL."""

    def __init__(self, directory: Path):
        self._server = None
        self._templates: dict[str, str] = {}
        self.admin = os.environ.get(DATABASE_URL_ENV, "")
        if not self.admin:
            with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
                warnings.simplefilter("ignore")
                import pgserver

                data = directory / "data"
                data.mkdir()
                initdb(data)
                self._server = pgserver.get_server(data, cleanup_mode="delete")
            self.admin = as_role(self._server.get_uri(), SUPERUSER)
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

    def create_database(self, prefix: str = "predictions_test", grants: str = "new") -> str:
        """A new database prepared as a Supabase project's; returns its conninfo as `postgres`."""
        name = f"{prefix}_{os.getpid()}_{next(_database_numbers)}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        bootstrap(make_conninfo(self.admin, dbname=name), grants)
        return as_role(make_conninfo(self.admin, dbname=name), PROJECT_ROLE)

    def superuser(self, conninfo: str) -> str:
        """The same database as the cluster's superuser (what Supabase keeps for itself)."""
        return make_conninfo(self.admin, dbname=conninfo_to_dict(conninfo)["dbname"])

    def drop_database(self, conninfo: str) -> None:
        name = conninfo_to_dict(conninfo)["dbname"]
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    def migrated_database(self, grants: str = "new") -> str:
        conninfo = self.create_database(grants=grants)
        apply_migrations(conninfo)
        return conninfo

    def migrated_copy(self, grants: str = "new") -> str:
        """A new database as `migrated_database` makes one, copied from a migrated template kept for this
        server (one per `grants`): the copy costs the server about 0.15 s of CPU, creating, preparing
        and migrating one 0.6 s. Returns its conninfo as `postgres`."""
        if grants not in self._templates:
            self._templates[grants] = self.migrated_database(grants=grants)
        template = conninfo_to_dict(self._templates[grants])["dbname"]
        name = f"predictions_copy_{os.getpid()}_{next(_database_numbers)}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("create database {} template {}").format(*map(sql.Identifier, (name, template)))
            )
            # A database's own privileges are not copied with it (bootstrap grants them).
            conn.execute(
                sql.SQL("grant all on database {} to {}").format(*map(sql.Identifier, (name, PROJECT_ROLE)))
            )
        return as_role(make_conninfo(self.admin, dbname=name), PROJECT_ROLE)

    def close(self) -> None:
        for template in self._templates.values():
            self.drop_database(template)
        self._templates.clear()
        if self._server is not None:
            self._server.cleanup()
            self._server = None


_shared: Postgres | None = None


def migrated_database_uri() -> str:
    """A fresh, migrated database for benchmarks and scripts: its psycopg conninfo, as `postgres`.

    Starts one pgserver for the process (or uses PREDICTIONS_TEST_DATABASE_URL), prepares a new
    database as Supabase does and applies every migration, and stops the server at exit. Pass the
    result to `psycopg.connect`, or to `PostgrestTestServer(as_role(uri, "authenticator"))` to reach
    it through supabase-py.
    """
    global _shared
    if _shared is None:
        _shared = Postgres(Path(tempfile.mkdtemp(prefix="predictions-pg-")))
        atexit.register(_shared.close)
    return _shared.migrated_database()
