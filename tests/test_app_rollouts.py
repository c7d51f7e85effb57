"""The Rollouts page in Streamlit's AppTest, from `app.py`: a real GRPO job's charts, best and worst
completions and a prompt's history; the alarm on a job whose reward rises while its answers get worse;
model output holding HTML shown as text."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from predictions.dashboard.widgets import plain
from predictions.scoring.metrics import score
from predictions.store import SQLiteStore
from predictions.store.records import RolloutRow
from tests import helpers_grpo as g

APP = str(Path(__file__).resolve().parents[1] / "app.py")
ROLLOUTS = "pages/rollouts.py"
XSS = '<img src=x onerror="alert(1)">**bold**'


def hacked_job(store: SQLiteStore, job_id: str = "hacked") -> None:
    """Six steps of two groups: the reward rises each step while the answers drift from the truth and
    grow longer; one completion holds HTML."""
    store.start_job(job_id, name="hacked run", config={"kind": "rollouts"})
    rows = []
    for step in range(1, 7):
        for group in range(2):
            for index in range(2):
                right = step <= 2 and index == 0
                completion = "12" if right else "12" + " padding" * step
                if step == 6 and group == 0 and index == 1:
                    completion = XSS
                rows.append(
                    RolloutRow(
                        job_id=job_id, step=step, generation=step - 1, group_index=group,
                        completion_index=index, prompt_id=f"q{group}", prompt=f"what is 3*4? ({group})",
                        completion=completion, rewards={"judge": step / 6 + index / 10},
                        reward=step / 6 + index / 10, completion_tokens=2 + 3 * step,
                        truncated=step == 6, ground_truth="12", **score(completion, "12").as_dict(),
                    )
                )  # fmt: skip
    store.write_rollouts(rows)
    store.finish_job(job_id)


@pytest.fixture(scope="module")
def rollouts_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store with a real GRPO job (6 steps, a LoRA adapter of rank 4) and the hacked job."""
    path = tmp_path_factory.mktemp("rollouts") / "predictions.db"
    store = SQLiteStore(path)
    hacked_job(store)
    job_id = g.seed_grpo_job(tmp_path_factory.mktemp("grpo"), store, peft_config=g.lora(4))
    store.close()
    return path, job_id


def open_rollouts(monkeypatch, db: Path, job: str) -> AppTest:
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    monkeypatch.setenv("SUPABASE_URL", "")
    monkeypatch.setenv("SUPABASE_KEY", "")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["job"] = job
    at.run()
    at.switch_page(ROLLOUTS).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def html_texts(at: AppTest) -> str:
    return " ".join(element.proto.body for element in at.get("html"))


