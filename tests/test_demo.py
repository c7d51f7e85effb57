"""The demo: a shortened run learns (the last round's CER is below the first's); the CLI and --dashboard."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from predictions.__main__ import _address, main, parser, start_dashboard
from predictions.dashboard import server
from predictions.demo import run as demo
from predictions.store import SQLiteStore
from tests import zygote
from tests.helpers import children, exited, free_port, lines_until, listening_on, wait_for_health, wait_until


@pytest.fixture(autouse=True)
def demo_environment():
    """`predictions demo` sets DS_ACCELERATOR for its own process; run here, in the test process, it
    would stay set for every test after it, and the zygote (tests/zygote.py), keyed on the variables
    read at import, would start a second one for them (9 s of CPU). Put back as it was afterwards."""
    saved = os.environ.get("DS_ACCELERATOR")
    yield
    if saved is None:
        os.environ.pop("DS_ACCELERATOR", None)
    else:
        os.environ["DS_ACCELERATOR"] = saved


def test_pairs_are_distinct_reversals_and_seeded():
    pairs = demo.make_pairs(50, seed=3)
    assert pairs == demo.make_pairs(50, seed=3) != demo.make_pairs(50, seed=4)
    assert len({p["prompt"] for p in pairs}) == 50
    assert all(p["prompt"][:-1][::-1] == p["response"] for p in pairs)


@pytest.mark.slow
def test_a_shortened_demo_run_learns_on_one_thread(tmp_path, monkeypatch):
    import torch

    threads_in_training, make_callback = [], demo.demo_callback

    def recording_callback(*args):
        threads_in_training.append(torch.get_num_threads())
        return make_callback(*args)

    monkeypatch.setattr(demo, "demo_callback", recording_callback)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's setting, put back afterwards
    try:
        result = demo.run_demo(
            db_path=tmp_path / "p.db",
            job_id="demo",
            epochs=2,
            steps_per_epoch=40,  # the CER falls from 0.86 to 0.46 (80 steps an epoch cost twice the time)
            rounds_per_epoch=2,
            progress=False,
        )
        assert (threads_in_training, torch.get_num_threads()) == ([1], 2)
    finally:
        torch.set_num_threads(before)
    assert result.rounds == 4
    assert result.last_cer < result.first_cer - 0.2, result
    store = SQLiteStore(tmp_path / "p.db")
    assert store.list_jobs()[0].status == "finished"
    assert store.trends("demo").rounds["sample_count"].tolist() == [16] * 4
    store.close()


@pytest.mark.slow
def test_the_cli_trains_and_reports_the_cer(tmp_path, capsys):
    db = tmp_path / "cli.db"
    argv = ["demo", "--epochs", "1", "--steps-per-epoch", "2", "--rounds-per-epoch", "2", "--db", str(db)]
    assert main([*argv, "--job-id", "cli"]) == 0  # two runs, one per default learning rate
    out = capsys.readouterr().out
    assert "job cli-lr0.002: 2 rounds" in out and "job cli-lr0.0005: 2 rounds" in out
    jobs = SQLiteStore(db).list_jobs()
    assert sorted((job.id, job.name) for job in jobs) == [
        ("cli-lr0.0005", "Reverse strings, lr 0.0005"),
        ("cli-lr0.002", "Reverse strings, lr 0.002"),
    ]
    assert main([*argv, "--job-id", "one", "--learning-rates", "1e-3"]) == 0
    assert "job one: 2 rounds" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["demo", "dashboard"])
def test_the_dashboard_listens_on_this_machine_only_unless_asked(command):
    assert _address(parser().parse_args([command])) == "127.0.0.1"
    assert _address(parser().parse_args([command, "--all-interfaces"])) == "0.0.0.0"


def test_the_cli_rejects_bad_numbers(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["demo", "--epochs", "0"])
    assert "0 is invalid; valid: an integer >= 1" in capsys.readouterr().err


def fake_checkout(folder: Path) -> Path:
    """A clone whose app.py writes one line (its server answers in a second), with the real Streamlit
    settings: `server.CHECKOUT` set to it, the dashboard runs it."""
    (folder / "pyproject.toml").write_text("")
    (folder / "app.py").write_text("import streamlit as st\nst.write('ok')\n")
    shutil.copytree(server.CHECKOUT / ".streamlit", folder / ".streamlit")
    return folder


@pytest.mark.parametrize("command", [["demo", "--dashboard"], ["dashboard"]], ids=["demo", "dashboard"])
def test_dashboard_without_app_py_fails_clearly(tmp_path, monkeypatch, capsys, command):
    monkeypatch.setattr(server, "CHECKOUT", tmp_path)  # neither a clone here nor the package data
    monkeypatch.setattr(server, "APP_PACKAGE", "predictions.dashboard.not_installed")
    assert main([*command, "--db", str(tmp_path / "p.db")]) == 2
    error = capsys.readouterr().err
    assert f"error: the dashboard's app.py is neither in a clone at {tmp_path} nor installed" in error
    assert "reinstall predictions-monitor" in error


@pytest.mark.parametrize("command", [["demo", "--dashboard"], ["dashboard"]], ids=["demo", "dashboard"])
def test_a_port_in_use_is_said_before_anything_starts(tmp_path, capsys, command):
    with socket.socket() as taken:  # another dashboard, say
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([*command, "--port", str(port), "--db", str(tmp_path / "p.db")]) == 2
    error = capsys.readouterr().err
    assert f"error: port {port} on 127.0.0.1 is in use (Address already in use): another dashboard?" in error
    assert "choose another with --port" in error
    assert not (tmp_path / "p.db").exists()  # the demo did not train


@pytest.mark.slow
def test_the_dashboard_reads_the_same_file(tmp_path, monkeypatch):
    monkeypatch.setattr(server, "CHECKOUT", fake_checkout(tmp_path))
    port = free_port()
    process = start_dashboard(Namespace(port=port, all_interfaces=False), tmp_path / "p.db")
    try:
        assert wait_for_health(f"http://127.0.0.1:{port}") == "ok"
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        assert f"PREDICTIONS_DB={(tmp_path / 'p.db').resolve()}".encode() in environ
    finally:
        process.terminate()
        process.wait(timeout=20)


STUB_DEMO = """
import faulthandler
import signal
import sys
from pathlib import Path

