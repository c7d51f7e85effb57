"""A background thread, and an event, that a signal handler may wait for (or set) also while the main
thread is in the middle of the same call.

`Thread.join` is not re-entrant. Python runs a pending signal handler at the first instruction after a
call returns: a signal that reached another thread while the main thread waited in `join` is handled
right after the join took the ended thread's lock, before it gives it back. A handler that joins the
same thread then waits for a lock its own thread holds, for its whole timeout, although the thread
is gone (SIGTERM while train end or a failing DDP rank closes the writer: the guard's 20 s for
nothing, and `is_alive()` reads True meanwhile). A `Worker` marks the end of its work itself, before
that lock is released, so a waiter that sees it finished never takes the lock.

`threading.Event` has the same flaw: `wait` and `set` hold its Condition's plain lock for several
bytecodes, and a handler that waits for or sets the same event there blocks on its own lock for good
(or, with an RLock, a thread that sets it while holding another lock the handler takes). `Flag` holds
no lock of its own between two bytecodes of its caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

RECHECK_S = 1.0
"""How often a `Flag` waited for without a timeout is looked at again."""


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


class Flag:
    """A one-way `threading.Event` (set, never cleared) that a signal handler may wait for or set while
    the main thread is inside `wait` or `set` of the same flag: only a waiter that got the gate holds
    it, and it sees the flag already true, as `set` makes it true before it opens the gate."""

    def __init__(self):
        self._set = False
        self._gate = threading.Lock()
        self._gate.acquire()
        self._opener = threading.Lock()
        """Taken (never given back) by the one `set` that opens the gate: a C call, so a nested `set`
        cannot open it twice."""

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._opener.acquire(blocking=False):
            self._gate.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait at most `timeout` seconds (None: until set); whether the flag is set. An unbounded wait
        looks again every `RECHECK_S`: a waiter interrupted between taking the gate and giving it
        back (a handler that raised) leaves it closed, but the flag is already true."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            left = RECHECK_S if deadline is None else min(RECHECK_S, deadline - time.monotonic())
            if left <= 0:
                break
            if self._gate.acquire(timeout=left):
                self._gate.release()  # the next waiter passes too
        return self._set
