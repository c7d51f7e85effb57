"""Store calls and their replay from the local outbox (`predictions.delivery.outbox`).

A call is a dict `{"op": ..., ...}` (docs/reliability.md). `deliver` sends one, splitting a refused
round down to the refused rows, which are quarantined with the store's error; `replay` sends a key's
pending calls in order, deleting each once the store took it. Upserts on the natural key and ordered
statuses make a repeat harmless, so at-least-once is exactly-once in effect.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predictions.delivery.outbox import LEASE_S, Key, Outbox
from predictions.errors import (
    SESSION_REFUSALS,
    AuthError,
    JobDeletedError,
    OutboxError,
    StoreError,
    is_transient,
)
from predictions.store.records import PredictionRow, RolloutRow, SeriesPoint
from predictions.store.settings import StoreSettings

logger = logging.getLogger(__name__)

OPS = ("write_predictions", "write_rollouts", "write_series", "start_job", "finish_job")
ROW_OPS = {"write_predictions": PredictionRow, "write_rollouts": RolloutRow, "write_series": SeriesPoint}
"""Calls that carry rows, and their row type: a refused one is split down to the refused rows."""
NOT_ARGUMENTS = ("v", "op", "job_id", "rows")
"""Keys of a kept call that are not arguments of the store method."""


# where


def outbox_path(store_id: str) -> Path:
    """The outbox of a store (`Key.store`), where the settings put it (`StoreSettings.outbox_path`)."""
    return StoreSettings.from_env().outbox_path(store_id)


# the calls


def send(store: Any, call: dict[str, Any]) -> None:
    """Make one store call from its kept form."""
    details = {key: value for key, value in call.items() if key not in NOT_ARGUMENTS}
    if call["op"] == "write_predictions":
        store.write_predictions([PredictionRow(**row) for row in call["rows"]])
    elif call["op"] == "write_rollouts":
        store.write_rollouts([RolloutRow(**row) for row in call["rows"]])
    elif call["op"] == "write_series":
        store.write_series([SeriesPoint(**point) for point in call["rows"]])
    elif call["op"] == "start_job":
        store.start_job(call["job_id"], **details)
    else:
        store.finish_job(call["job_id"], **details)


def malformed(call: Any) -> str | None:
    """Why a kept call cannot be sent as it is (a wrong type anywhere), or None when it can."""
    if not isinstance(call, dict) or call.get("op") not in OPS:
        return f"not a store call (op must be one of {', '.join(OPS)})"
    if call["op"] not in ROW_OPS:
        return None if isinstance(call.get("job_id"), str) else "job_id is not a string"
    rows, row_type = call.get("rows"), ROW_OPS[call["op"]]
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        return "rows is not a non-empty list of row objects"
    try:
        [row_type(**row) for row in rows]
    except TypeError as error:
        return f"a row does not fit {row_type.__name__}: {error}"
    return None


@dataclass
class Dropped:
    """Calls the store dropped because their job was deleted on the dashboard (`JobDeletedError`): done
    with, not failed. Rows, and calls without rows (a start, a finish), by job: one INFO line a job."""

    rows: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)

    def add(self, call: dict[str, Any]) -> None:
        job, rows = str(call_job(call)), len(call_rows(call))
        self.rows[job] += rows  # a job's key even with no row: it names the job
        self.statuses[job] += 0 if rows else 1

    def line(self, job: str) -> str:
        """ "job 'j' was deleted on the dashboard: 6 rows of its run dropped, and 2 status call(s)"."""
        text = f"job {job!r} was deleted on the dashboard: {self.rows[job]} rows of its run dropped"
        return text + (f", and {self.statuses[job]} status call(s)" if self.statuses[job] else "")

    def update(self, other: Dropped) -> None:
        """Add another's counts (a second replay's)."""
        self.rows.update(other.rows)
        self.statuses.update(other.statuses)

    def log(self) -> None:
        for job in self.rows:
            logger.info("predictions: %s", self.line(job))


def deliver(store: Any, call: Any, outbox: Outbox, key: Key, dropped: Dropped | None = None) -> int:
    """Send a call; when the store refuses it for good, split it down to the refused rows and quarantine
    them, storing the rest. Returns how many refused rows not even the quarantine could keep (0 unless
    the outbox cannot be written): those are named, with their data, in one ERROR line for the call.
    A call of a deleted job's run (`JobDeletedError`) is done with: counted in `dropped` (logged at
    once when none is given). Raises only outages (transient) and `AuthError` (the caller keeps the call)."""
    lost: list[tuple[Any, str]] = []
    problem: OutboxError | None = None
    here = Dropped() if dropped is None else dropped
    for part, error in refusals(store, call, here):
        failure = keep_refused(outbox, key, part, error)
        if failure is not None:
            problem = failure
            lost.append((part, error))
    if lost:
        logger.error(
            "predictions store refused %s for good and the quarantine cannot be written (%s): kept nowhere "
            "but here: %r",
            "; ".join(f"{describe(part)}: {error}" for part, error in lost),
            problem,
            [part for part, _ in lost],
        )
    if dropped is None:
        here.log()
    return sum(len(call_rows(part)) for part, _ in lost)


def refusals(store: Any, call: Any, dropped: Dropped) -> list[tuple[Any, str]]:
    """Send a call, split down to the rows the store refuses for good; returns each refused part with
    the store's error (none when all was stored). A deleted job's call goes to `dropped` (split by
    job first, where it holds rows of several). Raises outages and `AuthError`."""
    problem = malformed(call)
    if problem is not None:
        return [(call, f"malformed call: {problem}")]
    try:
        send(store, call)
        return []
    except JobDeletedError as error:
        refusal: Exception = error
    except Exception as error:
        if is_transient(error) or isinstance(error, AuthError):
            raise
        refusal = error
    if isinstance(refusal, JobDeletedError):
        return _drop(store, call, dropped)
    rows = call.get("rows") or []
    if call["op"] not in ROW_OPS or len(rows) <= 1:
        return [(call, f"{type(refusal).__name__}: {refusal}")]
    half = len(rows) // 2
    first, second = {**call, "rows": rows[:half]}, {**call, "rows": rows[half:]}
    return refusals(store, first, dropped) + refusals(store, second, dropped)


def keep_refused(outbox: Outbox, key: Key, call: Any, error: str) -> OutboxError | None:
    """Quarantine a refused call and say so; the outbox's error when the quarantine cannot be written
    (`deliver` then names the call in its log line)."""
    text = call if isinstance(call, dict | str) else repr(call)
    try:
        outbox.quarantine(key, text, error)
    except OutboxError as problem:
        return problem
    where = outbox.path
    logger.error("predictions store refused %s for good: %s; quarantined in %s", describe(call), error, where)
    return None


def _drop(store: Any, call: dict[str, Any], dropped: Dropped) -> list[tuple[Any, str]]:
    """A call the store dropped for a deleted job: done with when it is about one job; one holding rows
    of several jobs (or owners) is sent again job by job, so the others' rows are stored."""
    parts: dict[tuple[Any, Any], list[Any]] = {}
    for row in call_rows(call):
        parts.setdefault((row.get("job_id"), row.get("user_id")), []).append(row)
    if len(parts) <= 1:
        dropped.add(call)
        return []
    return [found for rows in parts.values() for found in refusals(store, {**call, "rows": rows}, dropped)]


