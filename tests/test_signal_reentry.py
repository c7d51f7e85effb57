"""A stop signal whose handler re-enters the very call the main thread is in the middle of.

Python runs a signal handler on the main thread between any two bytecodes, also inside the standard
library. The guard's handler waits for the round being scored and closes the rollouts builder, so it
may run inside the main thread's own wait for that round (`RoundScorer.wait`) or its own
`Builder.close`, and it appends to the outbox, maybe while the main thread is inside an append. Each
test puts the signal at every line the main thread runs inside that call, one run per line (a trace
function on the main thread raises it there), and checks that the handler and then the interrupted
call finish, with every row stored or kept.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import CodeType

import pytest

from predictions.config import PredictionsConfig
from predictions.delivery import outbox, worker
from predictions.delivery.outbox import Outbox
from predictions.delivery.writer import Writer
from predictions.scoring.sample import Sample
from predictions.store.sqlite import SQLiteStore
from predictions.training import preemption
from predictions.training.rollouts import Builder, DrainFirst
from predictions.training.round_scorer import RoundScorer, ScoreFirst
from tests.helpers import prediction_rows
from tests.helpers_training import count_rows

HUNG_S = 10.0
"""A run still going after this long has blocked on a lock its own thread holds (it would wait forever)."""


class Hung(BaseException):
    """Raised in the main thread when a run blocked: a BaseException, so the guard cannot swallow it."""


@pytest.fixture
def sigterm_recorded():
    """The handler SIGTERM had before the guard: records the signal instead of ending pytest."""
    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    yield got
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def hung_alarm():
    """Ends a run that blocked for good (SIGUSR1 interrupts the main thread's lock wait) as a failure."""

    def interrupt(signum, frame):
        raise Hung(f"still blocked after {HUNG_S} s: the handler waits on a lock its own thread holds")

    previous = signal.signal(signal.SIGUSR1, interrupt)

    @contextmanager
    def armed() -> Iterator[None]:
        timer = threading.Timer(HUNG_S, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1))
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    yield armed
    signal.signal(signal.SIGUSR1, previous)


@contextmanager
def signal_at_line(number: int | None, traced: Callable[[CodeType], bool]):
    """Trace the main thread's lines in the code `traced` picks; raise SIGTERM before the `number`-th
    (counted from 0; None: never). Yields the lines counted so far, as a list."""
    seen: list[str] = []

    def local(frame, event, arg):
        if event == "line":
            seen.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
            if len(seen) - 1 == number:
                signal.raise_signal(signal.SIGTERM)  # the handler runs here, before this line
        return local

    def tracer(frame, event, arg):
        return local if traced(frame.f_code) else None

    sys.settrace(tracer)
    try:
        yield seen
    finally:
        sys.settrace(None)


def in_an_event(code: CodeType) -> bool:
    """The methods of `threading.Event` and of its replacement: the lines a signal is put before."""
    return code.co_filename in (threading.__file__, worker.__file__) and code.co_qualname.startswith(
        ("Event.", "Flag.")
    )


def in_the_outbox(code: CodeType) -> bool:
    return code.co_filename == outbox.__file__


def sweep(run: Callable[[int | None], list[str]]) -> int:
    """`run(None)` counts the lines; then `run(k)` for each of them. How many runs were signalled."""
    lines = run(None)
    assert lines, "the traced call ran no line of an event"
    for number in range(len(lines)):
        run(number)
    return len(lines)


def test_sigterm_inside_the_builders_own_close_closes_it_again_and_keeps_its_rows(
    tmp_path, monkeypatch, sigterm_recorded, hung_alarm
):
    """Train end closes the rollouts builder; the guard's flush closes it again, inside the first."""
    monkeypatch.setattr(preemption, "FLUSH_S", 6.0)

    def run(number: int | None) -> list[str]:
        job = f"job{number}"
        writer = Writer(SQLiteStore(tmp_path / "p.db"), spool_path=tmp_path / f"{job}.outbox.db")
        builder = Builder()
        builder.put(lambda: writer.write(prediction_rows(job, steps=(1,), samples=3, epoch=1)))
        guard = preemption.guard_job(DrainFirst(builder, writer), None)
        start, signalled = time.monotonic(), len(sigterm_recorded)
        with hung_alarm(), signal_at_line(number, in_an_event) as lines:
            builder.close()
        took = time.monotonic() - start
        guard.uninstall()
        writer.close()
        where = "no signal" if number is None else f"a signal before {lines[number]}"
        assert len(sigterm_recorded) == signalled + (number is not None), where
        assert took < preemption.FLUSH_S / 2, f"{where}: close() took {took:.1f} s"
        assert count_rows(tmp_path / "p.db", job) == 3, where
        return lines

    assert sweep(run) >= 3


