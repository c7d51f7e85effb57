"""The demo: a shortened run learns (the last round's CER is below the first's); the CLI and --dashboard."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from predictions import demo
from predictions.__main__ import main, parser
from predictions.store import SQLiteStore


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(port: int, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no dashboard answered on port {port}")


def test_pairs_are_distinct_reversals_and_seeded():
    pairs = demo.make_pairs(50, seed=3)
    assert pairs == demo.make_pairs(50, seed=3) != demo.make_pairs(50, seed=4)
    assert len({p["prompt"] for p in pairs}) == 50
    assert all(p["prompt"][:-1][::-1] == p["response"] for p in pairs)


@pytest.mark.slow
def test_a_shortened_demo_run_learns(tmp_path):
    result = demo.run_demo(
        db_path=tmp_path / "p.db",
        job_id="demo",
        epochs=2,
        steps_per_epoch=80,
        rounds_per_epoch=2,
        progress=False,
    )
    assert result.rounds == 4
    assert result.last_cer < result.first_cer - 0.2, result
    store = SQLiteStore(tmp_path / "p.db")
    assert store.list_jobs()[0].status == "finished"
    assert store.trends("demo").rounds["sample_count"].tolist() == [16] * 4
    store.close()


@pytest.mark.slow
def test_the_cli_trains_and_reports_the_cer(tmp_path, capsys):
    db = tmp_path / "cli.db"
    argv = ["demo", "--epochs", "1", "--steps-per-epoch", "10", "--rounds-per-epoch", "2", "--db", str(db)]
    assert main([*argv, "--job-id", "cli"]) == 0
    assert "job cli: 2 rounds" in capsys.readouterr().out
    assert [job.id for job in SQLiteStore(db).list_jobs()] == ["cli"]


def test_the_cli_rejects_bad_numbers(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["demo", "--epochs", "0"])
    assert "0 is invalid; valid: an integer >= 1" in capsys.readouterr().err


def test_dashboard_without_app_py_fails_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "REPO_ROOT", tmp_path)
    assert main(["demo", "--dashboard", "--db", str(tmp_path / "p.db")]) == 2
    assert f"needs the dashboard at {tmp_path / 'app.py'}" in capsys.readouterr().err


@pytest.mark.slow
def test_the_dashboard_reads_the_same_file(tmp_path, monkeypatch):
    (tmp_path / "app.py").write_text("import streamlit as st\nst.write('ok')\n")
    monkeypatch.setattr(demo, "REPO_ROOT", tmp_path)
    port = free_port()
    process = demo.start_dashboard(port, tmp_path / "p.db")
    try:
        assert wait_for_health(port) == "ok"
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        assert f"PREDICTIONS_DB={(tmp_path / 'p.db').resolve()}".encode() in environ
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.slow
@pytest.mark.skipif(
    not (demo.REPO_ROOT / "app.py").exists(), reason="app.py (the dashboard) is not written yet"
)
def test_make_demo_command_trains_then_keeps_the_dashboard_until_ctrl_c(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "predictions", "demo", "--dashboard", "--port", str(port)]
    command += [
        "--epochs",
        "1",
        "--steps-per-epoch",
        "5",
        "--rounds-per-epoch",
        "1",
        "--db",
        str(tmp_path / "p.db"),
    ]
    process = subprocess.Popen(command, cwd=demo.REPO_ROOT, stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Training done"):
                break
        assert f"Dashboard: http://localhost:{port}" in lines[0]
        assert wait_for_health(port) == "ok"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
    assert Path(tmp_path / "p.db").exists()
