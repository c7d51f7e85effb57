"""`python -m predictions spool`: list, replay or discard what is pending for the configured store.

The store and its spool are the ones a training run would use (`open_store()`'s environment and
`.env`), or the spool named with `--spool`. Exit status 0 when nothing is left pending, 1 otherwise.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from predictions.delivery.spool import (
    append_spool,
    corrupt_path,
    quarantine_path,
    read_calls,
    replay_spool,
    spool_path,
)
from predictions.errors import PredictionsError

ACTIONS = ("list", "replay", "discard")
QUARANTINE_KEYS = ("error", "quarantined_at")


def add_parser(commands: Any) -> None:
    spool = commands.add_parser("spool", help="list, replay or discard spooled and quarantined store calls")
    spool.add_argument("action", nargs="?", choices=ACTIONS, default="list", help="default: list")
    spool.add_argument("--spool", type=Path, default=None, help="the spool file (default: the store's own)")
    spool.add_argument(
        "--quarantine",
        action="store_true",
        help="replay: also retry the quarantined calls (after a fix); discard: discard those instead",
    )


def run(options: argparse.Namespace) -> int:
    """Run one action; a store that cannot be opened is reported, not raised."""
    try:
        store = _open() if options.action == "replay" else None
        path = options.spool or spool_path(store)
        if options.action == "replay":
            return replay(store, path, options.quarantine)
        if options.action == "discard":
            return discard(quarantine_path(path) if options.quarantine else path)
        return show(path)
    except PredictionsError as error:
        print(f"error: {error}")
        return 2


def show(path: Path) -> int:
    """Print what the spool, the quarantine and the unreadable lines hold, per job and call."""
    calls, bad = read_calls(path)
    refused, refused_bad = read_calls(quarantine_path(path))
    print(f"spool {path}: {summary(calls)}")
    print(f"quarantine {quarantine_path(path)}: {summary(refused)}")
    for call in refused:
        print(f"  {describe_refusal(call)}")
    unreadable = len(bad) + len(refused_bad) + _line_count(corrupt_path(path))
    print(f"unreadable lines: {unreadable} (set aside in {corrupt_path(path)})")
    return 0 if not calls else 1


def replay(store: Any, path: Path, with_quarantine: bool) -> int:
    """Replay the spool now (and the quarantine, moved back into it, when asked)."""
    if with_quarantine and quarantine_path(path).exists():
        refused, _ = read_calls(quarantine_path(path))
        cleaned = [{k: v for k, v in call.items() if k not in QUARANTINE_KEYS} for call in refused]
        if append_spool(path, cleaned):
            quarantine_path(path).unlink()
    result = replay_spool(store, path)
    print(f"{store.description}: {result.stored} call(s) stored, {result.pending} still pending")
    if result.corrupt:
        print(f"{result.corrupt} unreadable line(s) set aside in {corrupt_path(path)}")
    kept = quarantine_path(path)
    if kept.exists():
        print(f"refused for good, kept in {kept}: {summary(read_calls(kept)[0])}")
    return 0 if not result.pending else 1


def discard(path: Path) -> int:
    calls, bad = read_calls(path)
    if path.exists():
        path.unlink()
    print(f"discarded {path}: {summary(calls)}, {len(bad)} unreadable line(s)")
    return 0


def summary(calls: list[dict[str, Any]]) -> str:
    """'3 call(s): write_predictions x2 (24 rows), finish_job x1; jobs run-1, run-2' or 'empty'."""
    if not calls:
        return "empty"
    ops = Counter(call["op"] for call in calls)
    rows = sum(len(call.get("rows") or []) for call in calls)
    jobs = sorted({str(job_of(call)) for call in calls})
    counted = ", ".join(f"{op} x{count}" for op, count in ops.items())
    return f"{len(calls)} call(s): {counted} ({rows} rows); jobs {', '.join(jobs)}"


def job_of(call: dict[str, Any]) -> str | None:
    return call.get("job_id") or (call.get("rows") or [{}])[0].get("job_id")


def describe_refusal(call: dict[str, Any]) -> str:
    from predictions.delivery.spool import describe

    return f"{describe(call)}: {call.get('error')}"


def _open() -> Any:
    from predictions.store import open_store

    return open_store()


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8", errors="replace").splitlines()) if path.exists() else 0
