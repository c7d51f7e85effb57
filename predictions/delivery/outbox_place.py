"""Where a store's outbox lives when its own place cannot be written, and every place to look for it.

A SQLite store's outbox is beside the file by default (`StoreSettings.outbox_path`), so a store on a
read-only mount (a results folder shared read-only, a snapshot) or in a folder the user may not
write has no outbox there: its rows could only be held in memory and lost at the end of the run.
Such a run keeps them in a fallback outbox in the user cache folder instead, one file per store
(named after the store's identity, `identity.sqlite_identity`, so two store files never share one).
The writer and `python -m predictions spool` look there too, so nobody has to name it.

Only the default place falls back: a `PREDICTIONS_SPOOL` the user set is theirs, and one that cannot
be written fails loudly. A full disk is no reason either: the cache is most likely on the same disk,
and the outbox's error already says how much space is free.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from predictions.store.settings import StoreSettings

FALLBACK_FOLDER = "outbox"
"""The folder of fallback outboxes, inside `<user cache dir>/predictions`."""
CAUSES = "a read-only filesystem, or its permissions"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a run keeps its outbox, and the default place it could not use (None when it uses it)."""

    path: Path
    instead_of: Path | None = None
    why: str = ""
    """Why `instead_of` could not be used."""


def choose(store_id: str) -> Place:
    """The outbox a run of this store (`Key.store`) uses: the configured place, or the fallback where
    the default beside a SQLite file cannot be written and the fallback can."""
    settings = StoreSettings.from_env()
    configured = settings.outbox_path(store_id)
    if settings.outbox or not store_id.startswith("sqlite:"):
        return Place(configured)
    why = cannot_write(configured)
    fallback = fallback_path(store_id)
    if why is None or cannot_write(fallback) is not None:
        return Place(configured)
    return Place(fallback, configured, why)


def places(store_id: str) -> list[Path]:
    """Every outbox that may hold this store's calls: the configured place first, then the fallback
    where one exists (a run kept calls there while the configured place could not be written)."""
    configured = StoreSettings.from_env().outbox_path(store_id)
    if not store_id.startswith("sqlite:"):
        return [configured]
    fallback = fallback_path(store_id)
    return [configured] + ([fallback] if fallback != configured and fallback.is_file() else [])


def fallback_path(store_id: str) -> Path:
    """`<user cache dir>/predictions/outbox/<name>-<hash of the store>.outbox.db`."""
    from platformdirs import user_cache_path

    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(store_id.removeprefix("sqlite:")).stem)[:40]
    digest = hashlib.sha256(store_id.encode()).hexdigest()[:16]
    return user_cache_path("predictions") / FALLBACK_FOLDER / f"{name}-{digest}.outbox.db"


def cannot_write(path: Path) -> str | None:
    """Why no outbox can be kept at `path`, or None when one can: the file, and its folder (WAL needs
    its `-wal` and `-shm` files beside it), or the nearest folder that exists. `os.access` sees a
    read-only mount even for root; a full disk it does not see."""
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} cannot be written ({CAUSES})"
    folder = next((parent for parent in path.parents if parent.exists()), None)
    if folder is not None and not os.access(folder, os.W_OK):
        return f"{folder} cannot be written ({CAUSES})"
    return None
