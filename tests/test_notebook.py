"""Training in a real Jupyter kernel (ipykernel, driven by jupyter_client as a notebook front end drives it).

One kernel for the module: each test runs its cells in it, as a user re-runs cells in one notebook, and
reads the SQLite file from here right after a cell's reply, before any later cell runs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from predictions.store import SQLiteStore
from predictions.store.protocol import PageQuery
from predictions.store.records import TrainerStop
from tests import zygote
from tests.helpers_training import locked

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.xdist_group("kernel")]

SETUP = """
import gc, multiprocessing.util, signal, threading
from pathlib import Path
from transformers import TrainerCallback
from predictions import PredictionsCallback
from tests import helpers_training as h

class Raise(TrainerCallback):
    def __init__(self, step):
        self.step = step
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"bad batch at step {self.step}")

first_round = threading.Event()

class Announce(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kwargs):
        print(f"round {state.global_step}", flush=True)
        first_round.set()

def train(job_id, epochs=2, *extra):
    callback = PredictionsCallback(h.pairs(12), num_samples=3, max_new_tokens=2, job_id=job_id)
    h.trainer(Path("."), [callback, Announce(), *extra], epochs=epochs).train()

def handlers():
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

def threads():
    return sorted(thread.name for thread in threading.enumerate())

def exit_hooks():
    return len(multiprocessing.util._finalizer_registry)

def live_monitors():
    gc.collect()
    return sum(type(thing).__name__ == "PredictionsMonitor" for thing in gc.get_objects())

def before():
    global handlers_before, threads_before, exit_hooks_before
    handlers_before, threads_before, exit_hooks_before = handlers(), threads(), exit_hooks()
"""


@dataclass
class Cell:
    """What a cell sent back: its reply's status and exception name, and its printed output."""

    status: str
    error: str | None = None
    after_interrupt_s: float | None = None
    """From the interrupt to the cell's reply."""
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


class Kernel:
    """A kernel and its client: `run` executes a cell and waits for its reply, as a notebook does."""

    def __init__(self, manager: KernelManager):
        self.manager, self.client = manager, manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, until: str | None = None, timeout: float = 120.0, then=lambda: None) -> Cell:
        """Execute `code`; with `until`, call `then()` and interrupt the kernel once the cell printed that
        line."""
        msg_id = self.client.execute(code)
        cell, interrupted = Cell("?"), None
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                getattr(cell, content["name"]).extend(content["text"].splitlines())
                if until is not None and until in cell.stdout:
                    until = None
                    then()
                    self.manager.interrupt_kernel()
                    interrupted = time.monotonic()
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = self.reply(msg_id, timeout)
        cell.status, cell.error = reply["status"], reply.get("ename")
        cell.after_interrupt_s = None if interrupted is None else time.monotonic() - interrupted
        return cell

    def reply(self, msg_id: str, timeout: float) -> dict:
        while True:
            msg = self.client.get_shell_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]

    def value(self, expression: str) -> str:
        """What `print(expression)` prints in the kernel."""
        cell = self.run(f"print({expression})")
        assert cell.status == "ok", cell.stderr
        return "\n".join(cell.stdout)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[tuple[Kernel, Path]]:
    """A kernel on the venv's Python, in its own folder, training into `db` there (no `.env`, no
    Supabase variables: the user's plain SQLite default)."""
    folder = tmp_path_factory.mktemp("kernel")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SUPABASE_", "PREDICTIONS_"))
    }
    env |= {
        "PYTHONPATH": str(ROOT),
        "PREDICTIONS_DB": str(folder / "db.sqlite"),
        "PREDICTIONS_SPOOL": str(folder / "outbox.db"),
    }
    manager = KernelManager(kernel_name="python3")
    assert manager.kernel_spec.argv[0] in (sys.executable, "python"), manager.kernel_spec.argv
    manager.kernel_spec.argv[0] = sys.executable
    manager.start_kernel(env=env, cwd=str(folder))
    kernel = Kernel(manager)
    try:
        setup = kernel.run(SETUP)
        assert setup.status == "ok", setup.stderr
        yield kernel, folder / "db.sqlite"
    finally:
        kernel.client.stop_channels()
        manager.shutdown_kernel(now=True)


