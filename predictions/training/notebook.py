"""In a notebook (an IPython kernel: Jupyter, Colab, VS Code): a cell that raises ends its run's job at once.

The Trainer calls no hook when `train()` raises (a bad batch, out of memory, a bug in a scorer), so
outside a notebook the job is finished by the next `train()` or at the interpreter's exit; a kernel
lives on for hours. IPython fires `post_run_cell` after every cell with its `ExecutionResult`: the hook
registered here (once per shell) ends every run that cell started and left open when the cell raised
(`failed`; `stopped`, interrupted by the user, for a KeyboardInterrupt), its rows stored and its
writer closed before the next cell runs. A run started in an earlier cell (a hand-written loop driven
cell by cell) is the user's to finish. IPython is never imported here: without a running shell
nothing happens.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class NotebookRun(Protocol):
    """A run a cell can leave open: the monitor or the rollout recorder."""

    def end_after_error(self, error: BaseException) -> None: ...


_open: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
"""Each open run and the number of the cell that started it (`_cells`)."""
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


def watch(run: NotebookRun) -> None:
    """Note that the current cell started `run`; the first time in a shell, register the hook."""
    ipython = shell()
    events = getattr(ipython, "events", None)
    if events is None:
        return
    try:
        if after_cell not in events.callbacks.get("post_run_cell", []):
            events.register("pre_run_cell", before_cell)
            events.register("post_run_cell", after_cell)
    except Exception:  # monitoring never breaks training: the job is then finished as in a script
        logger.exception("predictions: could not register the notebook hook; a raised cell ends no job")
        return
    _open[run] = _cells[0]


def unwatch(run: NotebookRun) -> None:
    """The run reached its end (or was ended): nothing left for the hook."""
    _open.pop(run, None)


def before_cell(info: Any = None) -> None:
    """IPython's `pre_run_cell`: a new cell begins."""
    _cells[0] += 1


def after_cell(result: Any = None) -> None:
    """IPython's `post_run_cell`: a cell that raised ends the runs it started and left open. (Older
    IPython, as some Colab images had, passes no result: then nothing is known, nothing is done.)"""
    error = getattr(result, "error_in_exec", None)
    if error is None:
        return
    for run, started in list(_open.items()):
        if started != _cells[0]:
            continue
        unwatch(run)
        try:
            run.end_after_error(error)
        except Exception:
            logger.exception("predictions: could not end the job of a run whose cell raised")
