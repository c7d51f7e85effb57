"""`python -c CODE` (or `python SCRIPT`) for the tests, without importing torch and transformers again.

A test that must see what a real interpreter does at its end (atexit, signal handlers, non-daemon
threads joined, an uncaught exception printed with exit code 1, SIGTERM's default action) needs a
program of its own; started with `sys.executable`, each one spends about 8 s of CPU importing torch,
transformers and trl before a second of work. `start_python` and `run_python` hand the same program
to a zygote instead: a helper process per test process (started on first use, then reused) that
imported those modules once and forks a child per request. The child becomes the program
(tests/zygote_server.py): the request's argv, environment, cwd, standard streams and session, the
signals the test process ignores and blocks (inherited as across exec) and then Python's own signal
handlers, a fresh `__main__`, and the code run at the top level of the
zygote's main script, so that the interpreter's own shutdown ends it exactly as it ends `python -c`.
A multiprocessing child is no substitute: it leaves by `os._exit` and skips all of that.

Who reaps: the zygote is the child's parent. It waits for each child (a pidfd per child in its one
select loop, no thread and no signal handler) and sends the raw wait status over a socket pair that
belongs to that one request; the handle reads it there. The pid is the child's real pid, so signals go
straight to it. A double fork would make the child nobody's to reap but init's, and the test would
learn the exit status no better.

Limits, and what is done about them:
- Environment read at import time. The zygote's modules read some variables once, as they were
  imported (OMP_NUM_THREADS for torch's thread pool, HF_HOME for every Hugging Face cache path, tqdm's
  TQDM_* defaults...). A zygote is started with the environment of the request that first needs it,
  and only serves requests whose import-time variables (`import_time`) are equal; others get their
  own zygote (at most `MAX_ZYGOTES` per process) and past that a real interpreter. PYTHONPATH is not
  one of them: each child gets the sys.path its own PYTHONPATH and cwd give.
- Modules already imported stay imported: the program does not re-run their import-time code, and
  does not print their import-time warnings again.
- Fork safety: the zygote starts no thread and runs no torch op; it refuses to start if the preload
  started a thread, but for pyarrow's jemalloc purger, which jemalloc's fork handler turns off in the
  child (tests/zygote_server.py). With OMP_NUM_THREADS unset, importing torch starts an OpenMP thread:
  the suite sets it to 1 (conftest).
- Python's hash seed is the zygote's for every child; numpy's global generator is reseeded.
- The preloaded objects are gc-frozen: a child's garbage collections skip them, so that it does not
  copy their pages (a child's shutdown costs 0.45 s of CPU instead of 1.7 s; a real interpreter's import
  and shutdown 10.7 s). A reference cycle among them that the child drops is not collected.
- `python -m tests.zygote` measures what a child costs against a real interpreter.
- Linux only (pidfds, /proc); elsewhere, or with PREDICTIONS_TEST_ZYGOTE=0, every call runs a real
  interpreter. tests/test_zygote.py runs each exit path on a real interpreter and on a zygote child
  and compares them; a new way for a program to end gets a test there. The README example's run stays
  on a real interpreter (`real=True`): a user's whole run, its start included.
"""

from __future__ import annotations

import io
import json
import locale
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
SERVER = Path(__file__).with_name("zygote_server.py")
PRELOAD = (
    "torch",
    "transformers",
    "accelerate",
    "trl",
    "predictions.training.callback",
    "predictions.training.rollouts",
    "predictions.demo.run",
    "tests.helpers_training",
    "tests.helpers_grpo",
    "tests.helpers_distributed",
)
"""What the programs import (the test helpers import Trainer, GRPOTrainer and the tiny model; the
distributed ranks, torch.distributed's FSDP and checkpoint modules)."""

IMPORT_TIME_PREFIXES = (
    "PYTHON", "OMP_", "MKL_", "KMP_", "TORCH", "PYTORCH_", "CUDA", "HF_", "HUGGINGFACE_", "TRANSFORMERS_",
    "ACCELERATE_", "TRL_", "TOKENIZERS_", "TQDM_", "WANDB_", "DS_", "LC_",
)  # fmt: skip
IMPORT_TIME_NAMES = ("LANG", "HOME", "TMPDIR")
CALL_TIME_NAMES = ("PYTORCH_NVML_BASED_CUDA_CHECK",)
"""Read when called, not at import (by `torch.cuda.is_available()`). Importing DeepSpeed sets it, and
a Trainer imports DeepSpeed where it is installed: keyed on it, every test process that made a Trainer
before its first program would start a second zygote (9 s of CPU). A child still gets it."""
MAX_ZYGOTES = 2
"""Zygotes per test process; each holds about 0.5 GB and costs one import of everything to start."""


