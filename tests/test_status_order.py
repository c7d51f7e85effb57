"""A job's status by order, not clock (docs/reliability.md, problem 10), on both stores.

Each writer is one process run with its own id and a sequence number per status call: a run the store
has not heard from yet is the newest, the sequence orders a run's calls, and any other run's call is
older. The writers' clocks (`at`) decide nothing, so a resume on a machine an hour behind still ends
`finished`, and a late replayed call of an earlier run changes nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from predictions.delivery import writer as writer_module
from predictions.delivery.outbox import Outbox
from predictions.delivery.writer import Writer
from tests.helpers_outbox import kept, key_of, replay_into

STOP = {"metric": "exact_match", "rounds": 3, "step": 30}


def when(seconds: float) -> str:
    return (datetime(2026, 1, 1, 12, tzinfo=UTC) + timedelta(seconds=seconds)).isoformat()


def status(store, job_id: str = "job") -> tuple:
    (job,) = [job for job in store.list_jobs() if job.id == job_id]
    reason = job.stop_reason.as_dict() if job.stop_reason is not None else None
    return job.status, job.finished_at is not None, reason


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_resume_on_a_machine_an_hour_behind_runs_and_ends_finished(store):
    store.start_job("job", at=when(0), run="first", seq=1)
    store.finish_job("job", status="failed", at=when(600), run="first", seq=2)  # failed at T
    store.start_job("job", at=when(660 - 3600), run="resumed", seq=1)  # its clock: an hour behind
    assert status(store) == ("running", False, None)
    store.finish_job("job", status="finished", at=when(1200 - 3600), run="resumed", seq=2)
    assert status(store) == ("finished", True, None)


def test_a_late_replayed_call_of_an_earlier_run_does_not_undo_a_later_finish(store):
    store.start_job("job", at=when(0), run="first", seq=1)
    store.finish_job("job", status="failed", at=when(600), run="first", seq=2)
    store.start_job("job", at=when(-3000), run="resumed", seq=1)
    store.finish_job("job", status="finished", at=when(-2400), run="resumed", seq=2)
    store.start_job("job", name="replayed late", at=when(0), run="first", seq=1)  # from an outbox
    store.finish_job("job", status="failed", at=when(7200), run="first", seq=2)  # a clock far ahead
    (job,) = store.list_jobs()
    assert (job.status, job.name, job.finished_at is not None) == ("finished", "replayed late", True)


def test_retried_duplicates_and_a_runs_calls_out_of_order_keep_the_runs_last_status(store):
    store.finish_job("job", status="finished", at=when(10), run="only", seq=2)  # before its start
    store.start_job("job", at=when(0), run="only", seq=1)
    assert status(store) == ("finished", True, None)
    store.finish_job("job", status="finished", at=when(10), run="only", seq=2)  # a retried duplicate
    assert status(store) == ("finished", True, None)


def test_a_stopped_status_keeps_its_reason_against_older_runs(store):
    store.start_job("job", at=when(0), run="first", seq=1)
    store.finish_job("job", status="failed", at=when(600), run="first", seq=2)
    store.start_job("job", at=when(-3000), run="resumed", seq=1)
    store.finish_job("job", status="stopped", at=when(-2400), run="resumed", seq=2, stop_reason=STOP)
    store.start_job("job", at=when(0), run="first", seq=1)  # replayed late
    assert status(store) == ("stopped", True, STOP)
    store.start_job("job", at=when(-9000), run="third", seq=1)  # resumed again: runs, without a reason
    assert status(store) == ("running", False, None)


def test_calls_without_a_run_are_still_ordered_by_their_time(store):
    """An older writer's calls (or an old outbox entry) carry no run: `at` orders them, as before."""
    store.start_job("job", at=when(0))
    store.finish_job("job", status="finished", at=when(10))
    store.start_job("job", at=when(1))
    assert status(store) == ("finished", True, None)
    store.start_job("job", at=when(-9000), run="new writer", seq=1)  # a run always beats no run
    assert status(store) == ("running", False, None)


def test_writers_on_skewed_clocks_and_a_late_replay_through_the_outbox(store, tmp_path, monkeypatch):
    """The real path: two Writer runs, the second on a clock an hour behind, then the first run's
    start replayed from an outbox (how a call spooled during an outage arrives late)."""
    first = Writer(store, spool_path=tmp_path / "first.outbox.db")
    first.start_job("job", name="train")
    first.finish_job("job", status="failed")
    first.close()
    assert status(store) == ("failed", True, None)
    behind = datetime.now(UTC) - timedelta(hours=1)
    monkeypatch.setattr(writer_module, "now_text", lambda: behind.isoformat())
    resumed = Writer(store, spool_path=tmp_path / "resumed.outbox.db")
    resumed.start_job("job", name="train")
    wait_until(lambda: status(store) == ("running", False, None))  # while it runs
    resumed.finish_job("job", status="finished")
    resumed.close()
    assert status(store) == ("finished", True, None)
    late = tmp_path / "late.outbox.db"
    old_start = {"op": "start_job", "job_id": "job", "at": when(0), "run": first.run_id, "seq": 1}
    Outbox(late).append(key_of(store), [old_start, old_start])
    assert replay_into(store, late).stored == 2 and kept(late) == []
    assert status(store) == ("finished", True, None)


