"""The zygote's own program: imports the heavy modules once, then forks one child per request, and the
child becomes the requested Python program. Started by tests/zygote.py (read it first: the design and
its limits are there) as `python tests/zygote_server.py CONTROL_FD MODULE...`.

Run as a script, not with -m, so that no runpy frame sits between the interpreter and the program: in a
child, `serve()` returns the program, which runs at the top level of this file; when it ends, this
script ends, and the interpreter shuts down as after `python -c` (threads joined, atexit, the exit code,
an uncaught exception's traceback printed, KeyboardInterrupt re-sent as SIGINT)."""

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import types
from importlib.machinery import BuiltinImporter, SourceFileLoader
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORK_SAFE_THREADS = {"jemalloc_bg_thd"}
"""Threads a preloaded module may start: pyarrow's jemalloc purges memory in one, and jemalloc's own
fork handler turns them off in the child (it purges inline there). Any other thread refuses the preload."""
MAX_REQUEST = 1 << 20
"""Bytes of one request (argv, environment, cwd); the control socket keeps message boundaries."""


def base_path() -> list[str]:
    """sys.path without its first entry and the PYTHONPATH entries: what every child keeps."""
    entries = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return [p for p in sys.path[1:] if p not in entries]


def preload(modules: list[str]) -> None:
    """Import `modules` once; refuse to serve if that started a thread (a fork keeps only this one)."""
    sys.path.insert(0, ROOT)
    for name in modules:
        importlib.import_module(name)
    del sys.path[0]
    tasks = [task for task in os.listdir("/proc/self/task") if int(task) != os.getpid()]
    names = {Path(f"/proc/self/task/{task}/comm").read_text().strip() for task in tasks}
    if names - FORK_SAFE_THREADS:
        sys.exit(f"zygote: importing {modules} started threads {sorted(names)}; a forked child lacks them")
    gc.collect()
    gc.freeze()  # the imported objects: a child's collections skip them, so it copies 60 MB less of them


def serve(control: socket.socket, keep: list[str]) -> tuple[types.CodeType, dict]:
    """Fork a child per request and report its pid and, once reaped, its wait status. Returns only in a
    child, with the program to run; exits when the client closes the control socket."""
    running: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, reply socket)
    while True:
        ready, _, _ = select.select([control, *running], [], [])
        for fd in ready:
            if fd is not control:
                pid, reply = running.pop(fd)
                report(reply, struct.pack("!i", os.waitpid(pid, 0)[1]))
                os.close(fd)
                continue
            message, fds, _, _ = socket.recv_fds(control, MAX_REQUEST, 4)
            if not message:
                os._exit(0)
            reply, stdio = socket.socket(fileno=fds[0]), fds[1:]
            pid = os.fork()
            if pid == 0:
                control.close()
                for pidfd, (_, other) in running.items():
                    os.close(pidfd)
                    other.close()
                reply.close()
                return become(json.loads(message), stdio, keep)
            for stream in stdio:
                os.close(stream)
            running[os.pidfd_open(pid)] = (pid, reply)
            report(reply, struct.pack("!q", pid))


def report(reply: socket.socket, data: bytes) -> None:
    """Send to the client; one that has gone away (closed its handle) still has its child reaped."""
    with contextlib.suppress(OSError):
        reply.send(data)


def become(request: dict, stdio: list[int], keep: list[str]) -> tuple[types.CodeType, dict]:
    """Turn this forked child into `python ARGV...` with the request's streams, cwd, env and session."""
    if request["new_session"]:
        os.setsid()
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    for fd in set(stdio):
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    reset_signals(set(request["ignored"]), set(request["blocked"]))
    if "numpy" in sys.modules:  # a fresh interpreter seeds numpy's global generator from the OS
        sys.modules["numpy"].random.seed()
    return program(request["argv"], keep)


def reset_signals(ignored: set[int], blocked: set[int]) -> None:
    """The dispositions of `python` started by the client now: what it ignores and blocks is inherited
    (but SIGPIPE and SIGXFSZ, which Popen's restore_signals resets), then Python's own start: SIGINT
    raises KeyboardInterrupt unless ignored, SIGPIPE and SIGXFSZ are ignored."""
    own = {signal.SIGPIPE: signal.SIG_IGN, signal.SIGXFSZ: signal.SIG_IGN}
    for signum in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
        handler = signal.SIG_IGN if signum in ignored else signal.SIG_DFL
        if signum == signal.SIGINT and handler == signal.SIG_DFL:
            handler = signal.default_int_handler
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, own.get(signum, handler))
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked & signal.valid_signals())


def program(argv: list[str], keep: list[str]) -> tuple[types.CodeType, dict]:
    """The code and the fresh `__main__` namespace of `python ARGV...` (-c CODE or a script file)."""
    main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__
    if argv[0] == "-c":
        code = compile(argv[1], "<string>", "exec", dont_inherit=True)
        sys.argv, first, main.__loader__ = ["-c", *argv[2:]], "", BuiltinImporter
    else:
        path = os.path.abspath(argv[0])
        with open(path, "rb") as script:
            code = compile(script.read(), path, "exec", dont_inherit=True)
        sys.argv, first = list(argv), os.path.dirname(os.path.realpath(path))
        main.__file__, main.__cached__, main.__loader__ = path, None, SourceFileLoader("__main__", path)
    sys.orig_argv = [sys.executable, *argv]
    extra = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [first, *extra, *keep]
    sys.modules["__main__"] = main
    return code, vars(main)


if __name__ == "__main__":
    try:
        _keep = base_path()
        preload(sys.argv[2:])
        exec(*serve(socket.socket(fileno=int(sys.argv[1])), _keep))
    except BaseException as _error:
        # Drop this file's frames, so the traceback is the program's alone; a bare `raise` adds none.
        _tb = _error.__traceback__
        while _tb is not None and _tb.tb_frame.f_code.co_filename == __file__:
            _tb = _tb.tb_next
        _error.__traceback__ = _tb
        raise