def job(db: Path, job_id: str):
    store = SQLiteStore(db)
    try:
        found = {job.id: job for job in store.list_jobs()}[job_id]
        rows = store.predictions_page(job_id, PageQuery(limit=100)).rows
        return found, sorted(rows["step"].tolist())
    finally:
        store.close()


def announced(cell: Cell) -> list[int]:
    return [int(line.split()[1]) for line in cell.stdout if line.startswith("round ")]


def rerun_is_clean(kernel: Kernel, db: Path, job_id: str) -> None:
    """Running training again in the same kernel: a new job that finishes, with no thread left behind,
    the signal handlers as they were before the first run, and no warning from us."""
    cell = kernel.run(f"train({job_id!r}, 2)")
    assert cell.status == "ok", cell.stderr
    assert [line for line in cell.stderr if "predictions" in line] == []
    finished, steps = job(db, job_id)
    assert (finished.status, steps) == ("finished", [4] * 3 + [8] * 3)
    assert kernel.value("handlers() == handlers_before") == "True"
    assert kernel.value("threads()") == kernel.value("threads_before")
    assert kernel.value("exit_hooks()") == kernel.value("exit_hooks_before")  # none kept per finished run


def test_a_cell_that_raises_fails_its_job_before_the_next_cell(kernel):
    kernel, db = kernel
    kernel.run("before()")
    cell = kernel.run("train('raised', 3, Raise(6))")
    assert (cell.status, cell.error, announced(cell)) == ("error", "RuntimeError", [4])
    failed, steps = job(db, "raised")  # read before any later cell
    assert (failed.status, steps) == ("failed", [4] * 3)
    assert any(
        "job 'raised' ended by RuntimeError: bad batch at step 6; marked failed" in line
        for line in cell.stderr
    )
    rerun_is_clean(kernel, db, "raised-again")


def test_an_interrupt_stops_the_job_as_the_users_own(kernel):
    """Kernel > Interrupt: SIGINT reaches the guard during training; the job reads stopped, interrupted by
    the user, with every announced round stored, and the cell ends in KeyboardInterrupt as usual."""
    kernel, db = kernel
    kernel.run("before()")
    cell = kernel.run("train('interrupted', 200)", until="round 4")
    assert (cell.status, cell.error) == ("error", "KeyboardInterrupt")
    stopped, steps = job(db, "interrupted")
    reason = stopped.stop_reason
    assert stopped.status == "stopped" and isinstance(reason, TrainerStop), stopped
    assert (reason.interrupted, reason.max_steps) == ("KeyboardInterrupt", 800) and reason.step >= 4
    assert (
        reason.describe()
        == f"Stopped at step {reason.step} of 800: interrupted by the user (KeyboardInterrupt)."
    )
    assert set(announced(cell)) <= set(steps) and steps[:3] == [4] * 3
    rerun_is_clean(kernel, db, "interrupted-again")


def test_an_interrupt_while_the_store_hangs_ends_the_cell_when_the_guards_flush_does(kernel):
    """The guard's flush (FLUSH_S, 2 s here) is the only wait: the cell's end does not wait for the store
    again (30 s from the interrupt to the reply before, 3 s now). The stop waits in the outbox and
    reaches the store once it answers, stored by the kernel's writer thread, which then ends."""
    kernel, db = kernel
    kernel.run("from predictions.training import preemption; preemption.FLUSH_S = 2.0")
    with ExitStack() as stack:
        cell = kernel.run("train('hung', 200)", until="round 4", then=lambda: stack.enter_context(locked(db)))
    kernel.run("preemption.FLUSH_S = 20.0")
    assert (cell.status, cell.error) == ("error", "KeyboardInterrupt")
    assert cell.after_interrupt_s < 12, cell.stderr
    ours = "[t.name for t in threading.enumerate() if t.name.startswith('predictions')]"
    deadline = time.monotonic() + 60  # the kernel's writer replays its outbox once the store answers
    while kernel.value(ours) != "[]" and time.monotonic() < deadline:  # then it ends
        time.sleep(0.2)
    stopped, steps = job(db, "hung")
    assert stopped.status == "stopped" and stopped.stop_reason.interrupted == "KeyboardInterrupt"
    assert set(announced(cell)) <= set(steps) and kernel.value(ours) == "[]"