def readable(body: str) -> str:
    """The html as it reads: a diff's new side (struck-out text dropped), tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<del>.*?</del>", "", body, flags=re.S)))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_grpo_job_shows_its_reward_trends_best_worst_and_a_prompts_history(monkeypatch, rollouts_db):
    db, job_id = rollouts_db
    at = open_rollouts(monkeypatch, db, job_id)
    assert at.title[0].value == "Rollouts"
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    titles = [spec.get("title", {}).get("text") if isinstance(spec.get("title"), dict) else spec.get("title")
              for spec in specs]  # fmt: skip
    assert titles[:3] == [
        "Reward per step (mean ± std)",
        "Completion length (tokens)",
        "Groups with equal rewards (share)",
    ]
    store = SQLiteStore(db)
    trends = store.rollout_trends(job_id)
    assert len(trends.steps) == 6
    metric = next(m for m in at.metric if m.label == "Mean reward")
    assert metric.value == f"{trends.steps['avg_reward'].iloc[-1]:.3f}"
    assert metric.delta == f"{trends.steps['avg_reward'].iloc[-1] - trends.steps['avg_reward'].iloc[-2]:+.3f}"
    steps = next(m for m in at.metric if m.label == "Steps")
    assert steps.delta == f"{trends.steps['rollout_count'].iloc[-1]} rollouts at the latest"
    best = next(frame.value for frame in at.dataframe if "reward" in frame.value)  # after the run's table
    stored = store.step_rollouts(job_id, 6)
    assert best["reward"].tolist() == stored["reward"].tolist()
    functions = sorted({name for rewards in stored["rewards"] for name in rewards})
    assert len(functions) >= 2  # each reward function in a number column of its own, none cut into text
    for name in functions:
        assert best[f"reward of {name}"].tolist() == [rewards[name] for rewards in stored["rewards"]]
    first_prompt = store.rollout_prompts(job_id)["prompt_id"].iloc[0]
    history = store.prompt_rollouts(job_id, first_prompt)
    body = html_texts(at)
    assert body.count("<tr>") == history.groupby(["generation", "group_index"]).ngroups
    assert all(text in readable(body) for text in history["completion"])
    store.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_alarm_names_the_rising_reward_the_falling_truth_and_the_growing_length(monkeypatch, rollouts_db):
    db, _ = rollouts_db
    at = open_rollouts(monkeypatch, db, "hacked")
    warnings = [w.value for w in at.warning]
    assert any("Reward rose by" in w and "exact match" in w for w in warnings), warnings
    assert any("Completions grew from" in w for w in warnings), warnings
    at.selectbox(key="rollout_prompt").set_value("q0").run()
    body = html_texts(at)
    assert XSS in readable(body) and "<img" not in body  # escaped: shown as text, never as a tag


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_rollout_jobs_are_in_the_picker_and_compared_by_mean_reward(monkeypatch, rollouts_db):
    db, job_id = rollouts_db
    at = open_rollouts(monkeypatch, db, job_id)
    assert {"grpo-demo", "hacked run"} <= set(at.sidebar.selectbox[0].options)
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    at.multiselect(key="compare_jobs").set_value([job_id, "hacked"]).run()
    (chart,) = [c for c in at.get("vega_lite_chart") if "Mean reward" in c.proto.spec]
    rows = pa.ipc.open_stream(chart.proto.datasets[-1].data.data).read_pandas()
    assert sorted(rows["job"].unique()) == ["grpo-demo", "hacked run"]
    assert rows.groupby("job").size().tolist() == [6, 6]
    at.switch_page("pages/trends.py").run()
    assert [link.proto.label for link in at.get("page_link")] == ["This job's RL rollouts"]
    (info,) = at.main.info
    assert "RL job" in info.value and "yet" not in info.value  # a GRPO job never writes rounds
    for page in ("pages/samples.py", "pages/predictions.py"):
        at.switch_page(page).run()
        assert [i.value for i in at.main.info] == [info.value]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_grpo_job_records_its_adapter_and_training_arguments_shown_on_rollouts_trends_and_sidebar(
    monkeypatch, rollouts_db
):
    """The recorder's job keeps what the callback's keeps: the PEFT adapter (type, rank) under the base
    model's name, and the trainer's arguments with GRPO's own (completions per prompt, completion length)."""
    db, job_id = rollouts_db
    store = SQLiteStore(db)
    config = store.trends(job_id).config
    (job,) = [job for job in store.list_jobs() if job.id == job_id]
    store.close()
    assert (config["adapter"]["type"], config["adapter"]["rank"]) == ("LORA", 4)
    assert job.model and "Peft" not in job.model  # the base model's name, not the wrapper's class
    training = config["training"]
    assert training["trainer"] == "GRPOTrainer" and training["learning_rate"] == 0.01
    assert (training["num_generations"], training["max_completion_length"]) == (g.GROUP, 8)
    assert training["max_steps"] == 6 and training["dataset_size"] == 8
    line = plain(f"Run: Model {job.model} · Adapter LORA, rank 4 · Learning rate 0.01")
    for page in ("pages/rollouts.py", "pages/trends.py"):
        at = open_rollouts(monkeypatch, db, job_id)
        at.switch_page(page).run()
        assert not at.exception, [e.message for e in at.exception]
        assert any(c.value.startswith(line) for c in at.caption), [c.value for c in at.caption]
        table = at.dataframe[0].value if page == "pages/trends.py" else None
        if table is not None:
            values = dict(zip(table["argument"], table["value"], strict=True))
            assert values["Completions per prompt"] == str(g.GROUP) and values["Trainer"] == "GRPOTrainer"
        sidebar = [c.value for c in at.sidebar.caption]
        assert plain(f"Model: {job.model} · LORA adapter, rank 4") in sidebar, sidebar


def test_the_rollouts_page_imports_no_torch_and_writes_no_bare_string(tmp_path):
    """The dashboard path stays light (no torch, no transformers), and Streamlit's magic has nothing
    to write but the module docstring."""
    import ast
    import os
    import subprocess
    import sys

    body = ast.parse((Path(APP).parent / ROLLOUTS).read_text()).body
    assert [n.lineno for n in body[1:] if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)] == []
    store = SQLiteStore(tmp_path / "p.db")
    hacked_job(store)
    store.close()
    script = "; ".join(
        [
            "import sys",
            "from streamlit.testing.v1 import AppTest",
            f"at = AppTest.from_file({APP!r}, default_timeout=60)",
            "at.query_params['job'] = 'hacked'",
            "at.run()",
            f"at.switch_page({ROLLOUTS!r}).run()",
            "assert not at.exception and at.title[0].value == 'Rollouts' and at.warning",
            "assert at.get('vega_lite_chart')",
            "print(sorted(name for name in ('torch', 'transformers', 'altair') if name in sys.modules))",
        ]
    )
    env = {**os.environ, "PREDICTIONS_DB": str(tmp_path / "p.db"), "SUPABASE_URL": "", "SUPABASE_KEY": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
