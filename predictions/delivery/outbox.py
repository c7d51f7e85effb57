"""The local outbox: store calls kept in a small SQLite database until their store acknowledges them.

Appends (one statement each, see `Outbox.append`), claims and deletes are transactions, so any number
of writers and replayers (threads or processes) may share one outbox. A replayer claims entries with a
lease that expires (no process ids: a killed replayer's entries simply become claimable again) and
deletes an entry only after the store took it (at least once; the stores' upserts make a repeat
harmless). Every entry is keyed by the store it is for and the owner it was written as (`Key`): a
replay only ever asks for its own key's entries, so nobody's calls are sent under another identity.
Refused calls go to the `quarantine` table, with the store's error.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from predictions.errors import OutboxError

LEASE_S = 120.0
"""How long a claim holds entries; a replayer killed meanwhile leaves them claimable after it."""
FULL_BELOW_BYTES = 1 << 20
"""Free space under which an outbox error is blamed on a full disk."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store TEXT NOT NULL,
    owner TEXT NOT NULL,
    call TEXT NOT NULL,
    created_at TEXT NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_by_key ON entries (store, owner, id);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store TEXT NOT NULL,
    owner TEXT NOT NULL,
    call TEXT NOT NULL,
    error TEXT NOT NULL,
    quarantined_at TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Key:
    """Whose calls these are: the store they are for and the owner they were written as."""

    store: str
    owner: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One kept call: its id in the outbox and the call (None when its text cannot be read)."""

    id: int
    call: dict[str, Any] | None
    text: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A quarantined call with the error the store gave."""

    id: int
    key: Key
    call: dict[str, Any] | None
    error: str
    quarantined_at: str
    text: str = ""
    """The call as kept: what there is to show of one that cannot be read (a torn JSONL line)."""


