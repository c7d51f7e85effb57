"""A stop signal whose handler runs while the main thread is itself waiting for a background thread
(train end, or a failing DDP rank, closing the writer when torch or the cluster sends SIGTERM).

Python runs a signal handler at the first instruction after a call returns. A signal that reaches
another thread while the main thread waits in `Thread.join` is handled right after the join's lock
was taken, before it is given back: a handler that joins the same thread again waits for a lock its
own thread holds, for its whole timeout, although the thread has ended. `signal.pthread_kill` on a
helper thread puts the signal exactly there, as the kernel does when it picks a thread other than the
main one.
"""

from __future__ import annotations

import linecache
import logging
import signal
import sys
import threading
import time

import pytest

from predictions.delivery.writer import Writer
from predictions.training import preemption
from predictions.training.rollouts import Builder, DrainFirst
from tests.helpers import prediction_rows, wait_until
from tests.helpers_training import count_rows
from tests.test_writer import CountingStore


def waiting_on_a_thread() -> bool:
    """Whether the main thread is blocked in `Thread.join`'s lock."""
    frame = sys._current_frames().get(threading.main_thread().ident)
    in_join = frame is not None and frame.f_code.co_name == "_wait_for_tstate_lock"
    return in_join and "acquire" in line_of(frame)


def line_of(frame) -> str:
    return linecache.getline(frame.f_code.co_filename, frame.f_lineno)


def signal_the_helper_then(release: threading.Event) -> threading.Thread:
    """A thread that, once the main thread waits for a thread, gets SIGTERM itself (its handler then
    runs on the main thread as soon as the join's lock is taken), then lets that thread end."""

    def run() -> None:
        wait_until(waiting_on_a_thread, what="the main thread waiting in close()")
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        release.set()

    helper = threading.Thread(target=run, name="signal-helper")
    helper.start()
    return helper


@pytest.fixture
def sigterm_recorded():
    """The handler SIGTERM had before the guard: records the signal instead of ending pytest."""
    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    yield got
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_while_closing_the_writer_does_not_wait_for_a_thread_that_has_ended(
    tmp_path, monkeypatch, caplog, sigterm_recorded
):
    monkeypatch.setattr(preemption, "FLUSH_S", 6.0)
    store = CountingStore(tmp_path / "p.db")
    store.gate.clear()  # the store is busy when close() starts waiting
    writer = Writer(store, spool_path=tmp_path / "p.outbox.db")
    writer.write(prediction_rows("job", steps=(1,), samples=3, epoch=1))
    guard = preemption.guard_job(writer, None)
    helper = signal_the_helper_then(store.gate)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        writer.close(timeout_s=60.0)
    took = time.monotonic() - start
    helper.join()
    guard.uninstall()
    assert sigterm_recorded == [signal.SIGTERM]  # the guard ran, then handed the signal on
    assert "still busy" not in caplog.text  # the writer had stored everything: nothing to keep
    assert took < preemption.FLUSH_S / 2, f"close() took {took:.1f} s for a thread that had ended"
    assert count_rows(tmp_path / "p.db", "job") == 3
    assert writer.done


def test_sigterm_while_closing_the_rollouts_builder_does_not_wait_for_a_thread_that_has_ended(
    tmp_path, monkeypatch, sigterm_recorded
):
    """Train end of a RolloutRecorder closes its builder; the guard's flush closes it again."""
    monkeypatch.setattr(preemption, "FLUSH_S", 6.0)
    writer = Writer(CountingStore(tmp_path / "p.db"), spool_path=tmp_path / "p.outbox.db")
    builder, gate = Builder(), threading.Event()
    rows = prediction_rows("job", steps=(1,), samples=3, epoch=1)
    builder.put(lambda: (gate.wait(), writer.write(rows)))  # still building when train end comes
    guard = preemption.guard_job(DrainFirst(builder, writer), None)
    helper = signal_the_helper_then(gate)
    start = time.monotonic()
    builder.close()
    took = time.monotonic() - start
    helper.join()
    guard.uninstall()
    assert sigterm_recorded == [signal.SIGTERM]
    assert took < preemption.FLUSH_S / 2, f"close() took {took:.1f} s for a thread that had ended"
    assert count_rows(tmp_path / "p.db", "job") == 3  # the guard's flush stored the built round
    assert writer.done
