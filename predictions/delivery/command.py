"""`python -m predictions spool`: list, replay or discard what the local outbox keeps for a store.

The store and its outboxes are the ones a training run would use (`open_store()`'s environment and
`.env`: its outbox, and the fallback a run used where that could not be written, `outbox_place`), or
the outbox file named with `--spool`. `list` shows every owner's calls; `replay` and
`discard` act on the calls of the configured identity only (a replay never sends another owner's
calls). A Supabase database older than this package's migrations replays nothing (its rows would be
refused for good) and names the fix. Exit status 0 when nothing of that identity is left pending, 1
otherwise, 2 on an error.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

from predictions.delivery import legacy, outbox_place
from predictions.delivery.outbox import Key, Outbox
from predictions.delivery.spool import Replay, describe, replay
from predictions.errors import ConfigError, PredictionsError
from predictions.store.protocol import schema_problem_of

ACTIONS = ("list", "replay", "discard")
OTHERS_WAIT_S = 30.0
"""How long `replay` waits for calls another replayer holds (a training run replaying the same outbox)."""


def add_parser(commands: Any) -> None:
    spool = commands.add_parser("spool", help="list, replay or discard the calls the local outbox keeps")
    spool.add_argument("action", nargs="?", choices=ACTIONS, default="list", help="default: list")
    spool.add_argument("--spool", type=Path, default=None, help="the outbox file (default: the store's own)")
    spool.add_argument(
        "--quarantine",
        action="store_true",
        help="replay: also retry the quarantined calls (after a fix); discard: discard those instead",
    )
    spool.add_argument(
        "--adopt",
        action="store_true",
        help=f"replay: also send, as yours, calls of an old JSONL spool kept as '{legacy.UNKNOWN_OWNER}'",
    )


def run(options: argparse.Namespace) -> int:
    """Run one action; a store that cannot be opened or an outbox that cannot be read is reported."""
    try:
        store = _open() if options.action == "replay" else None
        if store is not None and (problem := schema_problem_of(store)) is not None:
            raise ConfigError(f"{problem}; the kept calls stay pending")  # else each row refused for good
        key = Key(*(store.outbox_key() if store is not None else _key_from_env()))
        outboxes = [Outbox(path) for path in ([options.spool] if options.spool else in_use(key.store))]
        legacy.migrate(outboxes[0], key)
        statuses = []
        for outbox in outboxes:
            if len(outboxes) > 1 and options.action != "list":
                print(f"outbox {outbox.path}:")
            if options.action == "replay":
                statuses.append(replay_now(store, outbox, key, options))
            elif options.action == "discard":
                statuses.append(discard(outbox, key, options.quarantine))
            else:
                statuses.append(show(outbox, key))
        return max(statuses)
    except PredictionsError as error:
        print(f"error: {error}")
        return 2


def in_use(store_id: str) -> list[Path]:
    """The store's outboxes that exist (its own and a fallback), or its own where none does yet."""
    places = outbox_place.places(store_id)
    return [path for path in places if path.exists()] or places[:1]


def show(outbox: Outbox, key: Key) -> int:
    """Print the pending calls per store and owner, and the quarantined ones with their errors."""
    pending = outbox.pending()
    print(f"outbox {outbox.path}: {'empty' if not pending else ''}".rstrip())
    for other, calls in pending.items():
        mine = " (you)" if other == key else ""
        print(f"  {other.store} as {other.owner}{mine}: {summary(calls)}")
    refused = outbox.quarantined()
    print(f"quarantine: {len(refused)} call(s)")
    for call in refused:
        shown = describe(call.call if call.call is not None else call.text)  # a torn line: its text
        print(f"  {call.key.store} as {call.key.owner}: {shown}: {call.error}")
    return 1 if key in pending else 0


def replay_now(store: Any, outbox: Outbox, key: Key, options: argparse.Namespace) -> int:
    """Replay the configured identity's calls now (quarantined and adopted ones too, when asked)."""
    for alias in store.outbox_aliases():
        outbox.rekey(key.store, alias, key.owner)
    if options.adopt:
        outbox.rekey(key.store, legacy.UNKNOWN_OWNER, key.owner)
    if options.quarantine:
        outbox.requeue_quarantine(key)
    result = replay(store, outbox, key)
    waited = time.monotonic() + OTHERS_WAIT_S
    while result.pending and not result.errors and outbox.leased(key) and time.monotonic() < waited:
        time.sleep(0.5)  # another replayer (a training run, another `spool replay`) holds them: see it end
        again = replay(store, outbox, key)
        again.dropped.update(result.dropped)
        result = Replay(
            result.stored + again.stored, again.pending, again.errors, again.refusal, again.dropped
        )
    counts = f"{result.stored} call(s) stored, {result.pending} still pending"
    held = outbox.leased(key) if result.pending else 0
    if held:
        counts += f" ({held} being replayed right now by another process: a training run or another replay)"
    print(f"{store.description} as {key.owner}: {counts}")
    for job in result.dropped.rows:
        print(result.dropped.line(job))
    if result.errors:
        print(f"stopped: {result.errors[-1]}")
    refused = outbox.quarantined(key)
    if refused:
        print(f"refused for good, kept in the quarantine: {len(refused)} call(s)")
    others = {other: calls for other, calls in outbox.pending().items() if other != key}
    for other, calls in others.items():
        print(f"not yours, left waiting: {other.store} as {other.owner}: {summary(calls)}")
    return 0 if not result.pending else 1


def discard(outbox: Outbox, key: Key, quarantined: bool) -> int:
    count = outbox.discard(key, quarantined=quarantined)
    which = "quarantined" if quarantined else "pending"
    print(f"discarded {count} {which} call(s) of {key.store} as {key.owner}")
    return 0


def summary(calls: list[dict[str, Any] | None]) -> str:
    """'3 call(s): write_predictions x2 (24 rows), finish_job x1; jobs run-1, run-2' or 'empty'."""
    if not calls:
        return "empty"
    ops = Counter(str(call.get("op")) if call else "unreadable" for call in calls)
    rows = sum(len(call["rows"]) for call in calls if call and isinstance(call.get("rows"), list))
    jobs = sorted({str(job_of(call)) for call in calls if call})
    counted = ", ".join(f"{op} x{count}" for op, count in ops.items())
    return f"{len(calls)} call(s): {counted} ({rows} rows); jobs {', '.join(jobs)}"


def job_of(call: dict[str, Any]) -> str | None:
    rows = call.get("rows")
    first = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    return call.get("job_id") or first.get("job_id")


def _open() -> Any:
    from predictions.store import open_store

    return open_store()


def _key_from_env() -> tuple[str, str]:
    from predictions.store.settings import StoreSettings

    return StoreSettings.from_env().outbox_key()
