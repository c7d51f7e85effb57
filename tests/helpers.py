"""What many test files share: a round of prediction rows, waiting for a condition, a free port, a
server's health, and what /proc says of a process (its children, whether it exited, what listens).
(Fixtures are in conftest.py; training helpers in helpers_training.py.)"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TypeVar

from predictions.scoring.metrics import score
from predictions.store.records import PredictionRow

T = TypeVar("T")


def prediction_rows(
    job_id: str = "job",
    *,
    steps: Iterable[int] = (1,),
    samples: int = 3,
    prompt: str = "p",
    prediction: str | None = None,
    truth: str | None = None,
    epoch: int | None = None,
    poison: int | None = None,
) -> list[PredictionRow]:
    """A round of `samples` rows for each step, scored by the real metrics.

    Sample `i` asks `prompt` + `i`; its answer is `prediction`, or by default its own ground truth
    `truth` (by default `a<i>`: every answer right). The epoch is the step unless given. The row at
    `poison` has no prompt, which every store refuses for good (NOT NULL).
    """
    out = []
    for step in steps:
        for i in range(samples):
            expected = f"a{i}" if truth is None else truth
            answer = expected if prediction is None else prediction
            text = None if i == poison else f"{prompt}{i}"
            row_epoch = step if epoch is None else epoch
            scores = score(answer, expected).as_dict()
            out.append(PredictionRow(job_id, row_epoch, step, i, text, answer, expected, **scores))
    return out


def wait_until(
    condition: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.02, what: str = "condition"
) -> T:
    """Poll `condition` until it returns something true, and return that; fail after `timeout_s`.

    For what another thread or process does; never to let time pass (give a clock or `at=` instead).
    """
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} never became true within {timeout_s} s"
        time.sleep(interval_s)
    return result


def free_port() -> int:
    """A TCP port nothing listens on now (each xdist worker asks the kernel for its own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(url: str) -> str | None:
    """The body of Streamlit's health endpoint at `url`, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def wait_for_health(url: str, process: subprocess.Popen | None = None, timeout_s: float = 90.0) -> str:
    """Wait until the server at `url` answers its health check; fail early if `process` has exited."""

    def answered() -> str | None:
        assert process is None or process.poll() is None, f"the server exited with {process.returncode}"
        return health(url)

    return wait_until(answered, timeout_s, interval_s=0.3, what=f"a healthy server at {url}")


def listening_on(port: int) -> set[str]:
    """The addresses something listens on at `port`, read from /proc/net/tcp and tcp6 (Linux)."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:
                raw = bytes.fromhex(address)
                words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]  # little-endian words
                found.add(str(ipaddress.ip_address(b"".join(words))))
    return found


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def exited(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting to be reaped counts: it holds nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def open_files(path: Path) -> int:
    """How many of this process's file descriptors are open on `path` (or its -wal, -shm)."""
    folder = Path("/proc/self/fd")
    targets = [os.path.realpath(folder / fd) for fd in os.listdir(folder)]
    return sum(target.startswith(str(path)) for target in targets)


def lines_until(stream: IO[str], prefix: str) -> list[str]:
    """The lines a process prints, up to and including the first that starts with `prefix` (all of them
    if none does, when the process ends first)."""
    lines = []
    for line in stream:
        lines.append(line)
        if line.startswith(prefix):
            break
    return lines
