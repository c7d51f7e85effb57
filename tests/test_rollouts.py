"""`RolloutRecorder` under a real `trl.GRPOTrainer` on a tiny model: every rollout the reward functions
saw is stored once, with both rewards, its group and index, and training is exactly as without it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from predictions import RolloutRecorder
from tests import helpers_grpo as g

pytestmark = pytest.mark.slow


def all_rollouts(store, job_id: str) -> pd.DataFrame:
    prompts = store.rollout_prompts(job_id)
    return pd.concat([store.prompt_rollouts(job_id, p) for p in prompts["prompt_id"]], ignore_index=True)


def train(tmp_path, recorder: RolloutRecorder | None, **args):
    """Train 3 steps; the reward functions (wrapped when a recorder is given) and the generate count."""
    torch.manual_seed(0)
    funcs = g.reward_functions()
    reward_funcs = recorder.wrap(funcs) if recorder else funcs
    trainer = g.grpo_trainer(tmp_path, reward_funcs, [recorder] if recorder else [], **args)
    generated = g.count_generate(trainer)
    trainer.train()
    return trainer, funcs, len(generated)


@pytest.mark.timeout(600)
def test_every_rollout_is_stored_once_and_training_is_unchanged(tmp_path, sqlite_store):
    plain, _, plain_generates = train(tmp_path / "plain", None)
    recorder = RolloutRecorder(store=sqlite_store, job_name="grpo")
    trainer, (accuracy, brevity), generates = train(tmp_path / "recorded", recorder)

    assert generates == plain_generates > 0  # no extra generate
    keys = ("loss", "reward", "rewards/accuracy/mean", "rewards/brevity/mean", "completions/mean_length")
    assert g.logged(trainer, *keys) == g.logged(plain, *keys)  # bit-identical losses and rewards

    stored = all_rollouts(sqlite_store, recorder.job_id)
    seen = sum(len(call["values"]) for call in accuracy.calls)
    assert seen == 3 * 8 and len(stored) == seen  # every rollout the reward functions saw, once
    assert not stored.duplicated(["generation", "group_index", "completion_index"]).any()
    for call_number, (a_call, b_call) in enumerate(zip(accuracy.calls, brevity.calls, strict=True)):
        batch = stored[stored["generation"] == call_number].sort_values(["group_index", "completion_index"])
        assert batch["step"].unique().tolist() == [a_call["step"] + 1]
        assert [r["accuracy"] for r in batch["rewards"]] == a_call["values"]
        assert [r["brevity"] for r in batch["rewards"]] == pytest.approx(b_call["values"])
        assert batch["reward"].tolist() == pytest.approx(
            [a + b for a, b in zip(a_call["values"], b_call["values"], strict=True)]
        )
        assert batch["prompt_id"].tolist() == a_call["ids"]  # the dataset's id column
        assert (batch.groupby("group_index")["prompt_id"].nunique() == 1).all()  # a group is one prompt
        assert batch["completion_index"].tolist() == list(range(g.GROUP)) * 2
    assert stored["ground_truth"].notna().all() and stored["char_error_rate"].notna().all()
    assert (stored["completion_tokens"] <= 8).all()
    assert stored.loc[stored["completion_tokens"] < 8, "truncated"].eq(False).all()

    steps = sqlite_store.rollout_trends(recorder.job_id).steps
    logged_rewards = [reward for (reward,) in g.logged(trainer, "reward")]
    assert steps["avg_reward"].tolist() == pytest.approx(logged_rewards, abs=1e-6)  # aligned with the steps
    (job,) = [job for job in sqlite_store.list_jobs() if job.id == recorder.job_id]
    assert job.status == "finished" and job.name == "grpo"
    assert sqlite_store.trends(job.id).config["reward_functions"] == ["accuracy", "brevity"]


@pytest.mark.timeout(600)
def test_a_generation_batch_used_for_two_steps_is_stored_once_with_chat_prompts_and_weights(
    tmp_path, sqlite_store
):
    recorder = RolloutRecorder(store=sqlite_store, max_groups=1)
    _, (accuracy, _), generates = train(
        tmp_path,
        recorder,
        conversational=True,
        steps_per_generation=2,
        max_steps=4,
        reward_weights=[2.0, 0.5],
    )
    stored = all_rollouts(sqlite_store, recorder.job_id)
    assert len(accuracy.calls) == 2 == generates  # one generation batch for every two steps
    assert sorted(stored["step"].unique()) == [1, 3] and sorted(stored["generation"].unique()) == [0, 1]
    assert len(stored) == 2 * g.GROUP and (stored["group_index"] == 0).all()  # max_groups=1
    assert stored["prompt"].str.startswith("<user>").all()  # rendered with the chat template
    expected = [2.0 * r["accuracy"] + 0.5 * r["brevity"] for r in stored["rewards"]]
    assert stored["reward"].tolist() == pytest.approx(expected)


@pytest.mark.timeout(600)
def test_every_n_generations_keeps_only_those_batches(tmp_path, sqlite_store):
    recorder = RolloutRecorder(store=sqlite_store, every_n_generations=2)
    train(tmp_path, recorder)
    stored = all_rollouts(sqlite_store, recorder.job_id)
    assert sorted(stored["generation"].unique()) == [0, 2] and len(stored) == 2 * 8
