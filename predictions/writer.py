"""Non-blocking writes: the training loop hands rows over and goes on; a thread does the rest.

The thread upserts each round in one store call, retries with backoff, and when the store stays
down appends the call to a JSONL spool file. The spool is replayed when the store answers again and
when the next writer starts, so a row is always either in the store or in the spool. No method
raises: a failure is logged and the rows are kept.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from predictions.store.base import PredictionRow, Store
from predictions.store.sqlite import SQLiteStore

logger = logging.getLogger(__name__)

DEFAULT_SPOOL = ".predictions/spool.jsonl"
_STOP = object()


def default_spool_path(store: Store | None) -> Path:
    """PREDICTIONS_SPOOL, else beside a SQLite file (one spool per database), else `.predictions/`."""
    if os.environ.get("PREDICTIONS_SPOOL"):
        return Path(os.environ["PREDICTIONS_SPOOL"])
    if isinstance(store, SQLiteStore):
        return store.path.with_name(f"{store.path.stem}.spool.jsonl")
    return Path(DEFAULT_SPOOL)


class Writer:
    """Queues store calls for a background thread; `close()` waits for them at train end."""

    def __init__(
        self,
        store: Store | None,
        *,
        spool_path: str | os.PathLike[str] | None = None,
        retries: int = 3,
        backoff_s: float = 0.5,
    ):
        self.store = store
        self.spool_path = Path(spool_path) if spool_path else default_spool_path(store)
        self.retries, self.backoff_s = retries, backoff_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self._down = store is None
        self.closed = False
        self._thread = threading.Thread(target=self._run, name="predictions-writer", daemon=True)
        self._thread.start()

    # called from the training loop: never blocks, never raises

    def write(self, rows: Sequence[PredictionRow]) -> None:
        """Queue one round's rows for a single bulk upsert."""
        try:
            call = {"op": "write_predictions", "rows": [row.as_dict() for row in rows]}
        except Exception:
            logger.exception("predictions writer got rows it cannot store: %r", rows)
            return
        self._put(call)

    def start_job(self, job_id: str, **details: Any) -> None:
        self._put({"op": "start_job", "job_id": job_id, **details})

    def finish_job(self, job_id: str, status: str = "finished") -> None:
        self._put({"op": "finish_job", "job_id": job_id, "status": status})

    def close(self, timeout_s: float | None = 300.0) -> None:
        """Wait for queued calls to be stored or spooled; the thread is a daemon if it overruns."""
        self.closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("predictions writer still busy after %ss; pending rows may be lost", timeout_s)

    def _put(self, call: dict[str, Any]) -> None:
        try:
            self._queue.put(call)
        except Exception:  # a full or broken queue must not reach the training loop
            logger.exception("predictions writer could not queue a %s call", call.get("op"))

    # the background thread

    def _run(self) -> None:
        self._replay_quietly()
        while (call := self._queue.get()) is not _STOP:
            try:
                self._handle(call)
            except Exception:
                logger.exception("predictions writer failed on a %s call", call.get("op"))

    def _handle(self, call: dict[str, Any]) -> None:
        """Send with retries; spool on failure; replay the spool once the store answers again."""
        if self._send_with_retries(call):
            if self._down:
                self._down = False
                self._replay_quietly()
        else:
            self._down = True
            append_spool(self.spool_path, [call])

    def _send_with_retries(self, call: dict[str, Any]) -> bool:
        """True once stored; a store already known down gets one try, so rounds do not pile up."""
        attempts = 1 if self._down else self.retries
        for attempt in range(attempts):
            try:
                send(self.store, call)
                return True
            except Exception as error:
                logger.warning(
                    "predictions store call %s failed (%s/%s): %s", call["op"], attempt + 1, attempts, error
                )
                if attempt + 1 < attempts:
                    time.sleep(self.backoff_s * 2**attempt)
        return False

    def _replay_quietly(self) -> None:
        if self.store is None:
            return
        try:
            stored = replay_spool(self.store, self.spool_path)
        except Exception:
            logger.exception("predictions spool %s could not be replayed", self.spool_path)
            return
        if stored:
            logger.info("replayed %s spooled call(s) from %s", stored, self.spool_path)


def send(store: Store, call: dict[str, Any]) -> None:
    """Make one store call from its queued (or spooled) form."""
    details = {key: value for key, value in call.items() if key not in ("op", "job_id", "rows")}
    if call["op"] == "write_predictions":
        store.write_predictions([PredictionRow(**row) for row in call["rows"]])
    elif call["op"] == "start_job":
        store.start_job(call["job_id"], **details)
    elif call["op"] == "finish_job":
        store.finish_job(call["job_id"], **details)
    else:
        raise ValueError(f"unknown spooled call {call['op']!r}")


def append_spool(path: Path, calls: Sequence[dict[str, Any]]) -> None:
    """Append calls as JSON lines; a failure here is logged with the rows, the last place they exist."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(call, default=str) + "\n" for call in calls)
    except OSError:
        logger.exception("cannot write the predictions spool %s; lost calls: %s", path, calls)


def replay_spool(store: Store, path: str | os.PathLike[str]) -> int:
    """Send every spooled call in order; the ones that fail go back to the spool. Returns how many stored.

    The spool is first renamed, so a writer appending meanwhile starts a new file and nothing is
    read twice; upserts on (job_id, step, sample_index) make a replay that repeats a row harmless.
    """
    path = Path(path)
    if not path.exists():
        return 0
    claimed = path.with_name(f"{path.name}.{uuid.uuid4().hex}.replaying")
    os.replace(path, claimed)
    calls = [json.loads(line) for line in claimed.read_text(encoding="utf-8").splitlines() if line.strip()]
    for position, call in enumerate(calls):
        try:
            send(store, call)
        except Exception as error:
            logger.warning("predictions store still unavailable during replay: %s", error)
            append_spool(path, calls[position:])
            claimed.unlink()
            return position
    claimed.unlink()
    return len(calls)
