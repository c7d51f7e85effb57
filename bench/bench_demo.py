"""How long `make demo` takes a new user: a fresh clone, from the command to each thing they see.

    python bench/bench_demo.py            # clones this repository's HEAD into a scratch folder
    python bench/bench_demo.py --ref main~3   # the same for another commit, to compare side by side
    python bench/bench_demo.py --first-chart  # stop at the first round (on a busy machine training crawls)

Marks, in seconds from `make demo`: the set-up done (the "Dashboard:" line), the dashboard answering,
the first round stored (the first chart: the live page shows it at its next refresh, every 5 s), and
both runs finished ("Training done"). With each mark: the CPU time `make demo` and everything it started
have used so far (user + system; on a shared machine it grows far less than the wall time) and the
machine's load average, because wall times mean little on a busy machine. The clone and its .venv are
deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictions.store.sqlite import DEFAULT_DB_PATH  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rounds_stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("select count(*) from training_rounds").fetchone()[0]
    except sqlite3.Error:
        return 0


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
        return True
    except OSError:
        return False


def cpu_seconds(group: int) -> float:
    """User + system CPU of the live processes in process group `group` and of the children they reaped.

    Linux's /proc/PID/stat: fields 14-17 (utime, stime, cutime, cstime) in clock ticks, field 5 the group.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[2]) == group:
            ticks += sum(int(field) for field in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


class Marks:
    def __init__(self, group: int) -> None:
        self.start, self.group = time.monotonic(), group
        self.seen: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        if name not in self.seen:
            self.seen[name] = time.monotonic() - self.start
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            cpu = cpu_seconds(self.group)
            print(f"{self.seen[name]:7.1f} s  {name}  (CPU {cpu:.1f} s; load {load})", flush=True)


def watch(clone: Path, log_path: Path, timeout_s: float, first_chart: bool) -> dict[str, float]:
    port = free_port()
    url, db = f"http://127.0.0.1:{port}", clone / DEFAULT_DB_PATH
    with open(log_path, "wb") as log:
        demo = subprocess.Popen(["make", "demo", f"PORT={port}"], cwd=clone, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        marks = Marks(group=demo.pid)
        try:
            while time.monotonic() - marks.start < timeout_s and demo.poll() is None:
                text = log_path.read_bytes()
                if b"Dashboard:" in text:
                    marks("set-up done, training starts")
                if "set-up done, training starts" in marks.seen and answers(url):
                    marks("dashboard answers")
                if rounds_stored(db):
                    marks("first round stored (first chart)")
                    if first_chart:
                        break
                if b"Training done" in text:
                    marks("both runs finished")
                    break
                time.sleep(0.5)
        finally:
            stop(demo)
    return marks.seen


def stop(demo: subprocess.Popen) -> None:
    """Ctrl-C, as a user stops it; then SIGTERM and SIGKILL (a background job ignores SIGINT)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        os.killpg(demo.pid, signum)
        try:
            demo.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            print(f"`make demo` outlived {signal.Signals(signum).name}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the clone (and its .venv)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    parser.add_argument("--ref", default="HEAD", help="the commit to clone (default: HEAD)")
    parser.add_argument("--first-chart", action="store_true", help="stop once the first round is stored")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    clone = folder / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", "--detach", args.ref], check=True)
    head = subprocess.check_output(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], text=True)
    print(f"fresh clone of {ROOT} at {head.strip()}")
    print(f"{os.cpu_count()} cores; `make demo` output in {folder / 'demo.log'}")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("PYTHONDONTWRITEBYTECODE is set: Python writes no .pyc, so every start compiles its imports")
    seen = watch(clone, folder / "demo.log", args.timeout, args.first_chart)
    if "both runs finished" not in seen and not args.first_chart:
        print(f"the demo did not finish within {args.timeout:.0f} s; see {folder / 'demo.log'}")
    venv = clone / ".venv"
    if venv.exists():
        size = subprocess.check_output(["du", "-sh", str(venv)], text=True).split()[0]
        print(f".venv: {size}")
    if not args.keep:
        shutil.rmtree(clone, ignore_errors=True)


if __name__ == "__main__":
    main()