def call_rows(call: Any) -> list[Any]:
    """The rows a call carries (none for a job's start or finish, or a call of the wrong shape)."""
    rows = call.get("rows") if isinstance(call, dict) and call.get("op") in ROW_OPS else None
    return rows if isinstance(rows, list) else []


def call_job(call: Any) -> str | None:
    """The job a call is about: its `job_id`, else its first row's."""
    if not isinstance(call, dict):
        return None
    rows = call_rows(call)
    job_id = call.get("job_id") or (rows[0].get("job_id") if rows and isinstance(rows[0], dict) else None)
    return job_id if isinstance(job_id, str) else None


def describe(call: Any) -> str:
    """A call as people name it: "2 row(s) of job 'j' step 8 (sample 0, 1)", "the start_job call of 'j'"."""
    if not isinstance(call, dict):
        return f"an unreadable call {str(call)[:80]!r}"
    rows = call.get("rows")
    if call.get("op") not in ROW_OPS or not isinstance(rows, list) or not rows:
        return f"the {call.get('op')} call of job {call.get('job_id')!r}"
    first = rows[0] if isinstance(rows[0], dict) else {}
    where = f"{len(rows)} row(s) of job {first.get('job_id')!r} step {first.get('step')}"
    fields = [row if isinstance(row, dict) else {} for row in rows]
    if call["op"] == "write_rollouts":
        keys = ", ".join(f"{row.get('group_index')}/{row.get('completion_index')}" for row in fields)
        return f"{where} (generation {first.get('generation')}, group/completion {keys})"
    if call["op"] == "write_series":
        return f"{where} ({', '.join(str(row.get('name')) for row in fields)})"
    return f"{where} (sample {', '.join(str(row.get('sample_index')) for row in fields)})"


# replay


@dataclass
class Replay:
    """What one replay did: calls stored (or quarantined), calls still pending, and why it stopped."""

    stored: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)
    refusal: StoreError | None = None
    """The store refused the key or cannot be written (`SESSION_REFUSALS`): replaying stopped."""
    dropped: Dropped = field(default_factory=Dropped)
    """Calls of deleted jobs' runs the store dropped (counted in `stored`: done with, acknowledged)."""


def replay(store: Any, outbox: Outbox, key: Key, *, batch: int = 20, lease_s: float = LEASE_S) -> Replay:
    """Send `key`'s pending calls, oldest first, each deleted once stored; an outage or a refused key
    gives the claimed rest back and stops; one INFO line for each deleted job whose calls were dropped.
    Raises OutboxError when the outbox cannot be used."""
    result = Replay()
    try:
        _replay(store, outbox, key, batch, lease_s, result)
    finally:
        result.dropped.log()
    return result


def _replay(store: Any, outbox: Outbox, key: Key, batch: int, lease_s: float, result: Replay) -> None:
    while entries := outbox.claim(key, batch, lease_s):
        for position, entry in enumerate(entries):
            try:
                call = entry.call if entry.call is not None else entry.text
                deliver(store, call, outbox, key, result.dropped)
            except Exception as error:
                outbox.release([left.id for left in entries[position:]])
                logger.warning("predictions store unavailable during replay of %s: %s", outbox.path, error)
                result.errors.append(str(error))
                result.refusal = error if isinstance(error, SESSION_REFUSALS) else None
                result.pending = outbox.count(key)
                return
            outbox.ack([entry.id])
            result.stored += 1
    result.pending = outbox.count(key)  # entries another replayer holds right now
