"""In a notebook (an IPython kernel: Jupyter, Colab, VS Code): a cell that raises ends its run's job at once.

The Trainer calls no hook when `train()` raises (a bad batch, out of memory, a bug in a scorer), so
outside a notebook the job is finished by the next `train()` or at the interpreter's exit; a kernel
lives on for hours. IPython fires `post_run_cell` after every cell: the hooks registered here (once per
shell) end the runs that cell started and left open, before the next cell runs, with their rows
stored and their writers closed: `failed` for an error, `stopped` (interrupted by the user) for a
KeyboardInterrupt. A run the Trainer drives (`train()` returns only after train end) is ended when its
cell ends in any way, so a `try: trainer.train() except ...:` in the cell, or a search that catches a
trial's error, leaves no job running; a `PredictionsMonitor` driven by hand is ended only when its
cell raised, as a loop may go on in the next cell. A run started in an earlier cell, or on another
thread (training in the background), is the user's. IPython is never imported here: without a running
shell nothing happens.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class NotebookRun(Protocol):
    """A run a cell can leave open: the monitor or the rollout recorder."""

    def end_after_error(self, error: BaseException | None) -> None:
        """End the job: `error` is what the cell raised, None when it raised nothing (the run's error,
        if any, was caught) or the IPython is too old to say."""


_open: weakref.WeakKeyDictionary[Any, tuple[int, bool]] = weakref.WeakKeyDictionary()
"""Each open run, the number of the cell that started it (`_cells`), and whether it ends with its cell
(the Trainer drives it) or only when that cell raised (driven by hand)."""
_cells = [0]
"""Cells begun since the hooks were registered: `pre_run_cell` counts them. (IPython's execution count
does not move for a cell run without history, so it cannot tell this cell from the next.)"""


def shell() -> Any:
    """The running IPython shell, or None: read from an IPython already imported, never importing it."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    try:
        return get() if callable(get) else None
    except Exception:  # an IPython too broken to answer is no shell to hook
        return None


def watch(run: NotebookRun, with_cell: bool = False) -> None:
    """Note that the current cell started `run` (`with_cell`: it cannot outlive the cell, as a Trainer's
    run); the first time in a shell, register the hooks. Nothing off the shell's (main) thread."""
    ipython = shell()
    events = getattr(ipython, "events", None)
    if events is None or threading.current_thread() is not threading.main_thread():
        return
    try:
        if after_cell not in events.callbacks.get("post_run_cell", []):
            events.register("pre_run_cell", before_cell)
            events.register("post_run_cell", after_cell)
    except Exception:  # monitoring never breaks training: the job is then finished as in a script
        logger.exception("predictions: could not register the notebook hook; a raised cell ends no job")
        return
    _open[run] = (_cells[0], with_cell)


def unwatch(run: NotebookRun) -> None:
    """The run reached its end (or was ended): nothing left for the hook."""
    _open.pop(run, None)


def before_cell(info: Any = None) -> None:
    """IPython's `pre_run_cell`: a new cell begins."""
    _cells[0] += 1


def after_cell(result: Any = None) -> None:
    """IPython's `post_run_cell`: end the runs this cell started and left open (those driven by hand only
    when it raised). Older IPython, as some Colab images had, passes no result: no error is known."""
    error = getattr(result, "error_in_exec", None)
    for run, (started, with_cell) in list(_open.items()):
        if started != _cells[0] or not (with_cell or error is not None):
            continue
        unwatch(run)
        try:
            run.end_after_error(error)
        except Exception:
            logger.exception("predictions: could not end the job of a run its cell left open")
