"""Who a store call is for and written as, for the local outbox: computed without the network.

An outbox entry is keyed by the store (`sqlite:<absolute path>`, `supabase:<url>`) and the owner it
was written as (`user <uuid>`, or `ingest key <fingerprint>` while the key's user is not known yet),
so that a replay under another identity never sends it. The fingerprint is a hash of the key: the
secret itself is never written down.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

LOCAL_OWNER = "local user"
"""The owner of every call to an embedded SQLite store (rows keep their own `user_id`)."""


def sqlite_identity(path: str | Path) -> tuple[str, str]:
    return f"sqlite:{Path(path).resolve()}", LOCAL_OWNER


def supabase_identity(
    url: str,
    *,
    role: str,
    ingest_key: str | None = None,
    ingest_owner: str | None = None,
    session_user: str | None = None,
    user_id: str | None = None,
) -> tuple[str, str]:
    """The store and owner of a Supabase store's writes: the key's user, the signed-in or configured one."""
    store = f"supabase:{url.rstrip('/')}"
    if ingest_owner or session_user or (user_id and not ingest_key):
        return store, f"user {ingest_owner or session_user or user_id}"
    if ingest_key:
        return store, ingest_key_owner(ingest_key)
    return store, f"{role} key, no user"


def ingest_key_owner(ingest_key: str) -> str:
    """The owner name of an ingest key whose user is not known yet (the store could not be asked)."""
    return f"ingest key {hashlib.sha256(ingest_key.encode()).hexdigest()[:16]}"
