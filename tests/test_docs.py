"""The docs are part of the product: every option documented, the README's example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from predictions.config import PredictionsConfig
from predictions.scoring.metrics import score
from predictions.store import SQLiteStore
from predictions.store.settings import ENV_NAMES
from tests import zygote

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("name", [f.name for f in fields(PredictionsConfig)])
def test_every_option_is_in_the_readme_table(name):
    assert re.search(rf"^\| `{name}` \|", README, re.M), f"README's options table lacks `{name}`"


def test_every_environment_variable_is_in_env_example():
    """The store's variables are `StoreSettings`' (read there only); any other read is found by name."""
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    read_elsewhere = set()
    for path in (ROOT / "predictions").rglob("*.py"):
        read_elsewhere |= set(
            re.findall(r"environ(?:\.get)?\(?\[?\"([A-Z_]+)\"", path.read_text(encoding="utf-8"))
        )
    assert not read_elsewhere & set(ENV_NAMES.values()), "a store variable read outside StoreSettings"
    used = read_elsewhere | set(ENV_NAMES.values())
    missing = sorted(name for name in used if not re.search(rf"^#?\s*{name}=", example, re.M))
    assert not missing, f".env.example lacks {missing}"


def test_the_score_example_prints_what_the_readme_says():
    (line,) = [line for line in README.splitlines() if line.startswith('score("Paris.", "Paris")')]
    shown = line.split("#", 1)[1].strip()
    assert repr(score("Paris.", "Paris")) == shown


def run_script(script: Path, folder: Path, real: bool = False, **team: str) -> subprocess.CompletedProcess:
    """Run a README snippet as a user would, on a fresh SQLite store in `folder`, or on the Supabase
    project that `team` (SUPABASE_URL=..., SUPABASE_KEY=..., PREDICTIONS_INGEST_KEY=...) names. Forked
    from the zygote (tests/zygote.py), or on a real interpreter if `real`."""
    env = {**os.environ, "PREDICTIONS_DB": str(folder / "example.db")}
    for name in ("SUPABASE_URL", "SUPABASE_KEY", "PREDICTIONS_INGEST_KEY", "PREDICTIONS_USER_ID"):
        env.pop(name, None)
    env.update(team)
    return zygote.run_python(script, cwd=folder, env=env, timeout=300, real=real)


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path):
    (example,) = [block for block in python_blocks() if "readme-example" in block]
    (trends,) = [block for block in python_blocks() if ".trends(callback.job_id)" in block]
    (reading,) = [block for block in python_blocks() if "store = open_store()" in block]
    script = tmp_path / "example.py"
    script.write_text(example + "\n" + trends + "\n" + reading, encoding="utf-8")
    result = run_script(script, tmp_path, real=True)  # the README example's run on a real interpreter
    assert result.returncode == 0, result.stderr[-3000:]
    assert "avg_char_error_rate" in result.stdout
    assert "readme-example 80" in result.stdout  # the job listed with its latest step
    store = SQLiteStore(tmp_path / "example.db")
    (job,) = store.list_jobs()
    cers = store.trends(job.id).rounds["avg_char_error_rate"].tolist()
    store.close()
    assert len(cers) == 4 and cers[-1] < cers[0], cers  # the README says the example shows learning


@pytest.mark.slow
def test_the_readme_example_runs_unchanged_on_a_team_training_machine(postgrest, tmp_path):
    """Supabase with the publishable key and an ingest key, which writes and reads nothing."""
    from tests.pg_fixtures import USER_A, user_store

    owner = user_store(postgrest, USER_A)
    secret = owner.create_ingest_key("readme-machine")
    (example,) = [block for block in python_blocks() if "readme-example" in block]
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")
    team = {"SUPABASE_URL": postgrest.url, "SUPABASE_KEY": postgrest.publishable_key}
    result = run_script(script, tmp_path, **team, PREDICTIONS_INGEST_KEY=secret)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stored job" in result.stdout and not (tmp_path / "example.db").exists()
    (job,) = owner.list_jobs()
    assert (job.name, job.status, job.latest_step) == ("readme-example", "finished", 80)
    owner.close()


@pytest.mark.slow
def test_the_hyperparameter_search_example_prints_a_job_per_trial_and_the_pruned_ones(tmp_path):
    (example,) = [block for block in python_blocks() if "hyperparameter_search(" in block]
    (printed,) = [
        block for block in re.findall(r"```text\n(.*?)```", README, re.S) if "sweep-trial-0" in block
    ]
    script = tmp_path / "sweep.py"
    script.write_text(example, encoding="utf-8")
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert masked(result.stdout.splitlines()[-5:]) == masked(printed.splitlines())
    store = SQLiteStore(tmp_path / "example.db")
    jobs = store.list_jobs()
    tracked = {tuple(store.sample_summary(job.id)["sample_index"].sort_values()) for job in jobs}
    trials = {store.trends(job.id).config["training"]["trial"] for job in jobs}
    store.close()
    assert len(jobs) == 4 and trials == {0, 1, 2, 3} and len(tracked) == 1  # the same 8 samples in each


def masked(lines: list[str]) -> list[str]:
    """Printed lines with each objective's value left out: its last digits differ between CPUs."""
    return [re.sub(r"objective of [0-9.]+", "objective of ...", line) for line in lines]


@pytest.mark.slow
def test_the_plain_pytorch_loop_runs_and_writes_its_rounds(tmp_path):
    (example,) = [block for block in python_blocks() if "PredictionsMonitor(" in block]
    script = tmp_path / "loop.py"
    script.write_text(example, encoding="utf-8")
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "avg_char_error_rate" in result.stdout
    store = SQLiteStore(tmp_path / "example.db")
    (job,) = store.list_jobs()
    assert (job.name, job.status, job.round_count) == ("loop", "finished", 2)
    assert store.rounds(job.id)["sample_count"].tolist() == [8, 8]
    assert store.trends(job.id).config["training"] == {"learning_rate": 1e-3, "epochs": 2, "dataset_size": 40}
    series = store.training_series(job.id)  # the loop's loss tensors, one a step
    assert series["name"].unique().tolist() == ["loss"] and series["step"].tolist() == list(range(1, 81))
    store.close()


@pytest.mark.slow
def test_the_grpo_example_stores_every_rollout(tmp_path):
    (example,) = [block for block in python_blocks() if "RolloutRecorder(" in block]
    script = tmp_path / "grpo.py"
    script.write_text(example, encoding="utf-8")
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "avg_reward" in result.stdout
    store = SQLiteStore(tmp_path / "example.db")
    (job,) = store.list_jobs()
    assert (job.name, job.status) == ("grpo-example", "finished")
    steps = store.rollout_trends(job.id).steps
    assert steps["step"].tolist() == [1, 2, 3, 4] and steps["rollout_count"].tolist() == [8, 8, 8, 8]
    store.close()
