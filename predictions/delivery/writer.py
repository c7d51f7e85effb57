"""Non-blocking writes: the training loop hands rows over and goes on; a thread does the rest.

The thread upserts each round in one store call. An outage (`is_transient`) is retried with backoff,
then the call goes to the store's spool, which is replayed at start, retried with growing pauses while
the store is down, and replayed again when it answers. A refusal for good is split down to the refused
rows, which go to the quarantine; the rest is stored. So a row is always in the store, the spool or
the quarantine, and no row blocks another. No method raises: failures are logged, rows kept.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from predictions.delivery.spool import append_spool, deliver, now_text, replay_spool
from predictions.delivery.spool import spool_path as spool_path_of
from predictions.errors import ConfigError
from predictions.store.protocol import Store
from predictions.store.records import PredictionRow, RolloutRow
from predictions.store.storable import storable_rollout, storable_row

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 300.0
"""How long train end waits for the store before it spools what is still queued."""
MAX_PAUSE_S = 60.0
"""The longest pause between two tries of a store that is down."""
_STOP = object()


class Writer:
    """Queues store calls for a background thread; `close()` waits for them at train end.

    `store` may be None with `open_store` given: the thread opens the store itself, trying again
    while it cannot, and spools to `spool_path` (default: the store's own spool) meanwhile.
    """

    def __init__(
        self,
        store: Store | None,
        *,
        spool_path: str | os.PathLike[str] | None = None,
        retries: int = 3,
        backoff_s: float = 0.5,
        open_store: Callable[[], Store] | None = None,
    ):
        self.store, self._open_store = store, open_store
        self.spool_path = Path(spool_path) if spool_path else spool_path_of(store)
        self.retries, self.backoff_s = retries, backoff_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # put() is safe in a signal handler
        self._down = store is None
        self._pause_s, self._next_try = backoff_s, 0.0
        self._inflight: dict[str, Any] | None = None
        self._abandoned = False
        self.closed = False
        self._thread = threading.Thread(target=self._run, name="predictions-writer", daemon=True)
        self._thread.start()

    # called from the training loop: never blocks, never raises

    def write(self, rows: Sequence[PredictionRow]) -> None:
        """Queue one round's rows for a single bulk upsert."""
        try:
            call = {"op": "write_predictions", "rows": [storable_row(row).as_dict() for row in rows]}
        except Exception:
            logger.exception("predictions writer got rows it cannot store: %r", rows)
            return
        self._put(call)

    def write_rollouts(self, rows: Sequence[RolloutRow]) -> None:
        """Queue one generation's rollouts (an RL trainer's) for a single bulk upsert."""
        try:
            call = {"op": "write_rollouts", "rows": [storable_rollout(row).as_dict() for row in rows]}
        except Exception:
            logger.exception("predictions writer got rollouts it cannot store: %r", rows)
            return
        self._put(call)

    def start_job(self, job_id: str, **details: Any) -> None:
        self._put({"op": "start_job", "job_id": job_id, **details, "at": now_text()})

    def finish_job(self, job_id: str, status: str = "finished") -> None:
        self._put({"op": "finish_job", "job_id": job_id, "status": status, "at": now_text()})

    def close(self, timeout_s: float | None = None) -> None:
        """Wait for queued calls to be stored or spooled; past the timeout, spool what is left."""
        timeout_s = CLOSE_TIMEOUT_S if timeout_s is None else timeout_s
        if not self.closed:
            self.closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            left = self._abandon()
            logger.warning(
                "predictions store still busy after %ss; %s queued call(s) written to the spool %s",
                timeout_s,
                left,
                self.spool_path,
            )

    def _put(self, call: dict[str, Any]) -> None:
        if self.closed:
            logger.warning("predictions writer is closed; a %s call goes to the spool", call.get("op"))
            append_spool(self.spool_path, [call])
            return
        try:
            self._queue.put(call)
        except Exception:  # a full or broken queue must not reach the training loop
            logger.exception("predictions writer could not queue a %s call", call.get("op"))

    def _abandon(self) -> int:
        """Spool every queued call and the one in flight (stored twice at worst: upserts make it harmless)."""
        self._abandoned = True
        calls = []
        while True:
            try:
                call = self._queue.get_nowait()
            except queue.Empty:
                break
            if call is not _STOP:
                calls.append(call)
        inflight = self._inflight
        if inflight is not None:
            calls.insert(0, inflight)
        append_spool(self.spool_path, calls)
        return len(calls)

    # the background thread

    def _run(self) -> None:
        self._recover()
        while True:
            try:
                call = self._queue.get(timeout=self._pause() if self._down else None)
            except queue.Empty:
                self._recover()
                continue
            if call is _STOP:
                break
            self._inflight = call
            try:
                self._handle(call)
            except Exception:
                logger.exception("predictions writer failed on a %s call", call.get("op"))
            self._inflight = None
        if self._down and not self._abandoned:
            self._recover(force=True)  # one last try, so a store back by train end gets every row

    def _handle(self, call: dict[str, Any]) -> None:
        """Store the call (after the spool, once the store is back), else spool it."""
        if self._abandoned:
            append_spool(self.spool_path, [call])
            return
        if self._down and not self._recover(force=True):
            append_spool(self.spool_path, [call])
            return
        if not self._deliver_with_retries(call):
            self._mark_down()
            append_spool(self.spool_path, [call])

    def _deliver_with_retries(self, call: dict[str, Any]) -> bool:
        """True once stored or quarantined; False after `retries` outages in a row."""
        for attempt in range(self.retries):
            try:
                deliver(self.store, call, self.spool_path)
                return True
            except Exception as error:
                count = f"{attempt + 1}/{self.retries}"
                logger.warning("predictions store call %s failed (%s): %s", call["op"], count, error)
                if attempt + 1 < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
        return False

    def _recover(self, force: bool = False) -> bool:
        """Open the store if need be and replay the spool; True when the store took every spooled call."""
        if not force and time.monotonic() < self._next_try:
            return False
        if self.store is None and not self._open():
            self._mark_down()
            return False
        try:
            result = replay_spool(self.store, self.spool_path)
        except Exception:
            logger.exception("predictions spool %s could not be replayed", self.spool_path)
            self._mark_down()
            return False
        if result.stored:
            logger.info("replayed %s spooled call(s) from %s", result.stored, self.spool_path)
        if result.pending:
            self._mark_down()
            return False
        self._down, self._pause_s = False, self.backoff_s
        return True

    def _open(self) -> bool:
        if self._open_store is None:
            return False
        try:
            self.store = self._open_store()
            return True
        except Exception as error:
            logger.warning("predictions store cannot be opened yet: %s", error)
            return False

    def _mark_down(self) -> None:
        """Remember the outage; the next try waits twice as long as the last (at most MAX_PAUSE_S)."""
        if self._down:
            self._pause_s = min(self._pause_s * 2, MAX_PAUSE_S)
        self._down = True
        self._next_try = time.monotonic() + self._pause_s

    def _pause(self) -> float:
        return max(0.0, self._next_try - time.monotonic())


def check_can_write(store: Store, user_id: str | None) -> None:
    """Raise ConfigError now when the store could not write one row (a key, a user, a user id)."""
    check = getattr(store, "check_can_write", None)
    if callable(check):
        check(user_id)
    elif user_id is not None and not isinstance(user_id, str):
        raise ConfigError(f"user_id={user_id!r} is invalid; valid: a user id string")
