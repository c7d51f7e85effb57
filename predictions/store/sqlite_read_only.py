"""Opening a SQLite store that cannot be written here: a read-only mount, a snapshot, a shared folder.

Such a file is opened with a `file:...?mode=ro` URI and never migrated. A WAL database (the store's
journal mode) can be read that way only while its `-wal` and `-shm` files exist, or where they can be
created (sqlite.org/wal.html, "Read-Only Databases"): a writer is using it, or it was left open. A
file closed cleanly has neither, and a read-only folder cannot get them, so it is opened `immutable=1`
instead, which assumes that nobody changes the file while it is open: SQLite then takes no locks and
reads no log. So the store checks the file before each read (`is_stale`): once it changed or a `-wal`
file appeared (a run writing it through another, writable path), it is opened again, `mode=ro` where
that now works, and reads see the new rows. Never used where a `-wal` file holds rows: they would be
missed, so that is an error instead.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from predictions.errors import ReadOnlyStoreError
from predictions.store.sqlite_schema import schema_is_readable

CANNOT_OPEN_WRITABLE = ("SQLITE_READONLY", "SQLITE_CANTOPEN")
"""The errors of opening a file that exists for writing when it (or its folder) cannot be written."""

CAUSES = "a read-only filesystem, or its permissions"


def why_read_only(path: Path) -> str | None:
    """Why a store at `path` cannot be written here, or None when it can (or there is no file yet and
    its folder can be made). `os.access` sees a read-only mount even for root, not a file's mode."""
    if not path.exists():
        folder = next((parent for parent in path.parents if parent.exists()), None)
        if folder is None or os.access(folder, os.W_OK):
            return None
        return f"there is no store there and {folder} cannot be written ({CAUSES})"
    if not os.access(path, os.W_OK):
        return f"the file cannot be written ({CAUSES})"
    if not os.access(path.parent, os.W_OK):
        return f"its folder {path.parent} cannot be written ({CAUSES})"
    return None


def refused_writable_open(path: Path, error: sqlite3.Error) -> bool:
    """True when opening an existing file for writing failed because it cannot be written (the file
    or its `-wal`/`-shm` files belong to someone else, as root never sees in `os.access`)."""
    return path.is_file() and getattr(error, "sqlite_errorname", "") in CANNOT_OPEN_WRITABLE


def open_read_only(path: Path, why: str, timeout_s: float) -> sqlite3.Connection:
    """A read-only connection to the store at `path`, checked to hold this version's schema;
    ReadOnlyStoreError naming the path and what to do when it cannot be read as it is."""
    if not path.is_file():
        raise ReadOnlyStoreError(f"cannot create the SQLite store at {path}: {why}")
    uri = path.resolve().as_uri()
    try:
        conn = _connect(f"{uri}?mode=ro", timeout_s)
    except sqlite3.OperationalError:
        if _log_holds_rows(path):
            raise ReadOnlyStoreError(
                f"cannot read the SQLite store at {path}: {why}, and its write-ahead log {path.name}-wal "
                f"holds rows that only a writable folder lets SQLite read; copy {path.name} and "
                f"{path.name}-wal together to a writable folder and open the copy"
            ) from None
        state = file_state(path)
        conn = _connect(f"{uri}?mode=ro&immutable=1", timeout_s, ImmutableConnection)
        conn.opened_on = state
    try:
        _check_schema(conn, path, why)
    except BaseException:
        conn.close()
        raise
    return conn


class ImmutableConnection(sqlite3.Connection):
    """A connection opened `immutable=1`, with the state of the file it was opened on."""

    opened_on: tuple | None = None


def file_state(path: Path) -> tuple | None:
    """What changes when anyone writes the store: the file's size and time, and whether a log exists."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, path.with_name(f"{path.name}-wal").exists()


def is_stale(conn: sqlite3.Connection, path: Path) -> bool:
    """True when `conn` was opened `immutable` and the file has changed since: it must be opened again."""
    return isinstance(conn, ImmutableConnection) and conn.opened_on != file_state(path)


def _connect(uri: str, timeout_s: float, factory: type = sqlite3.Connection) -> sqlite3.Connection:
    """Connect and read the schema at once: SQLite opens the file lazily, at the first statement."""
    conn = sqlite3.connect(
        uri, uri=True, timeout=timeout_s, check_same_thread=False, isolation_level=None, factory=factory
    )
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def _log_holds_rows(path: Path) -> bool:
    log = path.with_name(f"{path.name}-wal")
    return log.is_file() and log.stat().st_size > 0


def _check_schema(conn: sqlite3.Connection, path: Path, why: str) -> None:
    """ReadOnlyStoreError unless this version can read the file as it is: an older one whose reads
    need a migration (a column they select) can have it only where it can be written."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'training_predictions'").fetchone() is None:
        raise ReadOnlyStoreError(
            f"{path} holds no predictions store (no training_predictions table), and {why}, so none can "
            "be made there; valid: PREDICTIONS_DB naming a store file"
        )
    if not schema_is_readable(conn):
        raise ReadOnlyStoreError(
            f"the SQLite store at {path} needs its schema updated for this version of predictions, and "
            f"{why}; copy it (with any {path.name}-wal file beside it) to a writable folder and open the "
            "copy, or open it once with this version where it can be written"
        )
