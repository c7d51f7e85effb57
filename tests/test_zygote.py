"""A zygote's child ends like `python -c`: each check runs on a real interpreter and on the zygote, and
asks the same of both (the real one shows the check is right; the zygote one, that the zygote is)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager

import pytest

from tests import zygote

pytestmark = pytest.mark.skipif(not zygote.available(), reason="the zygote needs Linux's pidfds")
LAUNCHERS = ["real", "zygote"]


@pytest.fixture(params=LAUNCHERS)
def launcher(request):
    """`start_python` on a real interpreter or on the zygote; the zygote's children are checked to be its."""
    real = request.param == "real"

    def start(*argv, **options):
        process = zygote.start_python(*argv, real=real, **options)
        assert isinstance(process, subprocess.Popen) == real
        return process

    return start


@contextmanager
def sigint(handler):
    """This process's SIGINT set to `handler` while a program starts: what it inherits depends on it (the
    suite may itself run with SIGINT ignored, as a shell's background job)."""
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(launcher, code: str, *args: str, **options) -> subprocess.CompletedProcess:
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    process = launcher("-c", textwrap.dedent(code), *args, **pipes, **options)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def started(launcher, code: str, *args: str, **options):
    """A program started with pipes, once it has printed its first line ("ready")."""
    process = launcher(
        "-c", textwrap.dedent(code), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "ready\n", process.communicate()
    return process


def test_an_uncaught_exception_prints_its_traceback_and_exits_1(launcher):
    code = """
    import atexit
    atexit.register(print, "atexit ran")
    def fail():
        raise RuntimeError("boom")
    fail()
    """
    result = run(launcher, code)
    assert result.returncode == 1
    assert result.stderr == (
        "Traceback (most recent call last):\n"
        '  File "<string>", line 6, in <module>\n'
        '  File "<string>", line 5, in fail\n'
        "RuntimeError: boom\n"
    )
    assert result.stdout == "atexit ran\n"  # after the traceback, at shutdown


def test_a_syntax_error_is_printed_without_a_traceback(launcher):
    result = run(launcher, "x = (\n")
    assert result.returncode == 1
    assert result.stderr.startswith('  File "<string>", line 1\n') and "SyntaxError" in result.stderr


@pytest.mark.parametrize(
    ("code", "returncode", "stderr"),
    [("raise SystemExit(3)", 3, ""), ("import sys; sys.exit('no')", 1, "no\n")],
)
def test_sys_exit_gives_its_code(launcher, code, returncode, stderr):
    result = run(launcher, code)
    assert (result.returncode, result.stderr) == (returncode, stderr)


def test_atexit_handlers_run_and_non_daemon_threads_are_joined_first(launcher):
    code = """
    import atexit, threading, time
    atexit.register(print, "atexit", flush=True)
    def late():
        time.sleep(0.3)
        print("thread done", flush=True)
    threading.Thread(target=late).start()
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # not waited for
    print("main done", flush=True)
    """
    result = run(launcher, code)
    assert (result.returncode, result.stdout) == (0, "main done\nthread done\natexit\n"), result.stderr


def test_sigterm_does_its_default_action(launcher):
    code = """
    import atexit, time
    atexit.register(print, "atexit must not run")
    print("ready", flush=True)
    time.sleep(60)
    """
    process = started(launcher, code)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert (process.returncode, out, err) == (-signal.SIGTERM, "", "")


def test_sigint_raises_keyboard_interrupt_which_ends_the_program_by_sigint(launcher):
    code = """
    import time
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
    """
    with sigint(signal.default_int_handler):
        process = started(launcher, code)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGINT  # CPython re-sends SIGINT to itself after shutdown
    assert out == "interrupted\n" and err.endswith("KeyboardInterrupt\n") and 'File "<string>"' in err


def test_signal_dispositions_are_pythons_own(launcher):
    code = """
    import signal
    print(signal.getsignal(signal.SIGINT) is signal.default_int_handler,
          signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
          signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN)
    """
    with sigint(signal.default_int_handler):
        assert run(launcher, code).stdout == "True True True\n"


def test_signals_ignored_by_the_test_process_are_ignored_by_the_program(launcher):
    """As across exec: SIGINT and SIGUSR1 ignored here stay ignored there (no KeyboardInterrupt)."""
    code = "import signal as s; print([s.getsignal(n) == s.SIG_IGN for n in (s.SIGINT, s.SIGUSR1)])"
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        with sigint(signal.SIG_IGN):
            result = run(launcher, code)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert result.stdout == "[True, True]\n", result.stderr


def test_argv_env_cwd_and_main_are_as_given(launcher, tmp_path):
    code = """
    import os, sys
    print(sys.argv, os.getcwd(), os.environ["ZYGOTE_CHECK"], "PATH" in os.environ, __name__,
          sys.path[0] == "")
    print(sys.orig_argv[1:3], sorted(k for k in globals() if not k.startswith("__")))
    """
    env = {**os.environ, "ZYGOTE_CHECK": "é ü"}
    env.pop("PATH", None)
    result = run(launcher, code, "a", "b c", env=env, cwd=tmp_path)
    first, second = result.stdout.splitlines()
    assert first == f"['-c', 'a', 'b c'] {tmp_path} é ü False __main__ True", result.stderr
    assert second == f"{['-c', textwrap.dedent(code)]} ['os', 'sys']"


def test_a_script_runs_as_a_script(launcher, tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("import sys\nprint(__file__, sys.argv, sys.path[0])\nraise ValueError('x')\n")
    process = launcher(
        str(script), "arg", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert out == f"{script} {[str(script), 'arg']} {tmp_path}\n"
    assert err == (
        f'Traceback (most recent call last):\n  File "{script}", line 3, in <module>\n'
        "    raise ValueError('x')\nValueError: x\n"
    )


def test_stdin_stdout_stderr_and_the_session(launcher, tmp_path):
    code = """
    import os, sys
    print(sys.stdin.read().upper(), os.getsid(0) == os.getpid(), flush=True)
    print("to stderr", file=sys.stderr)
    """
    with open(tmp_path / "out.txt", "w") as out:
        process = launcher(
            "-c",
            textwrap.dedent(code),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        process.communicate("hello", timeout=60)
    assert process.returncode == 0
    assert (tmp_path / "out.txt").read_text() == "HELLO True\nto stderr\n"


def test_the_zygote_child_has_the_preloaded_modules_and_the_pythonpath_it_is_given(tmp_path):
    """What the zygote is for: torch is already imported. And each child's sys.path follows its own
    PYTHONPATH, not the zygote's."""
    (tmp_path / "only_here.py").write_text("WHERE = 'here'\n")
    code = "import sys, only_here; print('torch' in sys.modules, only_here.WHERE, sys.path[1])"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = zygote.run_python("-c", code, env=env, timeout=120)
    assert result.stdout == f"True here {tmp_path}\n", result.stderr
    real = zygote.run_python("-c", code, env=env, timeout=120, real=True)
    assert real.stdout == f"False here {tmp_path}\n", real.stderr


def test_children_of_one_environment_share_a_zygote():
    code = "import os; print(os.getppid())"
    parents = {zygote.run_python("-c", code, timeout=120).stdout for _ in range(2)}
    assert len(parents) == 1 and parents != {f"{os.getpid()}\n"}


def test_an_import_time_variable_no_zygote_was_started_with_gets_a_real_interpreter(monkeypatch):
    """Past MAX_ZYGOTES (here: one, taken by another environment), a request runs on a real interpreter."""
    monkeypatch.setattr(zygote, "MAX_ZYGOTES", 1)
    monkeypatch.setattr(zygote, "_zygotes", {(("OMP_NUM_THREADS", "7"),): None})
    code = "import os, sys; print(os.environ['TQDM_MININTERVAL'], 'torch' in sys.modules)"
    result = zygote.run_python("-c", code, env={**os.environ, "TQDM_MININTERVAL": "3"}, timeout=120)
    assert result.stdout == "3 False\n", result.stderr


def test_import_time_variables_are_what_the_modules_read_at_import():
    env = {
        "PYTHONPATH": "x",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "XDG_CACHE_HOME": "/c",
        "PATH": "/bin",
        "PYTORCH_NVML_BASED_CUDA_CHECK": "1",  # read by torch.cuda.is_available(), not at import
    }
    assert zygote.import_time(env) == (
        ("OMP_NUM_THREADS", "1"),
        ("PYTHONHASHSEED", "0"),
        ("XDG_CACHE_HOME", "/c"),
    )
    assert ("XDG_CACHE_HOME", "/c") not in zygote.import_time({**env, "HF_HOME": "/h"})


def test_the_process_handle_times_out_and_kills_like_popen():
    process = zygote.start_python("-c", "import time; time.sleep(60)")
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.1)
    assert process.poll() is None
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert sys.modules["tests.zygote"] is zygote