import predictions.__main__ as cli
from predictions.dashboard import server
from predictions.store import SQLiteStore


def stub_training(learning_rates, *, db_path, **options):
    SQLiteStore(db_path).close()  # the file the dashboard reads; no model is trained
    return []


server.CHECKOUT = Path(sys.argv[1])  # a clone whose app.py writes one line (fake_checkout)
cli.run_demos = stub_training
# Ctrl-C as in a terminal, also when the suite runs as a shell's background job (`make test &`, nohup):
# the shell starts those with SIGINT ignored, which every program they start inherits.
signal.signal(signal.SIGINT, signal.default_int_handler)
stacks = open(server.CHECKOUT / "stacks.txt", "w")  # SIGUSR1 writes every thread's stack there
faulthandler.register(signal.SIGUSR1, file=stacks)
sys.exit(cli.main(sys.argv[2:]))
"""
"""`predictions demo --dashboard` with the training and the dashboard stubbed: what is tested is how the
processes end, which the real demo and app would only make slower (the real run is tested above)."""


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize(
    "stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"]
)
def test_the_demo_dashboard_listens_on_127_0_0_1_and_ends_with_the_demo(tmp_path, stop):
    port = free_port()
    fake_checkout(tmp_path)
    argv = [
        "-c",
        STUB_DEMO,
        str(tmp_path),
        "demo",
        "--dashboard",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "p.db"),
    ]
    process = zygote.start_python(*argv, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        lines = lines_until(process.stdout, "Training done")
        assert f"Dashboard: http://127.0.0.1:{port}" in lines[0]
        assert wait_for_health(f"http://127.0.0.1:{port}") == "ok"
        assert listening_on(port) == {"127.0.0.1"}
        (dashboard,) = children(process.pid)
        process.send_signal(stop)
        assert process.wait(timeout=30) == (-signal.SIGKILL if stop == signal.SIGKILL else 0)
        wait_until(lambda: exited(dashboard), 20, interval_s=0.2, what="the dashboard ending with the demo")
    finally:
        if process.poll() is None:  # still running: show where it is in the report, then stop it
            process.send_signal(signal.SIGUSR1)
            stacks = tmp_path / "stacks.txt"
            wait_until(lambda: stacks.stat().st_size, 10, what="the demo's stacks")
            status = Path(f"/proc/{process.pid}/status").read_text().splitlines(keepends=True)
            masks = "".join(line for line in status if line.startswith("Sig"))
            print(f"the demo's stacks:\n{stacks.read_text()}\nits signal masks:\n{masks}", file=sys.stderr)
            print(f"its children: {children(process.pid)}", file=sys.stderr)
            process.kill()
    assert listening_on(port) == set() and (tmp_path / "p.db").exists()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the health checks' TIME_WAIT
        sock.bind(("127.0.0.1", port))  # nothing listens on the port any more
        sock.listen()
