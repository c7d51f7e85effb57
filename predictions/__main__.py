"""`python -m predictions dashboard`: serve the dashboard over the store a run in this folder writes to.
`python -m predictions demo`: train the demo model, optionally beside the live dashboard.
`python -m predictions spool`: list, replay or discard the store calls a run could not store."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from predictions.dashboard import server
from predictions.delivery import command as spool_command
from predictions.demo.run import LEARNING_RATES, run_demos
from predictions.store.settings import ENV_NAMES, StoreSettings


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="predictions", description="Predictions Monitor")
    commands = main.add_subparsers(dest="command", required=True)
    dashboard = commands.add_parser(
        "dashboard",
        help="serve the dashboard over the store a training run in this folder writes to (its .env, "
        "its PREDICTIONS_DB or .predictions/predictions.db)",
    )
    dashboard.add_argument(
        "--db",
        default=None,
        help="read this SQLite file, whatever else is set (sets PREDICTIONS_STORE=sqlite)",
    )
    _server_options(dashboard)
    demo = commands.add_parser("demo", help="train a tiny model to reverse strings, writing each round")
    demo.add_argument("--epochs", type=_positive, default=4, help="training epochs a run (default: 4)")
    demo.add_argument("--steps-per-epoch", type=_positive, default=200, help="default: 200")
    demo.add_argument(
        "--rounds-per-epoch", type=_positive, default=5, help="prediction rounds an epoch (default: 5)"
    )
    demo.add_argument("--db", default=StoreSettings.from_env().db_path, help="SQLite file")
    demo.add_argument(
        "--learning-rates",
        type=float,
        nargs="+",
        default=list(LEARNING_RATES),
        help="one run per rate, one after the other (default: 2e-3 5e-4)",
    )
    demo.add_argument(
        "--job-id", default=None, help="the run's id; with several rates, the prefix (default: generated)"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--dashboard", action="store_true", help="also run the dashboard on the same file")
    _server_options(demo)
    spool_command.add_parser(commands)
    return main


def _server_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--port", type=_positive, default=8501, help="dashboard port (default: 8501)")
    command.add_argument(
        "--all-interfaces",
        action="store_true",
        help="let the dashboard listen on every network interface (default: 127.0.0.1, this machine only)",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is invalid; valid: an integer >= 1")
    return value


def run_demo_command(options: argparse.Namespace) -> int:
    """Start the dashboard first (so the charts move while it trains), train, then keep it up.

    The dashboard ends with the demo: on Ctrl-C, on SIGTERM or SIGHUP, on an error, and (on Linux)
    even when the demo is killed outright.
    """
    db_path = Path(options.db)
    # The demo trains on the CPU: where DeepSpeed is installed (for the tests), this keeps its
    # "unable to detect an accelerator" warning out of the demo's output; a user's own choice stays.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        dashboard = start_dashboard(options, db_path) if options.dashboard else None
    except OSError as error:  # no app.py, or the port is taken
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with signals_raise_exit():
            if dashboard is not None:
                print(f"Dashboard: {_url(options)}  (reading {db_path.resolve()})", flush=True)
            results = run_demos(
                tuple(options.learning_rates),
                db_path=db_path,
                job_id=options.job_id,
                epochs=options.epochs,
                steps_per_epoch=options.steps_per_epoch,
                rounds_per_epoch=options.rounds_per_epoch,
                seed=options.seed,
            )
            for result in results:
                print(_summary(result), flush=True)
            if dashboard is not None:
                print(f"Training done; the dashboard stays at {_url(options)}. Ctrl-C stops it.", flush=True)
                dashboard.wait()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        if dashboard is not None:
            server.stop(dashboard)
    return 0


def run_dashboard_command(options: argparse.Namespace) -> int:
    """Serve the dashboard in this folder until Ctrl-C, SIGTERM or SIGHUP; its exit status otherwise."""
    db_path = None if options.db is None else Path(options.db)
    settings = StoreSettings.from_env(environ=_environment(db_path))
    try:
        dashboard = start_dashboard(options, db_path)
    except OSError as error:  # no app.py, or the port is taken
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with signals_raise_exit():
            print(f"Dashboard: {_url(options)}  (reading {_store_name(settings)})", flush=True)
            print("Ctrl-C stops it.", flush=True)
            status = dashboard.wait()
            if status:
                print(
                    f"error: the dashboard exited with status {status} (its messages are above)",
                    file=sys.stderr,
                )
            return status
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop(dashboard)


def start_dashboard(options: argparse.Namespace, db_path: Path | None) -> subprocess.Popen:
    """The dashboard in this folder, on the SQLite file `db_path` when given (made absolute)."""
    return server.start(options.port, _address(options), _environment(db_path))


def _environment(db_path: Path | None) -> dict[str, str]:
    """This environment, choosing the SQLite file `db_path` outright where given: over Supabase settings
    in the environment or a `.env` here or above (a user's, whose store is not the demo's)."""
    if db_path is None:
        return dict(os.environ)
    return {**os.environ, ENV_NAMES["db_path"]: str(db_path.resolve()), ENV_NAMES["backend"]: "sqlite"}


def _store_name(settings: StoreSettings) -> str:
    if settings.uses_supabase:
        return f"Supabase at {settings.supabase_url or '(SUPABASE_URL not set)'}"
    path = Path(settings.db_path).resolve()
    return f"{path}" if path.exists() else f"{path}, not there yet: no jobs until a run writes it"


@contextmanager
def signals_raise_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl-C, so cleanup runs however the demo is stopped."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _address(options: argparse.Namespace) -> str:
    return server.ALL_INTERFACES if options.all_interfaces else server.LOCAL_ADDRESS


def _url(options: argparse.Namespace) -> str:
    host = "<this machine's address>" if options.all_interfaces else "127.0.0.1"
    return f"http://{host}:{options.port}"


def _summary(result) -> str:
    if result.first_cer is None or result.last_cer is None:
        return f"job {result.job_id}: {result.rounds} rounds in {result.db_path}"
    return (
        f"job {result.job_id}: {result.rounds} rounds in {result.db_path}; average CER "
        f"{result.first_cer:.3f} in the first round, {result.last_cer:.3f} in the last"
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    if options.command == "dashboard":
        return run_dashboard_command(options)
    if options.command == "demo":
        return run_demo_command(options)
    if options.command == "spool":
        return spool_command.run(options)
    return 2


if __name__ == "__main__":
    sys.exit(main())
