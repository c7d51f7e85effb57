"""Serving the dashboard: `streamlit run` on its app.py, from a clone or an installed wheel, in any folder.

app.py, pages/ and the Streamlit settings (.streamlit/config.toml) stay at the repository's top level,
where the design names them; a wheel ships them as the data of `predictions.dashboard.app`, a package
mapped to the repository root (pyproject.toml), so there is one copy of the code. The settings are
passed as flags, so they hold whatever folder the dashboard runs in, and the server runs in the
caller's folder, so it reads the same `.env` and default store file as a training run started there.
`predictions dashboard` and `predictions demo --dashboard` both start it here.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

APP_PACKAGE = "predictions.dashboard.app"
CHECKOUT = Path(__file__).resolve().parents[2]
"""The folder holding the `predictions` package: a clone's root when run from one (editable or not)."""
LOCAL_ADDRESS, ALL_INTERFACES = "127.0.0.1", "0.0.0.0"
PR_SET_PDEATHSIG = 1
"""Linux prctl option: the signal a process gets when its parent dies."""


def app_folder() -> Path:
    """The folder of app.py, pages/ and .streamlit/: the clone this package runs from, else the wheel's copy.

    A clone comes first (its pyproject.toml beside app.py): in a clone that is not installed, or that
    runs with another install of the package on the path, the package data would be missing or another
    clone's.
    """
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "app.py").is_file():
        return CHECKOUT
    try:
        installed = resources.files(APP_PACKAGE) / "app.py"
    except ModuleNotFoundError:
        installed = None
    if installed is None or not installed.is_file():
        raise FileNotFoundError(
            f"the dashboard's app.py is neither in a clone at {CHECKOUT} nor installed as {APP_PACKAGE}; "
            "reinstall predictions-monitor (pip install predictions-monitor, or pip install -e . in a clone)"
        )
    return Path(str(installed)).parent


def settings(port: int, address: str) -> dict[str, str]:
    """Streamlit's options: those of the app's .streamlit/config.toml, then the port and address given,
    headless (no browser opened, no first-run e-mail prompt)."""
    config = tomllib.loads((app_folder() / ".streamlit" / "config.toml").read_text())
    options = {f"{section}.{key}": value for section, table in config.items() for key, value in table.items()}
    options |= {"server.port": port, "server.address": address, "server.headless": True}
    return {name: _flag(value) for name, value in options.items()}


def _flag(value: object) -> str:
    """A TOML value as Streamlit's command line takes it: booleans as true/false."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def command(port: int, address: str = LOCAL_ADDRESS) -> list[str]:
    """`python -P -m streamlit run <app.py> --<option> <value>...`: -P keeps the working folder off the
    import path, so a user's own `predictions.py` (or `pandas.py`) there cannot replace the package."""
    flags = [part for name, value in settings(port, address).items() for part in (f"--{name}", value)]
    return [sys.executable, "-P", "-m", "streamlit", "run", str(app_folder() / "app.py"), *flags]


def start(port: int, address: str = LOCAL_ADDRESS, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start the dashboard in this process's folder with `env`; on Linux it dies with this process,
    even when this process is killed outright. OSError, saying what to do, when no app.py can be found
    or the port is taken (checked here: Streamlit would only log it, after this has said where to look)."""
    argv = command(port, address)
    _check_free(port, address)
    return subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)


def _check_free(port: int, address: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Streamlit binds: TIME_WAIT is free
        try:
            sock.bind((address, port))
        except OSError as error:
            raise OSError(
                f"port {port} on {address} is in use ({error.strerror}): another dashboard? "
                "choose another with --port"
            ) from error


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies, whatever killed it."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate the dashboard and wait for it, killing it if it does not stop in time."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
