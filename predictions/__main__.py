"""`python -m predictions demo`: train the demo model, optionally beside the live dashboard.
`python -m predictions spool`: list, replay or discard the store calls a run could not store."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from predictions.delivery import command as spool_command
from predictions.demo.run import (
    ALL_INTERFACES,
    LEARNING_RATES,
    LOCAL_ADDRESS,
    run_demos,
    start_dashboard,
    stop_dashboard,
)
from predictions.store.settings import StoreSettings


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="predictions", description="Predictions Monitor")
    commands = main.add_subparsers(dest="command", required=True)
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
    demo.add_argument("--port", type=_positive, default=8501, help="dashboard port (default: 8501)")
    demo.add_argument(
        "--all-interfaces",
        action="store_true",
        help="let the dashboard listen on every network interface (default: 127.0.0.1, this machine only)",
    )
    spool_command.add_parser(commands)
    return main


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
        dashboard = start_dashboard(options.port, db_path, _address(options)) if options.dashboard else None
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with signals_raise_exit():
            if dashboard is not None:
                print(f"Dashboard: {_url(options)}  (reading {db_path})", flush=True)
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
            stop_dashboard(dashboard)
    return 0


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
    return ALL_INTERFACES if options.all_interfaces else LOCAL_ADDRESS


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
    if options.command == "demo":
        return run_demo_command(options)
    if options.command == "spool":
        return spool_command.run(options)
    return 2


if __name__ == "__main__":
    sys.exit(main())
