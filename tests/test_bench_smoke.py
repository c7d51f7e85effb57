"""Each benchmark script runs end to end on tiny sizes, so the benchmarks keep working."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import (
    bench_charts,
    bench_csv,
    bench_deleted_runs,
    bench_diff,
    bench_generation,
    bench_outbox,
    bench_pages,
    bench_queries,
    bench_scoring,
    bench_write_stall,
)
from predictions.store import SQLiteStore
from predictions.store.records import PredictionRow


def test_scoring_benchmark_runs(capsys):
    results = bench_scoring.main(
        [
            "--pairs",
            "30",
            "--slow-pairs",
            "2",
            "--lengths",
            "50",
            "500",
            "--long-pairs",
            "2",
            "--long-lengths",
            "3000",
        ]
    )
    kinds = ("near misses", "unrelated")
    assert set(results) == {(kind, length) for kind in kinds for length in (50, 500)} | {
        ("hint", kind, 3000) for kind in kinds
    }
    assert all(value > 0 for timings in results.values() for value in timings.values())
    assert "scorer/kernel at 500 chars" in capsys.readouterr().out


@pytest.mark.slow
def test_generation_benchmark_runs_and_matches_one_by_one_outputs():
    results = bench_generation.main(["--samples", "8", "--new-tokens", "4", "--threads", "1"])
    assert results["identical_8"] == results["identical_64"] == 8


def test_write_stall_benchmark_runs():
    results = bench_write_stall.main(["--rounds", "3", "--samples", "4", "--latency", "0.01"])
    assert results["writer max"] < results["direct median"]


def test_outbox_benchmark_runs_on_sqlite():
    results = bench_outbox.main(["--rounds", "3", "--samples", "4", "--backend", "sqlite"])
    assert results["sqlite"]["replay rows/s"] > 0 and results["sqlite"]["append us per row"] > 0


def test_query_benchmark_runs_on_sqlite():
    results = bench_queries.main(
        ["--jobs", "3", "--rounds", "4", "--samples", "5", "--repeat", "2", "--backend", "sqlite"]
    )
    assert set(results["sqlite"]) == {
        "trends",
        "sample matrix",
        "page (50, by CER)",
        "group trends (category)",
        "fetch all + average",
    }


def test_query_benchmark_runs_on_postgres():
    results = bench_queries.main(
        ["--jobs", "2", "--rounds", "3", "--samples", "4", "--repeat", "2", "--backend", "postgres"]
    )
    assert {"trends", "fetch all + average", "fetch all (binary rows) + average"} <= set(results["postgres"])


def test_pages_benchmark_runs():
    results = bench_pages.main(["--rounds", "3", "--samples", "4", "--repeat", "1"])
    assert set(results) == {"pages/trends.py", "pages/samples.py"}


def test_no_benchmark_imports_the_tests():
    """bench/ and tests/ share devtools/, never each other: a test refactor cannot break a benchmark."""
    bench = Path(__file__).resolve().parent.parent / "bench"
    offenders = [
        path.name
        for path in bench.glob("*.py")
        if re.search(r"^\s*(from|import) tests\b", path.read_text(), re.MULTILINE)
    ]
    assert offenders == []


def test_round_write_benchmark_runs():
    from bench import bench_round_writes

    results = bench_round_writes.main(["--sizes", "4", "8", "--rounds", "2"])
    assert set(results) == {4, 8} and all(wall > 0 for wall, _ in results.values())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_rollouts_benchmark_runs_and_checks_generate_calls_and_losses():
    from bench import bench_rollouts

    small = ["--steps", "2", "--batch", "8", "--group", "4", "--length", "8", "--latency", "0.01"]
    results = bench_rollouts.main([*small, "--sizes", "16", "64", "--calls", "2"])
    assert results["step ms"] > 0 and results["recorder median ms"] > 0


def test_charts_benchmark_runs():
    """One side's worker, in this process on this checkout (each side of a full run is a process of its own:
    two more interpreters importing Streamlit would triple this test's cost)."""
    results = bench_charts.worker(str(Path(bench_charts.__file__).parents[1]), rounds=3, samples=2, repeat=1)
    assert len(results) == 5 and all(cpu > 0 for cpu in results.values())


def test_diff_benchmark_runs():
    results = bench_diff.main(["--length", "20000", "--rounds", "3", "--repeat", "1"])
    assert len(results) == 3 and all(wall > 0 and cpu >= 0 for wall, cpu in results.values())


@pytest.mark.slow
def test_scale_benchmark_runs_on_tiny_stores(tmp_path):
    from bench import bench_scale

    sizes = [
        "--jobs",
        "3",
        "--samples",
        "60",
        "--rounds",
        "3",
        "--small",
        "3",
        "20",
        "--repeat",
        "1",
        "--reads",
        "1",
    ]
    results = bench_scale.main(["--folder", str(tmp_path), *sizes, "--pages", "samples"])
    assert results["samples"]["scale"]["warm"] > 0 and results["samples"]["small"]["first view CPU"] > 0
    assert results["reads"]["list_jobs(200), the picker ms"] > 0 and results["reads"]["CSV MB"] > 0


def test_round_blocking_benchmark_runs(capsys):
    from bench import bench_round_blocking

    results = bench_round_blocking.main(
        ["--rounds", "2", "--samples", "4", "--length", "300", "--step-seconds", "0.1"]
    )
    assert results["near misses before"] > 0 and results["unrelated now max"] > 0
    assert "goal < 50" in capsys.readouterr().out


def test_csv_benchmark_runs(tmp_path):
    store = SQLiteStore(tmp_path / "p.db")
    store.write_predictions([PredictionRow("big-job", 1, s, i, "p", "a") for s in (1, 2) for i in range(3)])
    store.close()
    results = bench_csv.main(["--db", str(tmp_path / "p.db"), "--repeat", "2"])
    assert results["rows"] == 6 and results["CPU s"] > 0 and results["supabase part CPU s"] > 0


def test_deleted_runs_benchmark_runs_on_both_stores():
    table = bench_deleted_runs.main(["--rows", "4", "--rounds", "2", "--deleted", "3"])
    assert [store for store, *_ in table] == ["SQLite", "Postgres (COPY)"]
    assert all(plain > 0 and checked > 0 for _, plain, checked, _ in table)