def test_a_cell_that_catches_the_error_of_train_still_fails_its_job(kernel):
    """train() returns only after train end: a run still open when its cell ends raised, whoever caught it."""
    kernel, db = kernel
    cell = kernel.run("try:\n    train('caught', 3, Raise(6))\nexcept RuntimeError:\n    print('caught')")
    assert (cell.status, cell.stdout[-1]) == ("ok", "caught")
    failed, steps = job(db, "caught")
    assert (failed.status, steps) == ("failed", [4] * 3)
    said = "job 'caught' ended by an error its cell caught (train() never reached its end); marked failed"
    assert any(said in line for line in cell.stderr), cell.stderr


def test_training_on_a_background_thread_outlives_its_cell(kernel):
    kernel, db = kernel
    cell = kernel.run(
        "first_round.clear()\n"
        "worker = threading.Thread(target=train, args=('background', 6))\n"
        "worker.start(); first_round.wait(60)"
    )
    assert cell.status == "ok" and job(db, "background")[0].status == "running", cell.stderr
    assert kernel.run("worker.join()").status == "ok"
    finished, steps = job(db, "background")
    assert (finished.status, len(steps)) == ("finished", 6 * 3)


def test_a_normal_run_in_a_kernel_finishes_as_in_a_script(kernel):
    """... and leaves nothing behind: no exit hook keeps the finished run (its monitor, writer, samples)."""
    kernel, db = kernel
    kernel.run("monitors_before = live_monitors()")
    cell = kernel.run("train('plain', 2)")
    assert (cell.status, announced(cell)) == ("ok", [4, 8]), cell.stderr
    finished, steps = job(db, "plain")
    assert (finished.status, finished.stop_reason, steps) == ("finished", None, [4] * 3 + [8] * 3)
    assert kernel.value("live_monitors() - monitors_before") == "0"


def test_restarting_the_kernel_fails_a_run_left_open_and_keeps_its_rows(kernel):
    """A run driven by hand and never finished: the kernel's own exit (Kernel > Restart shuts it down
    gracefully) runs the exit hook, as a script's end does. Last: the kernel starts afresh."""
    kernel, db = kernel
    cell = kernel.run(
        "from predictions import PredictionsMonitor\n"
        "tok = h.tokenizer(); model = h.model(tok=tok)\n"
        "options = dict(num_samples=2, max_new_tokens=2, job_id='open')\n"
        "monitor = PredictionsMonitor(h.pairs(6), tokenizer=tok, **options)\n"
        "monitor.start(model); monitor.round(model, step=1, epoch=1)"
    )
    assert cell.status == "ok", cell.stderr
    assert job(db, "open")[0].status == "running"
    kernel.manager.restart_kernel(now=False)
    kernel.client.wait_for_ready(timeout=60)
    failed, steps = job(db, "open")
    assert (failed.status, steps) == ("failed", [1, 1])
    assert kernel.run(SETUP).status == "ok"


def test_a_run_started_in_an_earlier_cell_is_left_to_the_user(ipython, sqlite_store):
    """A hand-written loop driven cell by cell: a later cell's typo ends nothing; the loop goes on."""
    from predictions import PredictionsMonitor
    from tests import helpers_training as h

    tok = h.tokenizer()
    monitor = PredictionsMonitor(
        h.pairs(6), tokenizer=tok, num_samples=2, max_new_tokens=2, store=sqlite_store
    )
    ipython.user_ns.update(monitor=monitor, model=h.model(tok=tok))
    assert ipython.run_cell("monitor.start(model); monitor.round(model, step=1, epoch=1)").success
    assert type(ipython.run_cell("monitor.rund(model, step=2, epoch=1)").error_in_exec) is AttributeError
    assert [job.status for job in sqlite_store.list_jobs()] == ["running"]
    assert ipython.run_cell("monitor.round(model, step=2, epoch=1); monitor.finish()").success
    finished = sqlite_store.list_jobs()[0]
    assert (finished.status, finished.round_count) == ("finished", 2)


def test_outside_ipython_the_training_side_never_imports_it():
    """A script (a zygote child: torch, transformers, trl and the training side imported) never loads
    IPython: detection only reads one a notebook already imported."""
    code = (
        "import sys\n"
        "from predictions import PredictionsCallback, RolloutRecorder\n"
        "from predictions.training import notebook\n"
        "print('IPython' in sys.modules, notebook.shell())"
    )
    result = zygote.run_python("-c", code, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.stdout == "False None\n", result.stderr
