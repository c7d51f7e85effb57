"""Preemption: SIGTERM (how clusters stop a job) and SIGINT mark the job failed and keep its rows.

The handler is chained: it marks the job failed, lets the writer store or spool every queued call
within `FLUSH_S`, puts the previous handler back and then lets the signal do what it did before
(Python's KeyboardInterrupt for SIGINT, the default exit for SIGTERM, or the handler someone else
installed). The Trainer calls no hook in that case, so without this the job would stay running.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
FLUSH_S = 20.0
"""Time the writer gets to store queued calls before it spools them: inside a cluster's usual 30 s grace."""


class SignalGuard:
    """Runs `on_signal(signum)` once on SIGTERM or SIGINT, then hands the signal to the previous handler."""

    def __init__(self, on_signal: Callable[[int], None]):
        self.on_signal = on_signal
        self._previous: dict[int, Any] = {}

    def install(self) -> SignalGuard:
        """Chain onto the current handlers; only the main thread may set handlers, elsewhere nothing."""
        if threading.current_thread() is not threading.main_thread():
            logger.warning("predictions: not on the main thread, so SIGTERM cannot mark the job failed")
            return self
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        """Put the previous handlers back, where ours is still the one installed."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum)
        self.uninstall()
        logger.warning("predictions: got %s; storing or spooling queued rounds", signal.Signals(signum).name)
        try:
            self.on_signal(signum)
        except Exception:
            logger.exception("predictions: could not finish the job on %s", signal.Signals(signum).name)
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            os.kill(os.getpid(), signum)  # the default action, now that the default is back


def guard_job(writer: Any, job_id: str) -> SignalGuard:
    """Install a guard that marks `job_id` failed and flushes `writer` when the process is stopped."""

    def fail_job(signum: int) -> None:
        if not writer.closed:
            writer.finish_job(job_id, status="failed")
        writer.close(timeout_s=FLUSH_S)  # also when train end was already closing: bounded, then spooled

    return SignalGuard(fail_job).install()
