"""One-time move of a JSONL spool (the format before the outbox) into the outbox, losing nothing.

Spooled lines become pending entries, quarantined lines quarantined entries, unreadable lines
quarantined entries with the reason. A file is deleted only after its lines were committed to the
outbox; a crash in between imports it again, which a replay makes harmless (upserts). JSONL lines
never recorded an owner: those of the embedded store are the local user's, those of a Supabase
project wait under `UNKNOWN_OWNER` until someone replays them as theirs (`spool replay --adopt`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from predictions.delivery.outbox import Key, Outbox
from predictions.errors import OutboxError

logger = logging.getLogger(__name__)

UNKNOWN_OWNER = "unknown owner (spooled before owners were recorded)"
SQLITE_HEADER = b"SQLite format 3\x00"
QUARANTINE_KEYS = ("v", "error", "quarantined_at")


def legacy_spools(store_id: str, outbox_path: Path) -> list[Path]:
    """Where a JSONL spool of this store may lie: beside the SQLite file, per Supabase host, and a file
    PREDICTIONS_SPOOL named that is still JSONL (set aside as `<name>.legacy` first)."""
    if store_id.startswith("sqlite:"):
        database = Path(store_id.removeprefix("sqlite:"))
        spool = database.with_name(f"{database.stem}.spool.jsonl")
    else:
        from platformdirs import user_cache_path

        host = urlsplit(store_id.removeprefix("supabase:")).netloc
        name = re.sub(r"[^A-Za-z0-9.-]", "_", host)
        spool = user_cache_path("predictions") / "spool" / f"{name}.spool.jsonl"
    return [spool, outbox_path.with_name(f"{outbox_path.name}.legacy")]


def migrate(outbox: Outbox, key: Key) -> int:
    """Move every JSONL spool of `key.store` into the outbox; how many lines were moved."""
    set_aside_jsonl_outbox(outbox.path)
    owner = key.owner if key.store.startswith("sqlite:") else UNKNOWN_OWNER
    moved = 0
    for spool in legacy_spools(key.store, outbox.path):
        for path in related_files(spool):
            refused = path.name.endswith(".quarantine.jsonl")
            moved += import_file(outbox, Key(key.store, owner), path, refused=refused)
    if moved:
        logger.warning("moved %s line(s) of the old JSONL spool into the outbox %s", moved, outbox.path)
    return moved


def set_aside_jsonl_outbox(path: Path) -> None:
    """A file at the outbox's path that is a JSONL spool (PREDICTIONS_SPOOL=x.jsonl) becomes `x.legacy`."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError:
        return
    if head and head != SQLITE_HEADER:
        os.replace(path, path.with_name(f"{path.name}.legacy"))


def related_files(spool: Path) -> list[Path]:
    """The spool, its claimed `.replaying` files, its quarantine and its set-aside unreadable lines."""
    base = spool.name.removesuffix(".jsonl").removesuffix(".spool")
    found = [spool, *spool.parent.glob(f"{glob.escape(spool.name)}.*.replaying")]
    found += [spool.with_name(f"{base}.quarantine.jsonl"), spool.with_name(f"{spool.name}.corrupt")]
    return [path for path in found if path.is_file()]


def import_file(outbox: Outbox, key: Key, path: Path, *, refused: bool = False) -> int:
    """Commit a JSONL file's lines to the outbox, then delete it."""
    pending, kept = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            call = parse(line)
            if call is None or path.name.endswith(".corrupt"):
                kept.append((line, "unreadable line of the old JSONL spool"))
            elif refused:
                kept.append((strip(call), str(call.get("error", "refused"))))
            else:
                pending.append(strip(call))
    try:
        if pending:
            outbox.append(key, pending)
        for call, error in kept:
            outbox.quarantine(key, call, error)
    except OutboxError:
        logger.exception("cannot move the old JSONL spool %s into the outbox; it stays where it is", path)
        return 0
    path.unlink()
    return len(pending) + len(kept)


def parse(line: str) -> dict[str, Any] | None:
    try:
        call = json.loads(line)
    except ValueError:
        return None
    return call if isinstance(call, dict) else None


def strip(call: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in call.items() if name not in QUARANTINE_KEYS}
