"""The rollouts part of the Store contract, on every backend: upserts on the natural key, the per-step
summary kept in SQL equal to a pandas recomputation from the stored rollouts, and the reads."""

from __future__ import annotations

import math
import random
import uuid

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictions.errors import ConfigError
from predictions.scoring.metrics import METRICS, score
from predictions.store.frames import REWARD_TREND_COLUMNS, ROLLOUT_COLUMNS, ROLLOUT_STEP_COLUMNS
from predictions.store.records import RolloutRow

FUNCTIONS = ("accuracy", "brevity")


def rollout(job_id, step, generation, group, index, *, reward=None, rewards=None, truth=None, **fields):
    completion = fields.pop("completion", f"answer {group}.{index}")
    rewards = {"accuracy": 1.0, "brevity": -0.5} if rewards is None else rewards
    values = [value for value in rewards.values() if value is not None]
    total = reward if reward is not None else (sum(values) if values else None)
    scored = score(completion, truth).as_dict() if truth is not None else {}
    return RolloutRow(
        job_id=job_id,
        step=step,
        generation=generation,
        group_index=group,
        completion_index=index,
        prompt_id=fields.pop("prompt_id", f"p{group}"),
        prompt=fields.pop("prompt", f"prompt {group}"),
        completion=completion,
        rewards=rewards,
        reward=total,
        completion_tokens=fields.pop("completion_tokens", len(completion)),
        truncated=fields.pop("truncated", False),
        ground_truth=truth,
        **scored,
        **fields,
    )


def random_job(job_id: str, seed: int = 0) -> list[RolloutRow]:
    """Four steps of 3 groups x 4 completions: some groups with equal rewards, some null rewards, a
    ground truth on every other prompt, lengths and truncation at random."""
    rng = random.Random(seed)
    rows = []
    for step in range(1, 5):
        for group in range(3):
            flat = rng.random() < 0.3
            for index in range(4):
                rewards = {
                    "accuracy": 1.0 if flat else float(rng.randint(0, 1)),
                    "brevity": rng.uniform(-1, 0),
                }
                if flat:
                    rewards["brevity"] = -0.25
                if rng.random() < 0.1:
                    rewards["brevity"] = None
                text = rng.choice(["12", "13", "twelve", "", "1 2"])
                truth = "12" if group % 2 == 0 else None
                rows.append(
                    rollout(
                        job_id, step, step - 1, group, index,
                        rewards=rewards, truth=truth, completion=text,
                        prompt_id=f"q{(step + group) % 5}", completion_tokens=rng.randint(1, 16),
                        truncated=rng.random() < 0.2,
                    )
                )  # fmt: skip
    return rows


def stored_rollouts(store, job_id) -> pd.DataFrame:
    """Every stored rollout of the job, read back prompt by prompt."""
    prompts = store.rollout_prompts(job_id)
    frames = [store.prompt_rollouts(job_id, prompt_id) for prompt_id in prompts["prompt_id"]]
    return pd.concat(frames, ignore_index=True)


def recomputed_steps(rows: pd.DataFrame) -> pd.DataFrame:
    """What the per-step summary must hold, computed by pandas (population std, nulls ignored)."""
    records = []
    for step, group in rows.groupby("step"):
        groups = group.groupby(["generation", "group_index"])["reward"]
        record = {
            "step": step,
            "rollout_count": len(group),
            "group_count": groups.ngroups,
            "zero_std_groups": int(((groups.min() == groups.max()) & groups.min().notna()).sum()),
            "truncated_count": int(group["truncated"].sum()),
            "scored_count": int(group["char_error_rate"].notna().sum()),
        }
        for column, name in (("reward", "reward"), ("completion_tokens", "completion_tokens")):
            values = group[column].astype(float)
            record[f"avg_{name}"], record[f"std_{name}"] = values.mean(), values.std(ddof=0)
            record[f"min_{name}"], record[f"max_{name}"] = values.min(), values.max()
        record.update({f"avg_{metric}": group[metric].mean() for metric in METRICS})
        records.append(record)
    return pd.DataFrame(records)[list(ROLLOUT_STEP_COLUMNS)]


def recomputed_rewards(rows: pd.DataFrame) -> pd.DataFrame:
    long = pd.DataFrame(
        [
            {"step": step, "name": name, "value": value}
            for step, rewards in zip(rows["step"], rows["rewards"], strict=True)
            for name, value in rewards.items()
        ]
    )
    stats = long.groupby(["step", "name"])["value"]
    frame = pd.DataFrame(
        {
            "count": stats.count(),
            "avg": stats.mean(),
            "std": stats.std(ddof=0),
            "min": stats.min(),
            "max": stats.max(),
        }
    ).reset_index()
    return frame[list(REWARD_TREND_COLUMNS)]


def test_the_step_summary_equals_a_pandas_recomputation_of_the_stored_rollouts(store):
    rows = random_job("rl")
    store.write_rollouts(rows[:20])
    store.write_rollouts(rows[15:])  # overlapping writes: replays are updates
    stored = stored_rollouts(store, "rl")
    assert len(stored) == len(rows) == 48
    assert list(stored.columns[: len(ROLLOUT_COLUMNS)]) == list(ROLLOUT_COLUMNS)
    trends = store.rollout_trends("rl")
    pd.testing.assert_frame_equal(
        trends.steps, recomputed_steps(stored), check_dtype=False, rtol=1e-9, atol=1e-9
    )
    pd.testing.assert_frame_equal(
        trends.rewards, recomputed_rewards(stored), check_dtype=False, rtol=1e-9, atol=1e-9
    )
    assert trends.steps["zero_std_groups"].sum() > 0, "no flat group: the count is not tested"
    assert trends.steps["scored_count"].sum() > 0


