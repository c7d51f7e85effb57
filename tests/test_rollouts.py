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


@pytest.mark.timeout(600)
def test_a_run_resumed_mid_batch_continues_its_job_keeps_kept_steps_and_replaces_discarded_ones(
    tmp_path, sqlite_store
):
    """One batch every two steps (steps 1, 3, 5), a checkpoint every step. Resumed from step 3's
    checkpoint, TRL generates at once (step 4) and then at step 6: the job continues (no job_id given;
    the checkpoint names it), step 1's and 3's batches stay (they trained kept steps), and step 5's
    batch, which trained only discarded steps, is replaced; each stored rollout once."""
    out = {"steps_per_generation": 2, "max_steps": 6, "save_strategy": "steps", "save_steps": 1}
    first = RolloutRecorder(store=sqlite_store, job_name="resumed")
    trainer, (before, _), _ = train(tmp_path, first, **out)
    checkpoint = trainer.args.output_dir + "/checkpoint-3"

    again = RolloutRecorder(store=sqlite_store, job_name="resumed")
    funcs = g.reward_functions()
    resumed = g.grpo_trainer(tmp_path, again.wrap(funcs), [again], **out)
    resumed.train(resume_from_checkpoint=checkpoint)

    assert again.job_id == first.job_id
    assert [job.status for job in sqlite_store.list_jobs()] == ["finished"]  # one job: resumed, then done
    assert [c["step"] for c in before.calls] == [0, 2, 4] and [c["step"] for c in funcs[0].calls] == [3, 5]
    stored = all_rollouts(sqlite_store, first.job_id)
    assert not stored.duplicated(["generation", "group_index", "completion_index"]).any()
    by_generation = stored.groupby("generation")["step"].unique().map(list).to_dict()
    assert by_generation == {0: [1], 1: [3], 2: [4], 3: [6]}  # step 5's batch replaced by step 4's
    for generation, call in ((0, before.calls[0]), (1, before.calls[1]), (2, funcs[0].calls[0])):
        batch = stored[stored["generation"] == generation].sort_values(["group_index", "completion_index"])
        assert [r["accuracy"] for r in batch["rewards"]] == call["values"]
        assert batch["prompt_id"].tolist() == call["ids"]
    steps = sqlite_store.rollout_trends(first.job_id).steps
    assert steps["step"].tolist() == [1, 3, 4, 6] and (steps["rollout_count"] == 16).all()


@pytest.mark.timeout(600)
def test_num_iterations_and_rewards_of_none_are_stored_once_as_the_trainer_logs_them(tmp_path, sqlite_store):
    """num_iterations=2 reuses each batch for two steps: stored once, at the step that generated it. A
    function returning None for rows it does not apply to: stored as missing, and the step's mean reward
    and each function's mean equal TRL's own (rows no function scored left out, as TRL does)."""
    picky = g.Counted("picky", lambda text, row: None if row["id"] in ("q0", "q1", "q2") else len(text) / 8)
    sparse = g.Counted("sparse", lambda text, row: None if row["id"] in ("q0", "q3") else -1.0)
    recorder = RolloutRecorder(store=sqlite_store)
    torch.manual_seed(0)
    trainer = g.grpo_trainer(
        tmp_path, recorder.wrap([picky, sparse]), [recorder], num_iterations=2, max_steps=4
    )
    generated = g.count_generate(trainer)
    trainer.train()

    stored = all_rollouts(sqlite_store, recorder.job_id)
    assert [c["step"] for c in picky.calls] == [0, 2] and len(generated) == 2
    assert len(stored) == 16 and sorted(stored["generation"].unique()) == [0, 1]
    assert not stored.duplicated(["generation", "group_index", "completion_index"]).any()
    steps = sqlite_store.rollout_trends(recorder.job_id)
    assert steps.steps["step"].tolist() == [1, 3]
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    logged = {entry["step"]: entry for entry in logs}
    for step, avg in zip(steps.steps["step"], steps.steps["avg_reward"], strict=True):
        assert avg == pytest.approx(logged[step]["reward"], abs=1e-5, nan_ok=True)
    for name in ("picky", "sparse"):
        means = steps.rewards[steps.rewards["name"] == name].set_index("step")["avg"]
        for step, mean in means.items():
            assert mean == pytest.approx(logged[step][f"rewards/{name}/mean"], abs=1e-5, nan_ok=True)
    assert stored.loc[stored["prompt_id"] == "q0", "reward"].isna().all()  # no function scored q0
