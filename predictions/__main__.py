"""`python -m predictions demo`: train the demo model, optionally beside the live dashboard.
`python -m predictions spool`: list, replay or discard the store calls a run could not store."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from predictions import spool_command
from predictions.store import DEFAULT_DB_PATH


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="predictions", description="Predictions Monitor")
    commands = main.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a tiny model to reverse strings, writing each round")
    demo.add_argument("--epochs", type=_positive, default=8, help="training epochs (default: 8)")
    demo.add_argument("--steps-per-epoch", type=_positive, default=200, help="default: 200")
    demo.add_argument(
        "--rounds-per-epoch", type=_positive, default=5, help="prediction rounds an epoch (default: 5)"
    )
    demo.add_argument("--db", default=os.environ.get("PREDICTIONS_DB") or DEFAULT_DB_PATH, help="SQLite file")
    demo.add_argument("--job-id", default=None, help="the run's id (default: generated)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--dashboard", action="store_true", help="also run the dashboard on the same file")
    demo.add_argument("--port", type=_positive, default=8501, help="dashboard port (default: 8501)")
    spool_command.add_parser(commands)
    return main


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is invalid; valid: an integer >= 1")
    return value


def run_demo_command(options: argparse.Namespace) -> int:
    """Start the dashboard first (so the charts move while it trains), train, then keep it up."""
    from predictions.demo import run_demo, start_dashboard

    db_path = Path(options.db)
    dashboard = None
    if options.dashboard:
        try:
            dashboard = start_dashboard(options.port, db_path)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"Dashboard: http://localhost:{options.port}  (reading {db_path})", flush=True)
    try:
        result = run_demo(
            db_path=db_path,
            job_id=options.job_id,
            epochs=options.epochs,
            steps_per_epoch=options.steps_per_epoch,
            rounds_per_epoch=options.rounds_per_epoch,
            seed=options.seed,
        )
        print(_summary(result), flush=True)
        if dashboard is not None:
            print(f"Training done; the dashboard stays at http://localhost:{options.port}. Ctrl-C stops it.")
            dashboard.wait()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        if dashboard is not None and dashboard.poll() is None:
            dashboard.terminate()
            dashboard.wait(timeout=10)
    return 0


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