def gated(release: threading.Event) -> Callable[..., float]:
    def scorer(prediction, truth, sample):
        release.wait(HUNG_S)
        return 1.0

    return scorer


def test_sigterm_inside_the_main_threads_wait_for_a_round_lets_the_guard_wait_for_it_too(
    tmp_path, monkeypatch, sigterm_recorded, hung_alarm
):
    """The training thread waits for a round's scores (the early-stop rule, `RoundResult.averages`);
    the guard keeps the round unscored, then its flush frees the scorer and waits for the same round,
    inside that wait: the scored rows follow the unscored ones."""
    monkeypatch.setattr(preemption, "FLUSH_S", 6.0)
    samples = [Sample(i, f"prompt {i}", str(i)) for i in range(3)]

    def run(number: int | None) -> list[str]:
        job, release = f"job{number}", threading.Event()
        writer = Writer(SQLiteStore(tmp_path / "p.db"), spool_path=tmp_path / f"{job}.outbox.db")
        scorer = RoundScorer(writer, PredictionsConfig(scorers={"gated": gated(release)}))
        handed = scorer.hand_over(job, 1, 1.0, samples, ["0", "1", "3"])
        wait_all = scorer.wait_all
        scorer.wait_all = lambda timeout_s: (release.set(), wait_all(timeout_s))[1]  # the flush frees it
        guard = preemption.guard_job(ScoreFirst(scorer, writer), None)
        signalled = len(sigterm_recorded)
        with hung_alarm(), signal_at_line(number, in_an_event) as lines:
            handed.done.wait(0.01)  # the scorer is gated: this wait times out unless the guard ran
        release.set()
        averages = scorer.wait(handed, HUNG_S)
        guard.uninstall()
        scorer.close()
        writer.close()
        where = "no signal" if number is None else f"a signal before {lines[number]}"
        assert len(sigterm_recorded) == signalled + (number is not None), where
        assert averages is not None and averages["gated"] == 1.0, where
        stored = SQLiteStore(tmp_path / "p.db").rows_after(job)
        assert stored["gated"].tolist() == [1.0] * 3, where  # scored, after the rows kept unscored
        return lines

    assert sweep(run) >= 3


def test_sigterm_inside_an_outbox_append_lets_the_guards_spill_append_too(
    tmp_path, monkeypatch, sigterm_recorded, hung_alarm, caplog
):
    """A closed writer keeps a late call in the outbox on the caller's thread; the guard's spill keeps
    the writer's own calls there, inside that append. Both are kept at once, not after the outbox's
    lock timeout, and nothing is left in memory only."""
    monkeypatch.setattr(preemption, "FLUSH_S", 0.5)

    def run(number: int | None) -> list[str]:
        job = f"job{number}"
        spool = tmp_path / f"{job}.outbox.db"
        writer = Writer(None, spool_path=spool)
        writer.outbox.timeout_s = 5.0  # what the handler's append would wait for the main thread's lock
        writer.spill()  # from here on, every call is kept in the outbox on the caller's thread
        guard = preemption.guard_job(writer, job)
        start, signalled = time.monotonic(), len(sigterm_recorded)
        with hung_alarm(), signal_at_line(number, in_the_outbox) as lines:
            writer.write(prediction_rows(job, steps=(1,), samples=3, epoch=1))
        took = time.monotonic() - start
        guard.uninstall()
        where = "no signal" if number is None else f"a signal before {lines[number]}"
        assert len(sigterm_recorded) == signalled + (number is not None), where
        assert writer.missing_rows() == {}, where  # nothing held in memory only
        ops = [call["op"] for calls in Outbox(spool).pending().values() for call in calls if call]
        assert sorted(ops) == sorted(
            ["write_predictions", *(["finish_job"] if number is not None else [])]
        ), where
        assert took < 3.0, f"{where}: took {took:.1f} s"  # the flush's 0.5 s, not the lock's 5 s
        return lines

    assert sweep(run) >= 3
