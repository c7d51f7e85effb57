"""Preemption: SIGTERM (how clusters stop a job) and SIGHUP mark the job failed, SIGINT (the user's Ctrl-C, a
notebook's Interrupt) stopped, interrupted by the user; every one keeps the job's rows.

The handler is chained: it gives the job its status and first moves every call not yet stored into the
local outbox (one quick transaction), so nothing is only in memory before anything slow starts; then
the writer stores what it can within `FLUSH_S`. A second signal meanwhile ends the flush at once: the
rows wait in the outbox. Finally the previous handler gets the signal (Python's KeyboardInterrupt for
SIGINT, the default exit for SIGTERM and SIGHUP, or the handler someone else installed). A signal
that was ignored (`SIG_IGN`, e.g. SIGINT under `nohup` or `&`) stays ignored: the guard never takes it.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from predictions.store.records import TrainerStop

logger = logging.getLogger(__name__)

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))
FLUSH_S = 20.0
"""Time the writer gets to store kept calls: inside a cluster's usual 30 s grace."""


class SignalGuard:
    """Runs `on_signal(signum)` once on SIGTERM, SIGINT or SIGHUP, then hands the signal to the previous
    handler. `on_signal` must make every pending call safe before it does anything slow."""

    def __init__(self, on_signal: Callable[[int], None], flush: Callable[[], None] = lambda: None):
        self.on_signal, self.flush = on_signal, flush
        self._previous: dict[int, Any] = {}
        self._handling = False

    def install(self) -> SignalGuard:
        """Chain onto the current handlers; only the main thread may set handlers, elsewhere nothing."""
        if threading.current_thread() is not threading.main_thread():
            logger.warning("predictions: not on the main thread, so SIGTERM cannot mark the job failed")
            return self
        for signum in SIGNALS:
            if signal.getsignal(signum) == signal.SIG_IGN:
                continue  # ignored on purpose: neither fail the job nor stop the process
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        """Put the previous handlers back, where ours is still the one installed."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        previous = self._previous.get(signum)
        if self._handling:  # a second signal during the flush: every call is already in the outbox
            logger.warning("predictions: got %s again; the rows not yet stored wait in the outbox", name)
            self._chain(signum, frame, previous)
            return
        self._handling = True
        logger.warning("predictions: got %s; keeping every queued call, then storing what can be", name)
        try:
            self.on_signal(signum)  # quick: the outbox holds everything after it
            self.flush()  # slow: a second signal may interrupt it
        except Exception:
            logger.exception("predictions: could not finish the job on %s", name)
        self._chain(signum, frame, previous)

    def _chain(self, signum: int, frame: FrameType | None, previous: Any) -> None:
        """Hand the signal to whoever had it before us."""
        self.uninstall()
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            os.kill(os.getpid(), signum)  # the default action, now that the default is back


def at_exit(func: Callable[..., None], *args: Any) -> Callable[[], None]:
    """Run `func(*args)` when the process ends, also in a child started by `fork` or `forkserver`
    (`torch.multiprocessing` ranks, accelerate's `notebook_launcher`): those leave by `os._exit`, which
    skips `atexit`, but they run multiprocessing's finalizers. `func` must be safe to call twice.

    Returns what takes both hooks off again, for a run that ended by itself: a kernel that trains 500
    times would otherwise keep 500 pairs of them, each holding its run's writer and monitor."""

    def hook() -> None:
        func(*args)

    atexit.register(hook)
    finalizer = multiprocessing.util.Finalize(None, hook, exitpriority=10)

    def cancel() -> None:
        atexit.unregister(hook)
        finalizer.cancel()

    return cancel


def interrupted_at(step: int, max_steps: int = 0) -> TrainerStop:
    """The reason a job the user interrupted keeps: a decision, not a fault (`failed` is for what needs
    fixing), so it reads `stopped`, as Lightning's `INTERRUPTED` is no failure."""
    return TrainerStop(step, max_steps, by=("KeyboardInterrupt",), interrupted="KeyboardInterrupt")


def guard_job(
    writer: Any, job_id: str | None, progress: Callable[[], tuple[int, int]] = lambda: (0, 0)
) -> SignalGuard:
    """Install a guard that gives `job_id` its status and flushes `writer` when the process is stopped:
    failed on SIGTERM or SIGHUP, stopped by SIGINT (`interrupted_at` the step `progress()` says, with
    the planned last step).

    With `job_id` None (a process other than the one that owns the job, e.g. a DDP rank writing its own
    share) the guard keeps and flushes the writer's calls and leaves the job's status alone."""

    def fail_job(signum: int) -> None:
        if job_id is not None and not writer.closed and signum == signal.SIGINT:
            writer.finish_job(job_id, status="stopped", stop_reason=interrupted_at(*progress()).as_dict())
        elif job_id is not None and not writer.closed:
            writer.finish_job(job_id, status="failed")
        writer.spill()  # the failed finish and every queued round are in the outbox from here on

    def flush() -> None:
        writer.close(timeout_s=FLUSH_S)  # also when train end was already closing: bounded

    return SignalGuard(fail_job, flush).install()
