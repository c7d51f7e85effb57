"""The outbox keeps each owner's calls for that owner: two people on one Supabase project, a revoked
key, an outbox that cannot be written. Real Postgres through the PostgREST emulator and supabase-py."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time

import pytest

from predictions.__main__ import main
from predictions.delivery import outbox_place
from predictions.delivery.outbox import Outbox
from predictions.delivery.writer import Writer
from predictions.errors import StoreUnavailableError
from predictions.store import SQLiteStore, open_store
from predictions.store.identity import ingest_key_owner, sqlite_identity
from predictions.store.records import PageQuery, PredictionRow
from tests.helpers import wait_until
from tests.helpers_outbox import kept, key_of
from tests.helpers_training import count_rows, locked
from tests.pg_fixtures import USER_A, USER_B, acting_as, service_store, user_store
from tests.test_ingest_keys import create_key, trainer_env


def rows(job_id: str, step: int, count: int = 4) -> list[PredictionRow]:
    return [PredictionRow(job_id, 1, step, i, f"p{i}", f"a{i}", f"a{i}") for i in range(count)]


def owners(database: str) -> list[tuple[str, str, int]]:
    """(job, owner, rows) as Postgres holds them, whoever is asking."""
    with acting_as(database, "postgres") as conn:
        return conn.execute(
            "select job_id, user_id::text, count(*)::int from training_predictions group by 1, 2 order by 1"
        ).fetchall()


def unreachable():
    raise StoreUnavailableError("Supabase is down")


def test_a_replay_under_another_identity_never_sends_the_calls_it_did_not_write(
    postgrest, supabase_database, monkeypatch, tmp_path
):
    path = tmp_path / "shared.outbox.db"  # one OS account: one outbox for both people
    ada, bob = create_key(postgrest, USER_A, "ada-box"), create_key(postgrest, USER_B, "bob-box")
    trainer_env(monkeypatch, postgrest, ada)
    down = Writer(None, open_store=unreachable, spool_path=path, backoff_s=60)  # Ada's run, store down
    down.start_job("ada-run", name="Ada's")
    down.write(rows("ada-run", 1))
    down.finish_job("ada-run")
    down.close(timeout_s=5)
    assert [key.owner for key in Outbox(path).pending()] == [ingest_key_owner(ada)]

    trainer_env(monkeypatch, postgrest, bob)
    bobs = Writer(open_store(env_file=tmp_path / "absent.env"), spool_path=path)  # Bob's run, store up
    bobs.write(rows("bob-run", 1))
    bobs.close()
    assert owners(supabase_database) == [("bob-run", USER_B, 4)]
    assert len(kept(path)) == 3  # Ada's calls wait for Ada

    trainer_env(monkeypatch, postgrest, ada)
    Writer(open_store(env_file=tmp_path / "absent.env"), spool_path=path).close()  # Ada again
    assert owners(supabase_database) == [("ada-run", USER_A, 4), ("bob-run", USER_B, 4)]
    assert kept(path) == []
    with acting_as(supabase_database, "postgres") as conn:
        assert conn.execute("select user_id::text, status from training_jobs").fetchall() == [
            (USER_A, "finished")
        ]


def test_a_revoked_key_is_one_decision_and_the_rows_wait_for_a_new_key(
    postgrest, monkeypatch, tmp_path, caplog
):
    path = tmp_path / "p.outbox.db"
    secret = create_key(postgrest, USER_A, "laptop")
    trainer_env(monkeypatch, postgrest, secret)
    writer = Writer(open_store(env_file=tmp_path / "absent.env"), spool_path=path, backoff_s=0.01)
    writer.start_job("run", name="Run")
    writer.write(rows("run", 1))
    writer.close()
    owner = user_store(postgrest, USER_A)
    owner.revoke_ingest_key("laptop")
    writer = Writer(writer.store, spool_path=path, backoff_s=0.01)
    before = len(postgrest.api.calls)
    with caplog.at_level(logging.ERROR):
        for step in range(2, 12):
            writer.write(rows("run", step, count=100))
        writer.finish_job("run")
        writer.close()
    assert len(postgrest.api.calls) - before <= 2  # one refusal, not one call per row
    refusals = [r for r in caplog.records if "refused the credentials" in r.getMessage()]
    assert len(refusals) == 1 and "PREDICTIONS_INGEST_KEY refused" in refusals[0].getMessage()
    assert "sign in first" not in caplog.text
    assert Outbox(path).quarantined() == [] and len(kept(path)) == 11  # 10 rounds and the finish

    trainer_env(monkeypatch, postgrest, owner.create_ingest_key("laptop-2"))  # the same user's new key
    Writer(open_store(env_file=tmp_path / "absent.env"), spool_path=path).close()
    assert kept(path) == []
    assert owner.predictions_page("run", PageQuery(limit=1)).total_count == 4 + 1000
    assert owner.list_jobs()[0].status == "finished"


@pytest.mark.parametrize("outbox_at", ["a folder", "under a file", "/proc"])
def test_an_outbox_that_cannot_be_written_never_stops_a_store_that_answers(store, tmp_path, outbox_at):
    (tmp_path / "file").write_text("")
    path = {"a folder": tmp_path, "under a file": tmp_path / "file" / "o.db", "/proc": "/proc/o.db"}[
        outbox_at
    ]
    writer = Writer(store, spool_path=path)
    for step in range(1, 6):
        writer.write(rows("job", step))
    writer.finish_job("job")
    writer.close()
    assert store.predictions_page("job", PageQuery(limit=100)).total_count == 20
    assert store.list_jobs()[0].status == "finished"


def test_with_neither_store_nor_outbox_rows_are_held_and_stored_once_the_store_answers(tmp_path, caplog):
    db = tmp_path / "p.db"
    store = SQLiteStore(db, timeout_s=0.05)
    writer = Writer(store, spool_path=tmp_path, retries=1, backoff_s=0.05)  # a folder: no outbox
    with caplog.at_level(logging.ERROR), locked(db):
        writer.write(rows("job", 1))
        writer.write(rows("job", 2))
        wait_until(lambda: "can be neither stored nor kept" in caplog.text, 20)
    writer.write(rows("job", 3))
    writer.close()
    assert count_rows(db, "job") == 12
    assert "LOST" not in caplog.text  # named when held, stored when the store came back


def test_rows_held_at_train_end_are_retried_until_close_gives_up_not_lost_at_once(tmp_path, caplog):
    """A full disk and a store down at train end: the held rows exist nowhere else, so `close()` keeps
    trying the store for as long as it waits, rather than naming them LOST the moment training ends."""
    db = tmp_path / "p.db"
    writer = Writer(SQLiteStore(db, timeout_s=0.05), spool_path=tmp_path, retries=1, backoff_s=0.05)
    taken, free = threading.Event(), threading.Event()

    def hold_the_lock_until_close_began():
        with locked(db):
            taken.set()
            free.wait(20)
            time.sleep(1.0)  # close() has begun and found the store still locked

    holder = threading.Thread(target=hold_the_lock_until_close_began)
    holder.start()
    taken.wait()
    with caplog.at_level(logging.ERROR):
        writer.write(rows("job", 1))
        writer.finish_job("job")
        wait_until(lambda: "can be neither stored nor kept" in caplog.text, 20)
        free.set()
        writer.close(timeout_s=30)
    holder.join()
    assert count_rows(db, "job") == 4 and SQLiteStore(db).list_jobs()[0].status == "finished"
    assert "LOST" not in caplog.text


@pytest.fixture
def full_disk(tmp_path):
    """A real full disk: a 64 KiB tmpfs filled up (mounting needs root, as the tests run here)."""
    mount = tmp_path / "full"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        with open(mount / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"x" * 1024)
        yield mount
    finally:
        busy = subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode
        if busy:
            subprocess.run(["umount", "--lazy", str(mount)], check=False)
    assert not busy, "a file on the full disk was left open (a connection the outbox did not close)"


def test_an_outbox_on_a_full_disk_holds_the_rows_names_the_disk_and_the_store_gets_them(
    tmp_path, full_disk, caplog, capsys, monkeypatch
):
    db = tmp_path / "p.db"
    writer = Writer(SQLiteStore(db, timeout_s=0.05), spool_path=full_disk / "o.db", retries=1, backoff_s=0.05)
    with caplog.at_level(logging.ERROR), locked(db):
        writer.write(rows("job", 1))
        wait_until(lambda: "can be neither stored nor kept" in caplog.text, 20)
    writer.write(rows("job", 2))
    writer.finish_job("job")
    writer.close(timeout_s=30)
    assert count_rows(db, "job") == 8 and SQLiteStore(db).list_jobs()[0].status == "finished"
    assert "bytes free: free some space" in caplog.text and "LOST" not in caplog.text
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    assert main(["spool", "--spool", str(full_disk / "o.db")]) == 2
    assert "bytes free: free some space, or set PREDICTIONS_SPOOL elsewhere" in capsys.readouterr().out


def test_a_default_outbox_on_a_full_disk_stays_where_it_is(full_disk, monkeypatch):
    """A full disk is not a read-only one: no fallback in the user cache (most likely the same disk);
    the outbox's own error names the disk and what to do, as above."""
    monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
    place = outbox_place.choose(sqlite_identity(full_disk / "p.db")[0])
    assert place == outbox_place.Place(full_disk / "p.outbox.db")