class Outbox:
    """A SQLite file of pending and refused store calls. Every method is one transaction.

    Each call opens its own connection, so a signal handler, the writer thread and other processes
    never share one. Errors of the file itself are `OutboxError`.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 10.0, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.timeout_s, self.clock = timeout_s, clock
        self._ready = False

    # writing

    def append(self, key: Key, calls: Sequence[dict[str, Any]]) -> None:
        """Keep calls for `key`, all or none, in order.

        One statement, outside `BEGIN`: the write lock is held only inside that one call into SQLite,
        where no signal handler runs. The guard's handler appends (its spill) on the main thread,
        maybe while that thread is itself inside an append; had the outer one held the lock, the
        handler's own would have waited for it until `timeout_s` and left its calls in memory only."""
        texts = json.dumps([encode(call) for call in calls])
        with self._transaction(begin=False) as conn:
            conn.execute(
                "INSERT INTO entries (store, owner, call, created_at) "
                "SELECT ?, ?, value, ? FROM json_each(?) ORDER BY key",
                (key.store, key.owner, now_text(), texts),
            )

    def claim(self, key: Key, limit: int = 50, lease_s: float = LEASE_S) -> list[Entry]:
        """The oldest unclaimed entries of `key` (at most `limit`), leased to the caller for `lease_s`."""
        now = self.clock()
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT id, call FROM entries WHERE store = ? AND owner = ? AND lease_until <= ? "
                "ORDER BY id LIMIT ?",
                (key.store, key.owner, now, limit),
            ).fetchall()
            leases = [(now + lease_s, row[0]) for row in found]
            conn.executemany("UPDATE entries SET lease_until = ? WHERE id = ?", leases)
        return [Entry(entry_id, decode(text), text) for entry_id, text in found]

    def ack(self, ids: Sequence[int]) -> None:
        """Delete entries the store acknowledged."""
        with self._transaction() as conn:
            conn.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i in ids])

    def release(self, ids: Sequence[int]) -> None:
        """Give claimed entries back at once (the store went down), so the next replay takes them."""
        with self._transaction() as conn:
            conn.executemany("UPDATE entries SET lease_until = 0 WHERE id = ?", [(i,) for i in ids])

    def quarantine(self, key: Key, call: dict[str, Any] | str, error: str) -> None:
        """Keep a call the store refused for good, with its error."""
        text = call if isinstance(call, str) else encode(call)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO quarantine (store, owner, call, error, quarantined_at) VALUES (?, ?, ?, ?, ?)",
                (key.store, key.owner, text, error, now_text()),
            )

    def requeue_quarantine(self, key: Key) -> int:
        """Move `key`'s quarantined calls back into the outbox (after a fix); how many were moved."""
        with self._transaction() as conn:
            moved = conn.execute(
                "INSERT INTO entries (store, owner, call, created_at) SELECT store, owner, call, ? "
                "FROM quarantine WHERE store = ? AND owner = ? ORDER BY id",
                (now_text(), key.store, key.owner),
            ).rowcount
            conn.execute("DELETE FROM quarantine WHERE store = ? AND owner = ?", (key.store, key.owner))
        return moved

    def rekey(self, store: str, old_owner: str, new_owner: str) -> int:
        """Give the entries written as `old_owner` to `new_owner`: the same identity, now better known."""
        values = (new_owner, store, old_owner)
        with self._transaction() as conn:
            moved = conn.execute(
                "UPDATE entries SET owner = ? WHERE store = ? AND owner = ?", values
            ).rowcount
            conn.execute("UPDATE quarantine SET owner = ? WHERE store = ? AND owner = ?", values)
        return moved

    def discard(self, key: Key, *, quarantined: bool = False) -> int:
        """Delete `key`'s pending calls (or its quarantined ones); how many were deleted."""
        table = "quarantine" if quarantined else "entries"
        with self._transaction() as conn:
            return conn.execute(f"DELETE FROM {table} {where(key)}", key_values(key)).rowcount

    # reading

    def pending(self, key: Key | None = None) -> dict[Key, list[dict[str, Any] | None]]:
        """The pending calls (claimed ones too) by key, oldest first; None for an unreadable one."""
        if not self.path.exists():
            return {}
        found: dict[Key, list[dict[str, Any] | None]] = {}
        with self._transaction() as conn:
            for store, owner, text in conn.execute(
                f"SELECT store, owner, call FROM entries {where(key)} ORDER BY id", key_values(key)
            ):
                found.setdefault(Key(store, owner), []).append(decode(text))
        return found

    def quarantined(self, key: Key | None = None) -> list[Refused]:
        """The refused calls (of `key`, or all), oldest first."""
        if not self.path.exists():
            return []
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT id, store, owner, call, error, quarantined_at FROM quarantine "
                f"{where(key)} ORDER BY id",
                key_values(key),
            ).fetchall()
        return [
            Refused(i, Key(store, owner), decode(text), error, at, text)
            for i, store, owner, text, error, at in rows
        ]

    def count(self, key: Key) -> int:
        """How many calls of `key` are pending."""
        if not self.path.exists():
            return 0
        with self._transaction() as conn:
            return conn.execute(f"SELECT count(*) FROM entries {where(key)}", key_values(key)).fetchone()[0]

    def leased(self, key: Key) -> int:
        """How many calls of `key` a replayer holds right now (claimed, lease not expired)."""
        if not self.path.exists():
            return 0
        with self._transaction() as conn:
            query = f"SELECT count(*) FROM entries {where(key)} AND lease_until > ?"
            return conn.execute(query, (*key_values(key), self.clock())).fetchone()[0]

    # plumbing

    @contextmanager
    def _transaction(self, *, begin: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection inside `BEGIN IMMEDIATE`, committed on success (`begin=False`: none, for a
        single statement, atomic by itself); file errors as OutboxError."""
        conn = None
        try:
            conn = self._connect()
            if begin:
                conn.execute("BEGIN IMMEDIATE")
            yield conn
            if begin:
                conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as error:
            problem = f"the predictions outbox {self.path} cannot be used: {error}{disk_full(self.path)}"
            raise OutboxError(problem) from error
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise OutboxError(f"the predictions outbox {self.path} is a directory; valid: a file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            if not self._ready:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(SCHEMA)
                self._ready = True
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()  # a full disk fails here: the file must not stay open until garbage collection
            raise
        return conn


def disk_full(path: Path) -> str:
    """What to do when the outbox's disk is full (SQLite may say only "disk I/O error"), else ""."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    if free >= FULL_BELOW_BYTES:
        return ""
    return (
        f" (the disk holding it has {free} bytes free: free some space, or set PREDICTIONS_SPOOL elsewhere)"
    )


def where(key: Key | None) -> str:
    return "" if key is None else "WHERE store = ? AND owner = ?"


def key_values(key: Key | None) -> tuple[str, ...]:
    return () if key is None else (key.store, key.owner)


def encode(call: dict[str, Any]) -> str:
    """A call as JSON text (ASCII, so a lone surrogate is kept escaped rather than refused)."""
    return json.dumps(call, default=str)


def decode(text: str) -> dict[str, Any] | None:
    """A kept call, or None when its text is not a JSON object."""
    try:
        call = json.loads(text)
    except ValueError:
        return None
    return call if isinstance(call, dict) else None


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
