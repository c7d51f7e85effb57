"""Non-blocking writes: the training loop hands rows over and goes on; a thread does the rest.

The thread upserts each round in one store call. An outage (`is_transient`) is retried with backoff,
then the call goes to the local outbox (`delivery.outbox`), which is replayed at start, retried with
growing pauses while the store is down, and replayed again when it answers. A refusal for good is
split down to the refused rows, which are quarantined; the rest is stored. A refused key (`AuthError`)
or a store that cannot be written here (`ReadOnlyStoreError`) is one decision: writing stops for the
session and every call goes to the outbox. Where the outbox
cannot be written (read-only, full disk) calls still go straight to a store that answers, and those
that can go nowhere are held in memory, retried, and named in an ERROR line. No method raises.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import queue
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from predictions.delivery import legacy, outbox_place
from predictions.delivery.outbox import Key, Outbox, now_text
from predictions.delivery.pieces import in_pieces
from predictions.delivery.spool import Dropped, Replay, call_job, call_rows, deliver, describe, replay
from predictions.delivery.worker import Worker
from predictions.errors import (
    SESSION_REFUSALS,
    AuthError,
    ConfigError,
    JobDeletedError,
    OutboxError,
    StoreError,
)
from predictions.store.protocol import Store
from predictions.store.records import PredictionRow, RolloutRow, SeriesPoint
from predictions.store.settings import StoreSettings
from predictions.store.sqlite_read_only import why_read_only
from predictions.store.storable import Changes, storable_job, storable_rollout, storable_row, storable_value

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 300.0
"""How long train end waits for the store before it leaves what is still queued in the outbox."""
OUTBOX_READ_ONLY = (
    "; the outbox's folder cannot be written either: set PREDICTIONS_SPOOL to a file in a writable "
    "folder to keep the rows"
)
MAX_PAUSE_S = 60.0
"""The longest pause between two tries of a store that is down."""
_STOP = object()


class Writer:
    """Queues store calls for a background thread; `close()` waits for them at train end.

    `store` may be None with `open_store` given: the thread opens the store itself, trying again
    while it cannot, and keeps calls in the outbox meanwhile. `spool_path` is the outbox file
    (default: the store's own, or its fallback where that cannot be written, `outbox_place`: both are
    replayed); `user_id` the run's owner, where it has its own;
    `run_number` the run's place among its job's runs (`Store.start_job`), where it is known.
    """

    def __init__(
        self,
        store: Store | None,
        *,
        spool_path: str | os.PathLike[str] | None = None,
        retries: int = 3,
        backoff_s: float = 0.5,
        open_store: Callable[[], Store] | None = None,
        user_id: str | None = None,
        run_number: int | None = None,
    ):
        self.store, self._open_store, self.user_id = store, open_store, user_id
        self.run_number = run_number
        """This run's place among its job's runs (1 fresh, one more for each resume); None: unknown."""
        self.key = Key(*(store.outbox_key(user_id) if store is not None else key_from_env(user_id)))
        place = outbox_place.Place(Path(spool_path)) if spool_path else outbox_place.choose(self.key.store)
        self.spool_path = place.path
        self.outbox = Outbox(self.spool_path)
        self._elsewhere = [] if spool_path else self._other_outboxes()
        """Other outboxes of this store that an earlier run kept calls in (a fallback): replayed too."""
        if place.instead_of is not None:
            self._say_fallback(place)
        self.retries, self.backoff_s = retries, backoff_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # put() is safe in a signal handler
        self._down = store is None
        self._pause_s, self._next_try = backoff_s, 0.0
        self._inflight: dict[str, Any] | None = None
        self._held: list[dict[str, Any]] = []
        """Calls neither the store nor the outbox took: retried while the process lives."""
        self._held_lock = threading.RLock()  # a signal handler may spill while the main thread holds it
        self._lost: collections.Counter[str] = collections.Counter()
        """Rows refused for good that not even the quarantine could keep, by job."""
        self._missing_told: dict[str, int] = {}
        """Each job's missing rows as the store last recorded them (`Store.record_missing`)."""
        self._dropped = Dropped()
        """This run's calls the store dropped since their job was deleted on the dashboard, by job."""
        self._dropped_told: dict[str, str] = {}
        self.refusal: StoreError | None = None
        """Set when the store refused the credentials or cannot be written (`SESSION_REFUSALS`): writing
        stopped for this session."""
        self._migrated = False
        self.run_id = uuid.uuid4().hex
        """This process run's id: the store orders job statuses by run and sequence, not by clock."""
        self._status_seq = itertools.count(1)
        self.closed = False
        self._close_by = 0.0
        """When `close()` stops waiting (monotonic): until then calls held in memory are still retried."""
        self._spilled = False
        self._thread = Worker(self._run, name="predictions-writer")  # a signal handler may close it again
        self._thread.start()

    # called from the training loop: never blocks, never raises

    def write(self, rows: Sequence[PredictionRow]) -> None:
        """Queue one round's rows for a single bulk upsert."""
        try:
            call = {"op": "write_predictions", "rows": self._marked(storable_row(row) for row in rows)}
        except Exception:
            logger.exception("predictions writer got rows it cannot store: %r", rows)
            return
        self._put(call)

    def write_rollouts(self, rows: Sequence[RolloutRow]) -> None:
        """Queue one generation's rollouts (an RL trainer's) for a single bulk upsert. Called by the
        recorder's builder thread: made storable in pieces (`in_pieces`), so the training thread never
        waits long for the interpreter lock meanwhile."""
        try:
            stored = self._marked(storable_rollout(row) for piece in in_pieces(rows) for row in piece)
            call = {"op": "write_rollouts", "rows": stored}
        except Exception:
            logger.exception("predictions writer got rollouts it cannot store: %r", rows)
            return
        self._put(call)

    def write_series(self, points: Sequence[SeriesPoint]) -> None:
        """Queue values the Trainer logged (loss, learning rate) for a single bulk upsert."""
        if points:
            self._put({"op": "write_series", "job_id": points[0].job_id, "rows": self._marked(points)})

    def start_job(self, job_id: str, **details: Any) -> None:
        """Queue the job's start; its id, name, model and config made storable (`storable_job`)."""
        try:
            job_id, details = storable_job(job_id, details)
        except Exception:
            logger.exception("predictions writer could not make the start of job %r storable", job_id)
        self._put({"op": "start_job", "job_id": job_id, **self._owner(), **details, **self._status_order()})

    def finish_job(self, job_id: str, status: str = "finished", stop_reason: dict | None = None) -> None:
        """Queue the job's last status; a `stopped` job's reason goes with it, storable (another
        callback's reason carries the user's metric and callback names: any text)."""
        job_id, _ = storable_job(job_id, {})
        call = {
            "op": "finish_job",
            "job_id": job_id,
            "status": status,
            **self._owner(),
            **self._status_order(),
        }
        if stop_reason is not None:
            call["stop_reason"] = storable_value(stop_reason, Changes())
        self._put(call)

    def _marked(self, rows: Iterable[Any]) -> list[dict[str, Any]]:
        """Rows as a call keeps them, each marked with this run as the status calls are: the store drops
        the writes of a deleted job's runs (`Store.delete_job`)."""
        marked = []
        for row in rows:
            fields = row.as_dict()
            fields["run"] = self.run_id
            marked.append(fields)
        return marked

    def _owner(self) -> dict[str, Any]:
        """The run's own owner, written into a job call so that a replay in another process (whose store
        may be configured for someone else) sends it as the owner it was written as; rows carry theirs."""
        return {"user_id": self.user_id} if self.user_id is not None else {}

    def _status_order(self) -> dict[str, Any]:
        """What orders a status call: this run, its number among the job's runs and its next sequence
        number (`Store.start_job`); `at` is kept for the record and for stores of an older version."""
        order = {"at": now_text(), "run": self.run_id, "seq": next(self._status_seq)}
        return order if self.run_number is None else order | {"run_number": self.run_number}

    def spill(self) -> int:
        """Move every queued call (and the one in flight) into the outbox now, in one transaction;
        the thread then replays them. For a signal handler: after this, nothing is only in memory, and
        every later call goes to the outbox too, behind them, so that the replay keeps their order (a
        round kept unscored, then its scored rows)."""
        self._spilled = True
        calls = self._drain()
        if self._inflight is not None:
            calls.insert(0, self._inflight)  # stored twice at worst: upserts make that harmless
        self._keep(calls)
        return len(calls)

    def close(self, timeout_s: float | None = None) -> None:
        """Wait for queued calls to be stored or kept; past the timeout, leave what is left in the outbox."""
        timeout_s = CLOSE_TIMEOUT_S if timeout_s is None else timeout_s
        if not self.closed:
            self.closed = True
            self._close_by = time.monotonic() + max(0.0, timeout_s - min(5.0, timeout_s / 4))
            self._queue.put(_STOP)
        if not self._thread.wait(timeout_s):
            left = self.spill()
            logger.warning(
                "predictions store still busy after %ss; %s queued call(s) written to the outbox %s",
                timeout_s,
                left,
                self.spool_path,
            )
        self._report_held()

    @property
    def done(self) -> bool:
        """Closed and its thread ended: nothing will touch the store through this writer again."""
        return self.closed and self._thread.finished

    def close_store(self) -> None:
        """Close the store, for a run that opened it itself or let this writer open it (not a store the
        user gave), once the writer is done with it: each `train()` call kept a connection and two open
        files (a search of 500 trials, or a notebook's 500 runs, past a usual limit of 1,024). A writer
        still stuck in a store call (its calls kept in the outbox) keeps it."""
        store = self.store
        if store is None or not self.done:
            return
        try:
            store.close()
        except Exception:  # the job is stored: a failing close costs only the connection
            logger.exception("predictions: could not close the store %s", store.description)

    def _put(self, call: dict[str, Any]) -> None:
        if self.closed or self._spilled:
            if self.closed:
                logger.warning("predictions writer is closed; a %s call goes to the outbox", call.get("op"))
            self._keep([call])
            return
        try:
            self._queue.put(call)
        except Exception:  # a full or broken queue must not reach the training loop
            logger.exception("predictions writer could not queue a %s call", call.get("op"))

    def _drain(self) -> list[dict[str, Any]]:
        calls = []
        while True:
            try:
                call = self._queue.get_nowait()
            except queue.Empty:
                return calls
            if call is _STOP:
                self._queue.put(_STOP)  # the thread still needs to see it
                return calls
            calls.append(call)

    # the outbox

    def _other_outboxes(self) -> list[Outbox]:
        places = outbox_place.places(self.key.store)
        others = [path for path in places if path != self.spool_path]
        return [Outbox(path) for path in others if outbox_place.cannot_write(path) is None]

    def _say_fallback(self, place: outbox_place.Place) -> None:
        """One WARNING at the start of the run: where calls wait instead, and how to replay them."""
        database = shlex.quote(self.key.store.removeprefix("sqlite:"))
        logger.warning(
            "predictions: no outbox can be kept at %s: %s. Calls the store does not take are kept in %s "
            "instead; `PREDICTIONS_DB=%s python -m predictions spool replay` stores them once the store "
            "can be written (it looks there too), and so does the next run of this store",
            place.instead_of,
            place.why,
            place.path,
            database,
        )

    def _keep(self, calls: list[dict[str, Any]]) -> None:
        """Put calls in the outbox; where it cannot be written, hold them in memory and say which."""
        if not calls:
            return
        try:
            self.outbox.append(self.key, calls)
        except OutboxError as error:
            with self._held_lock:
                self._held.extend(calls)
            logger.error(
                "predictions: %s can be neither stored nor kept (%s); held in memory and retried while "
                "this process runs",
                "; ".join(describe(call) for call in calls),
                error,
            )

    def _report_held(self) -> None:
        with self._held_lock:
            held, self._held = self._held, []
        if held:
            logger.error(
                "predictions: LOST %s call(s) that neither the store nor the outbox %s took: %s",
                len(held),
                self.spool_path,
                "; ".join(describe(call) for call in held),
            )

    # the background thread

    def _run(self) -> None:
        self._recover()
        while True:
            try:
                call = self._queue.get(timeout=self._pause() if self._down else None)
            except queue.Empty:
                self._recover()
                self._tell_missing()
                continue
            if call is _STOP:
                break
            self._inflight = call
            try:
                self._handle(call)
            except Exception:
                logger.exception("predictions writer failed on a %s call", call.get("op"))
            self._inflight = None
            self._tell_missing()
        self._recover(force=True)  # a store back by train end gets every row, a signal's spilled ones too
        self._retry_held()
        self._tell_missing(again=True)
        self._tell_dropped()

    def _retry_held(self) -> None:
        """Calls held in memory exist nowhere else (the outbox could not take them, a full disk): keep
        trying the store, with the usual pauses, until `close()` stops waiting, rather than naming them
        LOST the moment training ends."""
        while self.refusal is None and (left := self._close_by - time.monotonic()) > 0:
            with self._held_lock:
                if not self._held:
                    return
            time.sleep(min(self._pause(), left))
            self._recover(force=True)

    def _handle(self, call: dict[str, Any]) -> None:
        """Store the call (after the outbox, once the store is back), else keep it in the outbox."""
        if self.refusal is not None or (self._down and not self._recover(force=True)):
            self._keep([call])
            return
        if not self._deliver_with_retries(call):
            self._mark_down()
            self._keep([call])

    def _deliver_with_retries(self, call: dict[str, Any]) -> bool:
        """True once stored or quarantined; False after `retries` outages in a row or a refused key."""
        for attempt in range(self.retries):
            try:
                lost = deliver(self.store, call, self.outbox, self.key, self._dropped)
                if lost and call_job(call) is not None:  # a call without a job is named in the log only
                    self._lost[call_job(call)] += lost
                self._tell_dropped(first=True)
                return True
            except SESSION_REFUSALS as error:
                self._refuse_session(error)
                return False
            except Exception as error:
                count = f"{attempt + 1}/{self.retries}"
                logger.warning("predictions store call %s failed (%s): %s", call["op"], count, error)
                if attempt + 1 < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
        return False

    def _tell_dropped(self, first: bool = False) -> None:
        """One INFO line when a job's calls are first dropped (it was deleted while this run wrote it),
        and its totals at the end where more were dropped since (`first`: only jobs not told yet)."""
        for job in self._dropped.rows:
            line, told = self._dropped.line(job), self._dropped_told.get(job)
            if told is None or (not first and told != line):
                self._dropped_told[job] = line
                logger.info("predictions: %s", line)

    def _refuse_session(self, error: StoreError) -> None:
        """The store refused the credentials or cannot be written: stop writing for this session, once,
        and say why."""
        if self.refusal is None:
            self.refusal = error
            if not isinstance(error, AuthError):
                logger.error(
                    "predictions: %s. Writing stops for this run; every call is kept in the outbox %s. "
                    "Once the store can be written, run `python -m predictions spool replay`%s",
                    error,
                    self.spool_path,
                    "" if why_read_only(self.spool_path) is None else OUTBOX_READ_ONLY,
                )
                return
            logger.error(
                "predictions: %s refused the credentials: %s. Writing stops for this run; every call is kept "
                "in the outbox %s. Fix the key, then run `python -m predictions spool replay`",
                getattr(self.store, "description", "the store"),
                error,
                self.spool_path,
            )

    def _recover(self, force: bool = False) -> bool:
        """Open the store if need be and replay the outbox and held calls; True when the store took them."""
        if self.refusal is not None or (not force and time.monotonic() < self._next_try):
            return False
        if self.store is None and not self._open():
            self._mark_down()
            return False
        if not self._replay_outbox() or not self._send_held():
            self._mark_down()
            return False
        self._down, self._pause_s = False, self.backoff_s
        return True

    def _replay_outbox(self) -> bool:
        """Replay this key's entries (moving an old JSONL spool in first); False when the store is down.

        An outbox that cannot be used is logged, not taken for an outage: live calls still go straight
        to the store."""
        try:
            if not self._migrated:
                self._migrated = True
                legacy.migrate(self.outbox, self.key)
                for alias in self.store.outbox_aliases():  # kept by an earlier run under its key's name
                    self._rekey(alias, self.key)
        except OutboxError as error:
            logger.error("predictions outbox cannot be replayed (%s); rows go straight to the store", error)
            return True
        result = self._replay_each()
        if result.refusal is not None:
            self._refuse_session(result.refusal)
        return not result.errors

    def _replay_each(self) -> Replay:
        """Replay this run's outbox, then the others of its store, until the store stops answering; the
        last replay's result, whose errors and refusal say whether writing goes on (each replay logs
        what it stored and dropped itself)."""
        result = Replay()
        for outbox in [self.outbox, *self._elsewhere]:
            try:
                result = replay(self.store, outbox, self.key)
            except OutboxError as error:
                logger.error(
                    "predictions outbox cannot be replayed (%s); rows go straight to the store", error
                )
                continue
            if result.stored:
                logger.info("replayed %s kept call(s) from %s", result.stored, outbox.path)
            if result.errors:
                break
        return result

    def _send_held(self) -> bool:
        """Send the calls held in memory (the outbox could not take them); False at the first outage."""
        with self._held_lock:
            held, self._held = self._held, []
        for position, call in enumerate(held):
            if not self._deliver_with_retries(call):
                with self._held_lock:
                    self._held[:0] = held[position:]
                return False
        return True

    # rows missing: kept nowhere, recorded on the job so the dashboard says so

    def missing_rows(self) -> dict[str, int]:
        """Rows this run could keep nowhere, by job: refused rows the quarantine could not take, and
        rows held in memory because neither the store nor the outbox took them (until stored)."""
        counts = collections.Counter(self._lost)
        with self._held_lock:
            for call in self._held:
                if call_job(call) is not None:
                    counts[call_job(call)] += len(call_rows(call))
        return {job: count for job, count in counts.items() if count}

    def _tell_missing(self, again: bool = False) -> None:
        """Record each job's missing rows in the store where they changed (`again`: every nonzero count,
        at finish); a store that does not answer is told at the next chance."""
        if self.store is None or self.refusal is not None:
            return
        counts = self.missing_rows()
        for job_id in sorted(set(counts) | set(self._missing_told)):
            count = counts.get(job_id, 0)
            if count == self._missing_told.get(job_id, 0) and not (again and count):
                continue
            try:
                self.store.record_missing(job_id, count, run=self.run_id, user_id=self.user_id)
            except JobDeletedError:  # deleted on the dashboard: its missing rows are nothing to show
                self._missing_told[job_id] = count
                continue
            except Exception as error:
                logger.warning("predictions: %s missing row(s) of %r not recorded: %s", count, job_id, error)
                continue
            self._missing_told[job_id] = count

    def _open(self) -> bool:
        if self._open_store is None:
            return False
        try:
            store = self._open_store()
        except SESSION_REFUSALS as error:
            self._refuse_session(error)
            return False
        except Exception as error:
            logger.warning("predictions store cannot be opened yet: %s", error)
            return False
        self.store = store
        key = Key(*store.outbox_key(self.user_id))
        if key != self.key and key.store == self.key.store:  # the same identity, now better known
            self._rekey(self.key.owner, key)
        self.key = key
        return True

    def _rekey(self, owner: str, key: Key) -> None:
        try:
            self.outbox.rekey(key.store, owner, key.owner)
        except OutboxError as error:
            logger.error("predictions outbox cannot be re-keyed: %s", error)

    def _mark_down(self) -> None:
        """Remember the outage; the next try waits twice as long as the last (at most MAX_PAUSE_S)."""
        if self._down:
            self._pause_s = min(self._pause_s * 2, MAX_PAUSE_S)
        self._down = True
        self._next_try = time.monotonic() + self._pause_s

    def _pause(self) -> float:
        return max(0.0, self._next_try - time.monotonic())


def key_from_env(user_id: str | None) -> tuple[str, str]:
    """The outbox key of the store `open_store()` would open (it could not be opened yet)."""
    return StoreSettings.from_env().outbox_key(user_id)


def check_can_write(store: Store, user_id: str | None) -> None:
    """Raise ConfigError now when the store could not write one row (a key, a user, a user id)."""
    check = getattr(store, "check_can_write", None)
    if callable(check):
        check(user_id)
    elif user_id is not None and not isinstance(user_id, str):
        raise ConfigError(f"user_id={user_id!r} is invalid; valid: a user id string")