def test_a_replayed_rollout_updates_in_place_and_the_summary_follows(store):
    first = rollout("rl", 3, 2, 0, 0, rewards={"accuracy": 0.0}, completion="wrong")
    store.write_rollouts([first, rollout("rl", 3, 2, 0, 1, rewards={"accuracy": 0.0})])
    store.write_rollouts([rollout("rl", 3, 2, 0, 0, rewards={"accuracy": 1.0}, completion="right")])
    stored = stored_rollouts(store, "rl")
    assert len(stored) == 2
    assert stored.loc[0, "completion"] == "right" and stored.loc[0, "rewards"] == {"accuracy": 1.0}
    (step,) = store.rollout_trends("rl").steps.to_dict("records")
    assert (step["rollout_count"], step["group_count"], step["zero_std_groups"]) == (2, 1, 0)
    assert step["avg_reward"] == pytest.approx(0.5) and step["std_reward"] == pytest.approx(0.5)


def test_best_and_worst_of_a_step_by_total_reward_with_nulls_last(store):
    rewards = [0.5, None, 2.0, -1.0]
    store.write_rollouts(
        [rollout("rl", 1, 0, 0, i, reward=r, rewards={"accuracy": r}) for i, r in enumerate(rewards)]
    )
    store.write_rollouts([rollout("rl", 2, 1, 0, 0, reward=9.0)])  # another step: never listed
    best = store.step_rollouts("rl", 1, best=True, limit=3)
    worst = store.step_rollouts("rl", 1, best=False, limit=4)
    assert best["reward"].tolist() == [2.0, 0.5, -1.0]
    assert worst["reward"].tolist()[:3] == [-1.0, 0.5, 2.0] and math.isnan(worst["reward"].iloc[3])
    assert best["truncated"].dtype == bool and isinstance(best.loc[0, "rewards"], dict)


def test_prompt_history_in_step_then_group_order_with_the_ground_truth_and_metrics(store):
    rows = [
        rollout("rl", step, step, 0, index, prompt_id="q7", truth="12", completion=text)
        for step, texts in ((2, ["12", "21"]), (1, ["1", "12x"]))
        for index, text in enumerate(texts)
    ]
    store.write_rollouts([*rows, rollout("rl", 1, 1, 1, 0, prompt_id="other")])
    history = store.prompt_rollouts("rl", "q7")
    assert history[["step", "completion_index"]].values.tolist() == [[1, 0], [1, 1], [2, 0], [2, 1]]
    assert history["completion"].tolist() == ["1", "12x", "12", "21"]
    assert history["exact_match"].tolist() == [0.0, 0.0, 1.0, 0.0]
    prompts = store.rollout_prompts("rl")
    assert prompts.set_index("prompt_id").loc[
        "q7", ["rollout_count", "first_step", "last_step"]
    ].tolist() == [
        4,
        1,
        2,
    ]


def test_user_scores_and_unstorable_text_survive(store):
    from predictions.store.storable import storable_rollout

    row = rollout("rl", 1, 0, 0, 0, completion="a\x00b\ud83d", scores={"mine": 0.25}, prompt="<b>**x**</b>")
    store.write_rollouts([storable_rollout(row)])
    (stored,) = store.prompt_rollouts("rl", row.prompt_id).to_dict("records")
    assert stored["completion"] == "a\ufffdb\ufffd" and stored["text_replacements"] == 2
    assert stored["prompt"] == "<b>**x**</b>" and stored["mine"] == 0.25


def test_deleting_the_job_deletes_its_rollouts_and_their_summary(store):
    store.start_job("rl", name="grpo")
    store.write_rollouts(random_job("rl")[:8])
    store.write_rollouts(random_job("kept")[:4])
    store.delete_job("rl")
    assert store.rollout_trends("rl").steps.empty and store.rollout_prompts("rl").empty
    assert len(store.rollout_trends("kept").steps) == 1


def test_reads_check_their_limit(store):
    with pytest.raises(ConfigError, match="limit=0"):
        store.step_rollouts("rl", 1, limit=0)
    with pytest.raises(ConfigError, match="limit=5000"):
        store.prompt_rollouts("rl", "q", limit=5000)


TEXT = st.text(alphabet=st.characters(codec=None), max_size=40) | st.sampled_from(
    ["\x00", "\ud83d", "**bold** <b>x</b>", "=HYPERLINK()", ""]
)
REWARD = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10) | st.booleans()


@given(
    completion=TEXT,
    prompt=TEXT,
    truth=st.none() | TEXT,
    rewards=st.dictionaries(TEXT.filter(bool), REWARD, max_size=3),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_and_reward_is_stored_storable_and_read_back_as_written(
    store, completion, prompt, truth, rewards
):
    """Whatever a model writes and a reward function returns is stored (text made storable and counted,
    non-finite rewards as null), never refused, on every store."""
    from predictions.store.storable import storable, storable_rollout

    job_id = f"prop-{uuid.uuid4().hex[:8]}"
    row = storable_rollout(rollout(job_id, 1, 0, 0, 0, completion=completion, prompt=prompt, rewards=rewards,
                                   truth=truth, prompt_id="p"))  # fmt: skip
    store.write_rollouts([row])
    (stored,) = store.prompt_rollouts(job_id, "p").to_dict("records")
    assert stored["completion"] == storable(completion)[0] and stored["prompt"] == storable(prompt)[0]
    expected = {storable(name)[0]: value for name, value in rewards.items()}
    finite = {name: float(v) for name, v in expected.items() if v is not None and math.isfinite(float(v))}
    assert {k: v for k, v in stored["rewards"].items() if v is not None} == finite
    assert set(stored["rewards"]) == set(expected)
    assert stored["text_replacements"] == row.text_replacements
