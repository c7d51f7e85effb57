"""A background thread that a signal handler may wait for, also while the main thread already does.

`Thread.join` is not re-entrant. Python runs a pending signal handler at the first instruction after a
call returns: a signal that reached another thread while the main thread waited in `join` is handled
right after the join took the ended thread's lock, before it gives it back. A handler that joins the
same thread then waits for a lock its own thread holds, for its whole timeout, although the thread
is gone (SIGTERM while train end or a failing DDP rank closes the writer: the guard's 20 s for
nothing, and `is_alive()` reads True meanwhile). A `Worker` marks the end of its work itself, before
that lock is released, so a waiter that sees it finished never takes the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Worker(threading.Thread):
    """A daemon thread running `target`, with `finished` and a `wait` that a signal handler may call."""

    def __init__(self, target: Callable[[], None], name: str):
        super().__init__(target=target, name=name, daemon=True)
        self.finished = False
        """Set as the target returns or raises: nothing of its work runs after it."""

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.finished = True

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait at most `timeout_s` for the target to end; True once it has. A handler that interrupted
        another wait on this thread finds it finished (the outer wait holds the lock only after the
        end) or waits on a lock nobody holds."""
        if not self.finished:
            self.join(timeout_s)
        return self.finished