def import_time(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The variables of `env` that the preloaded modules read as they are imported.

    XDG_CACHE_HOME counts only without HF_HOME: it is read at import just to derive the Hugging Face
    cache paths (huggingface_hub, datasets, accelerate), and HF_HOME takes precedence over it."""
    names = [
        n
        for n in env
        if (n.startswith(IMPORT_TIME_PREFIXES) or n in IMPORT_TIME_NAMES) and n not in CALL_TIME_NAMES
    ]
    if "HF_HOME" not in env and "XDG_CACHE_HOME" in env:
        names.append("XDG_CACHE_HOME")
    return tuple(sorted((n, env[n]) for n in names if n != "PYTHONPATH"))


def available() -> bool:
    return hasattr(os, "pidfd_open") and os.environ.get("PREDICTIONS_TEST_ZYGOTE", "1") != "0"


class Zygote:
    """One zygote process and the control socket that sends it requests (one at a time)."""

    def __init__(self, env: Mapping[str, str]):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [sys.executable, str(SERVER), str(theirs.fileno()), *PRELOAD]
        output = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), pass_fds=[theirs.fileno()], **output
        )
        theirs.close()
        self.control, self.lock = ours, threading.Lock()

    def fork(self, argv: list[str], env: Mapping[str, str], cwd: str, stdio: list[int], new_session: bool):
        """Ask for a child; returns its pid and the socket its wait status will arrive on."""
        ignored, blocked = signal_masks()
        request = {"argv": argv, "env": dict(env), "cwd": cwd, "new_session": new_session}
        request |= {"ignored": ignored, "blocked": blocked}
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self.lock:
            socket.send_fds(self.control, [json.dumps(request).encode()], [theirs.fileno(), *stdio])
        theirs.close()
        answer = ours.recv(8)
        if not answer:
            raise RuntimeError(f"the zygote exited ({self.process.wait()}); its stderr says why")
        return struct.unpack("!q", answer)[0], ours

    def close(self) -> None:
        """End the zygote (its children run on) and wait for it."""
        self.control.close()
        self.process.wait()


def signal_masks() -> tuple[list[int], list[int]]:
    """The signals this process ignores and this thread blocks: a program started now inherits both."""
    status = Path("/proc/thread-self/status").read_text().splitlines()
    masks = dict(line.split(":", 1) for line in status if line.startswith(("SigIgn", "SigBlk")))
    return tuple(
        [n for n in range(1, 65) if int(masks[name], 16) >> (n - 1) & 1] for name in ("SigIgn", "SigBlk")
    )


_zygotes: dict[tuple, Zygote] = {}
_zygotes_lock = threading.Lock()


def zygote_for(env: Mapping[str, str]) -> Zygote | None:
    """The zygote whose import-time environment is `env`'s, started if there is room; else None."""
    key = import_time(env)
    with _zygotes_lock:
        if key not in _zygotes and len(_zygotes) < MAX_ZYGOTES:
            _zygotes[key] = Zygote(env)
        return _zygotes.get(key)


class ZygoteProcess:
    """A zygote's child, handled like `subprocess.Popen`: pid, poll, wait, communicate, send_signal."""

    def __init__(self, args: list[str], pid: int, status: socket.socket, streams: list[IO | None]):
        self.args, self.pid, self.returncode = args, pid, None
        self.stdin, self.stdout, self.stderr = streams
        self._status, self._readers = status, None

    def poll(self) -> int | None:
        try:
            return self._receive(0.0)
        except TimeoutError:  # nothing reported yet
            return None

    def wait(self, timeout: float | None = None) -> int:
        try:
            return self._receive(timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired(self.args, timeout) from None

    def _receive(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            self._status.settimeout(timeout)
            try:
                data = self._status.recv(4)
            except BlockingIOError:
                raise TimeoutError from None
            if not data:
                raise RuntimeError(f"the zygote went away before reporting how pid {self.pid} ended")
            self.returncode = os.waitstatus_to_exitcode(struct.unpack("!i", data)[0])
            self._status.close()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Feed `input`, read both outputs to their end and wait, as Popen does (threads, like on Windows)."""
        if self._readers is None:
            self._readers = [Reader(stream) for stream in (self.stdout, self.stderr)]
            if self.stdin is not None:
                threading.Thread(target=feed, args=(self.stdin, input), daemon=True).start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        out, err = (reader.result() for reader in self._readers)
        if any(reader.is_alive() for reader in self._readers):
            raise subprocess.TimeoutExpired(self.args, timeout, output=out, stderr=err)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return out, err

    def __enter__(self) -> ZygoteProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait()


class Reader(threading.Thread):
    """Reads one output stream to its end (or stands in for a stream that is not a pipe)."""

    def __init__(self, stream: IO | None):
        super().__init__(daemon=True)
        self.stream, self.parts = stream, []
        self.start()

    def run(self) -> None:
        if self.stream is not None:
            while part := self.stream.read(65536):
                self.parts.append(part)
            self.stream.close()

    def result(self) -> Any:
        if self.stream is None:
            return None
        return ("" if isinstance(self.stream, io.TextIOBase) else b"").join(self.parts)


def feed(stdin: IO, data: Any) -> None:
    try:
        if data:
            stdin.write(data)
        stdin.close()
    except BrokenPipeError:
        pass


def child_end(spec: Any, std: int, stdout_fd: int | None, ours: list[int]) -> tuple[int, IO | None, bool]:
    """The fd the child gets for `spec` (None, PIPE, DEVNULL, STDOUT, an fd or a file), the parent's end
    of a pipe, and whether the child's fd is ours to close once sent."""
    if spec == subprocess.PIPE:
        read, write = os.pipe()
        child, parent = (read, write) if std == 0 else (write, read)
        ours.append(parent)
        return child, parent, True
    if spec == subprocess.STDOUT:
        return stdout_fd, None, False
    if spec == subprocess.DEVNULL:
        return os.open(os.devnull, os.O_RDWR), None, True
    if spec is None:  # the test process's own stream, as a Popen child inherits it (/dev/null if closed)
        try:
            os.fstat(std)
        except OSError:
            return os.open(os.devnull, os.O_RDWR), None, True
        return std, None, False
    return (spec if isinstance(spec, int) else spec.fileno()), None, False


def start_python(
    *argv: str | os.PathLike,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    text: bool = False,
    start_new_session: bool = False,
    real: bool = False,
) -> ZygoteProcess | subprocess.Popen:
    """`subprocess.Popen([sys.executable, *argv], ...)`, forked from a zygote unless `real` (or no zygote
    can serve this environment). `argv` is `("-c", CODE, *args)` or `(SCRIPT, *args)`."""
    argv_text = [os.fspath(a) for a in argv]
    env = dict(os.environ if env is None else env)
    cwd = os.path.abspath(os.fspath(cwd if cwd is not None else os.getcwd()))
    zygote = None if real or not available() else zygote_for(env)
    if zygote is None:
        options = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "text": text}
        return subprocess.Popen(
            [sys.executable, *argv_text], env=env, cwd=cwd, **options, start_new_session=start_new_session
        )
    if not os.path.isdir(cwd):
        raise FileNotFoundError(f"cwd {cwd!r} is not a directory")
    parents: list[int] = []
    sent, close = [], []
    for std, spec in enumerate((stdin, stdout, stderr)):
        fd, _, ours = child_end(spec, std, sent[1] if len(sent) > 1 else None, parents)
        sent.append(fd)
        if ours:
            close.append(fd)
    try:
        pid, status = zygote.fork(argv_text, env, cwd, sent, start_new_session)
    finally:
        for fd in close:
            os.close(fd)
    streams = wrap(parents, (stdin, stdout, stderr), text)
    return ZygoteProcess([sys.executable, *argv_text], pid, status, streams)


def wrap(parents: list[int], specs: Sequence[Any], text: bool) -> list[IO | None]:
    """File objects over the parent's ends of the pipes, in the order stdin, stdout, stderr."""
    ends = iter(parents)
    streams: list[IO | None] = []
    for std, spec in enumerate(specs):
        if spec != subprocess.PIPE:
            streams.append(None)
            continue
        binary = open(next(ends), "wb" if std == 0 else "rb")  # noqa: SIM115 (the handle owns it)
        encoding = locale.getpreferredencoding(False)
        streams.append(io.TextIOWrapper(binary, encoding, write_through=std == 0) if text else binary)
    return streams


def run_python(
    *argv: str | os.PathLike,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
    input: str | None = None,
    real: bool = False,
) -> subprocess.CompletedProcess:
    """`subprocess.run([sys.executable, *argv], capture_output=True, text=True, ...)` through the zygote."""
    stdin = subprocess.PIPE if input is not None else None
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    process = start_python(*argv, env=env, cwd=cwd, stdin=stdin, text=True, real=real, **pipes)
    try:
        out, err = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(children: int = 5) -> None:
    """Print the CPU seconds of a real interpreter that imports PRELOAD and ends, and of a zygote's child
    that ends at once (from the CPU of a zygote serving `children` children, less one serving none). A
    zygote's CPU reaches this process once it has ended and been waited for."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = children_cpu()
    imports = "; ".join(f"import {name}" for name in PRELOAD)
    subprocess.run([sys.executable, "-c", imports], env={**env, "PYTHONPATH": str(ROOT)}, check=True)
    real = children_cpu() - before
    spent = []
    for count in (0, children):
        before, zygote = children_cpu(), Zygote(env)
        for _ in range(count):
            pid, status = zygote.fork(["-c", "pass"], env, str(ROOT), [0, 1, 2], False)
            ZygoteProcess([], pid, status, [None, None, None]).wait()
        zygote.close()
        spent.append(children_cpu() - before)
    print(f"real interpreter, import and exit: {real:.2f} s CPU; zygote start: {spent[0]:.2f} s CPU")
    per_child = (spent[1] - spent[0]) / children
    print(f"a zygote child that ends at once: {per_child:.2f} s CPU (of {children} children)")


if __name__ == "__main__":
    measure()