def test_keys_of_stores_and_owners(tmp_path, postgrest, monkeypatch):
    store = SQLiteStore(tmp_path / "p.db")
    assert key_of(store).store == f"sqlite:{(tmp_path / 'p.db').resolve()}"
    monkeypatch.setenv("SUPABASE_URL", postgrest.url)
    monkeypatch.setenv("SUPABASE_KEY", postgrest.service_key)
    monkeypatch.setenv("PREDICTIONS_USER_ID", USER_A)
    monkeypatch.delenv("PREDICTIONS_INGEST_KEY", raising=False)
    service = open_store(env_file=tmp_path / "absent.env")
    assert key_of(service).owner == f"user {USER_A}"
    assert service.outbox_key(USER_B)[1] == f"user {USER_B}"  # a run written for another user


def test_replayed_starts_and_finishes_keep_the_owner_they_were_written_for(
    postgrest, supabase_database, monkeypatch, tmp_path
):
    """An admin's machine (service-role key, configured for Ada) runs jobs for Bob (`user_id=B`). The
    calls that waited in the outbox carry Bob as their owner: Ada's replay leaves them, and a later
    process for Bob sends them as Bob's, whatever the store is configured for."""
    path = tmp_path / "o.db"
    monkeypatch.setenv("SUPABASE_URL", postgrest.url)
    monkeypatch.setenv("SUPABASE_KEY", postgrest.service_key)
    monkeypatch.setenv("PREDICTIONS_USER_ID", USER_A)
    monkeypatch.delenv("PREDICTIONS_INGEST_KEY", raising=False)
    started = Writer(open_store(env_file=tmp_path / "absent.env"), spool_path=path, user_id=USER_B)
    started.start_job("bobs-first", name="Bob's first")  # stored: only its finish will wait
    started.close()
    down = Writer(None, open_store=unreachable, spool_path=path, user_id=USER_B, backoff_s=60)
    down.finish_job("bobs-first")
    down.start_job("bobs-second", name="Bob's second")
    down.finish_job("bobs-second", status="failed")
    down.close(timeout_s=5)
    assert [call["user_id"] for call in kept(path)] == [USER_B] * 3
    assert [key.owner for key in Outbox(path).pending()] == [f"user {USER_B}"]

    Writer(open_store(env_file=tmp_path / "absent.env"), spool_path=path).close()  # Ada's identity
    assert len(kept(path)) == 3  # not hers: left waiting

    Writer(open_store(env_file=tmp_path / "absent.env"), spool_path=path, user_id=USER_B).close()
    assert kept(path) == []
    with acting_as(supabase_database, "postgres") as conn:
        jobs = conn.execute("select user_id::text, id, status from training_jobs order by id").fetchall()
    assert jobs == [(USER_B, "bobs-first", "finished"), (USER_B, "bobs-second", "failed")]


@pytest.mark.parametrize("backend", ["sqlite", "supabase"])
def test_a_finish_that_names_its_owner_finishes_that_owners_job(backend, request, tmp_path):
    """Two owners with a job of the same id (ids are per owner): a finish naming one finishes only it."""
    if backend == "sqlite":
        store = SQLiteStore(tmp_path / "p.db")
    else:
        store = service_store(request.getfixturevalue("postgrest"), user_id=None)  # reads every owner
    for owner in (USER_A, USER_B):
        store.start_job("same", user_id=owner, run=f"run-{owner}", seq=1)
    store.finish_job("same", user_id=USER_B, run=f"run-{USER_B}", seq=2)
    jobs = sorted((job.user_id, job.status) for job in store.list_jobs())
    assert jobs == [(USER_A, "running"), (USER_B, "finished")]
