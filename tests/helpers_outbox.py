"""Reading and replaying a local outbox in tests, the way the writer and `spool replay` do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from predictions.delivery.outbox import Key, Outbox
from predictions.delivery.spool import Replay, replay


def key_of(store: Any) -> Key:
    return Key(*store.outbox_key())


def kept(path: Path, key: Key | None = None) -> list[dict[str, Any] | None]:
    """Every pending call in the outbox at `path` (of `key`, or of every key), oldest first."""
    return [call for calls in Outbox(path).pending(key).values() for call in calls]


def ops(path: Path) -> list[str]:
    return [call["op"] for call in kept(path)]


def refused(path: Path) -> list[Any]:
    return Outbox(path).quarantined()


def replay_into(store: Any, path: Path) -> Replay:
    """Replay the store's own calls from the outbox at `path`."""
    return replay(store, Outbox(path), key_of(store))