@pytest.mark.parametrize("status_name", ["finished", "failed"])
def test_each_writer_is_its_own_run_with_rising_sequence_numbers(tmp_path, status_name):
    """What orders the calls is in each kept call: the run id and a sequence that rises within it."""
    writer = Writer(None, spool_path=tmp_path / "o.db")
    writer.start_job("job")
    writer.finish_job("job", status=status_name)
    writer.close()
    calls = kept(tmp_path / "o.db")
    other = Writer(None, spool_path=tmp_path / "other.db")
    other.close()
    assert [(c["op"], c["run"], c["seq"]) for c in calls] == [
        ("start_job", writer.run_id, 1),
        ("finish_job", writer.run_id, 2),
    ]
    assert other.run_id != writer.run_id


# run numbers: the order a resume knows from its checkpoint


def test_an_earlier_run_replayed_after_a_later_one_reached_the_store_is_older(store):
    """Run 1's every call waited in an outbox; run 2 (resumed from run 1's checkpoint) reached the
    store first. Run 1's calls, arriving last, are older by their run number, not newer by arrival."""
    store.start_job("job", at=when(3600), run="second", seq=1, run_number=2)
    store.finish_job("job", status="finished", at=when(4000), run="second", seq=2, run_number=2)
    store.start_job("job", name="first, replayed", at=when(0), run="first", seq=1, run_number=1)
    store.finish_job("job", status="failed", at=when(600), run="first", seq=2, run_number=1)
    (job,) = store.list_jobs()
    assert (job.status, job.name) == ("finished", "first, replayed")  # the name is the start's, not a status


def test_a_higher_run_number_wins_even_when_its_run_was_heard_from_before(store):
    store.start_job("job", at=when(0), run="third", seq=1, run_number=3)  # heard from first, then quiet
    store.start_job("job", at=when(10), run="second", seq=1, run_number=2)  # arrives later, lower number
    assert status(store) == ("running", False, None)
    store.finish_job("job", status="failed", at=when(20), run="second", seq=2, run_number=2)
    assert status(store) == ("running", False, None)  # run 3 is the newest: run 2's failure is history
    store.finish_job("job", status="finished", at=when(30), run="third", seq=2, run_number=3)
    assert status(store) == ("finished", True, None)


def test_equal_or_unknown_run_numbers_keep_the_first_arrival_rule(store):
    store.start_job("job", at=when(0), run="a", seq=1, run_number=1)
    store.finish_job("job", status="failed", at=when(10), run="a", seq=2, run_number=1)
    store.start_job("job", at=when(-100), run="b", seq=1, run_number=1)  # an id reused, no checkpoint
    assert status(store) == ("running", False, None)  # not heard from before: the newer
    store.finish_job("job", status="failed", at=when(20), run="a", seq=3, run_number=1)
    assert status(store) == ("running", False, None)  # heard from before, not current: older
    store.start_job("job", at=when(30), run="older writer", seq=1)  # no number: arrival decides
    assert status(store) == ("running", False, None)
    store.finish_job("job", status="finished", at=when(40), run="older writer", seq=2)
    assert status(store) == ("finished", True, None)


def test_a_whole_run_kept_in_an_outbox_and_replayed_after_its_resume_stays_older(store, tmp_path):
    """The real path: run 1's writer never reaches a store; run 2 (its resume) starts and finishes;
    then run 1's calls are replayed from an outbox. The job stays finished."""
    first = Writer(None, spool_path=tmp_path / "first.outbox.db", run_number=1)  # no store to open
    first.start_job("job", name="train")
    first.finish_job("job", status="failed")
    first.close(timeout_s=5)
    calls = kept(tmp_path / "first.outbox.db")
    assert [(call["op"], call["run_number"]) for call in calls] == [("start_job", 1), ("finish_job", 1)]
    second = Writer(store, spool_path=tmp_path / "second.outbox.db", run_number=2)
    second.start_job("job", name="train")
    second.finish_job("job", status="finished")
    second.close()
    late = tmp_path / "late.outbox.db"
    Outbox(late).append(key_of(store), calls)  # run 1's calls, kept for this store
    assert replay_into(store, late).stored == 2 and kept(late) == []
    assert status(store) == ("finished", True, None)


def test_a_runs_number_counts_the_resumes_its_checkpoint_records():
    from predictions.training.monitor import run_number_of

    assert run_number_of("job", 0, None, None) == 1  # a fresh run
    assert run_number_of("job", 8, "job", 1) == 2 and run_number_of("job", 8, "job", 5) == 6
    assert run_number_of("job", 8, "job", None) == 2  # a checkpoint of an earlier version: run 1's
    assert run_number_of("job", 8, "another job", 4) == 1  # an explicit id: not that checkpoint's job
    assert run_number_of("job", 8, "job", "3") == 2  # a number that is not one counts as run 1's
