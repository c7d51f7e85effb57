"""`RolloutRecorder`'s hooks and wrappers called directly, as GRPOTrainer calls them, with a real
`TrainerState`: values handed back unchanged, rows built once per batch, options checked at construction."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import threading

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import TrainerControl, TrainerState
from trl import GRPOConfig

from predictions import ConfigError, RolloutRecorder
from predictions.delivery.pieces import PIECE, in_pieces
from predictions.store import SQLiteStore
from predictions.training.rollouts import Builder, RunShape, generation_number
from tests import helpers_training as h
from tests.helpers import open_files


def config(tmp_path, **overrides) -> GRPOConfig:
    options = {"output_dir": str(tmp_path), "report_to": [], "use_cpu": True, "num_generations": 2}
    return GRPOConfig(**{**options, "per_device_train_batch_size": 4, **overrides})


def begin(recorder, tmp_path, **overrides):
    state = TrainerState(is_world_process_zero=True)
    tok = h.tokenizer()
    model = h.model(tok=tok)
    model.train()
    recorder.on_train_begin(
        config(tmp_path, **overrides), state, TrainerControl(), model=model, processing_class=tok
    )
    return state, tok, model


def reward_call(state, tok, completions=("ab", "ba", "cd", "dc"), **columns):
    ids = [tok(text, add_special_tokens=False)["input_ids"] for text in completions]
    return {
        "prompts": ["x=", "x=", "y=", "y="],
        "completions": list(completions),
        "completion_ids": ids,
        "answer": ["ab", "ab", "dc", "dc"],
        "trainer_state": state,
        "log_extra": lambda *a: None,
        "log_metric": lambda *a: None,
        **columns,
    }


def exact(prompts, completions, answer, **kwargs):
    return [float(c == a) for c, a in zip(completions, answer, strict=True)]


def length(completions, **kwargs):
    return [float(len(c)) for c in completions]


def test_values_go_back_unchanged_and_one_row_per_rollout_once_both_functions_scored(tmp_path, sqlite_store):
    recorder = RolloutRecorder(store=sqlite_store)
    first, second = recorder.wrap([exact, length])
    assert (first.__name__, second.__name__) == ("exact", "length")  # TRL logs rewards/<name>
    state, tok, _ = begin(recorder, tmp_path)
    kwargs = reward_call(state, tok)
    assert first(**kwargs) == [1.0, 0.0, 0.0, 1.0]
    assert second(**kwargs) == [2.0, 2.0, 2.0, 2.0]
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    rows = sqlite_store.step_rollouts(recorder.job_id, 1, limit=10)
    assert len(rows) == 4
    assert sorted(map(tuple, rows[["group_index", "completion_index"]].values.tolist())) == [
        (0, 0), (0, 1), (1, 0), (1, 1)
    ]  # fmt: skip
    assert rows["reward"].tolist() == [3.0, 3.0, 2.0, 2.0]
    assert rows["exact_match"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert rows["prompt_id"].str.startswith("sha1:").all() and rows["prompt_id"].nunique() == 2


def test_the_dataset_id_names_the_prompt_and_user_scorers_see_the_row(tmp_path, sqlite_store):
    seen = []

    def mine(prediction, ground_truth, sample):
        seen.append(sample["id"])
        return len(prediction)

    recorder = RolloutRecorder(store=sqlite_store, scorers={"chars": mine})
    (wrapped,) = recorder.wrap([exact])
    state, tok, _ = begin(recorder, tmp_path)
    wrapped(**reward_call(state, tok, id=["a", "a", "b", "b"]))
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    rows = sqlite_store.prompt_rollouts(recorder.job_id, "b")
    assert rows["completion"].tolist() == ["cd", "dc"] and rows["chars"].tolist() == [2.0, 2.0]
    assert seen == ["a", "a", "b", "b"]


def test_a_batch_built_in_many_pieces_keeps_each_rollouts_own_texts_and_scores(tmp_path, sqlite_store):
    """The builder makes rows in pieces (`in_pieces`) with the interpreter lock offered back between them:
    a batch over several pieces still stores every rollout once, with its own prompt, completion, truth,
    group, index, rewards and metrics, and the user's scorer sees each sample once, in order."""
    seen = []

    def mine(prediction, ground_truth, sample):
        seen.append(sample["id"])
        return float(prediction == ground_truth)

    recorder = RolloutRecorder(store=sqlite_store, scorers={"same": mine}, max_groups=None)
    exact_fn, length_fn = recorder.wrap([exact, length])
    state, tok, _ = begin(recorder, tmp_path)
    count = 3 * PIECE + 5
    completions = [f"c{n}" for n in range(count)]
    kwargs = reward_call(state, tok, completions=completions)
    kwargs |= {
        "prompts": [f"p{n // 2}=" for n in range(count)],
        "answer": [f"c{n - n % 2}" for n in range(count)],
        "id": [f"g{n // 2}" for n in range(count)],
    }
    exact_fn(**kwargs)
    length_fn(**kwargs)
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    rows = pd.concat(sqlite_store.prompt_rollouts(recorder.job_id, f"g{g}") for g in range((count + 1) // 2))
    assert len(rows) == count and seen == kwargs["id"]
    rows = rows.sort_values(["group_index", "completion_index"])
    n = rows["group_index"] * 2 + rows["completion_index"]
    assert n.tolist() == list(range(count))
    assert rows["completion"].tolist() == completions
    assert rows["prompt"].tolist() == kwargs["prompts"] and rows["ground_truth"].tolist() == kwargs["answer"]
    right = [float(n % 2 == 0) for n in range(count)]
    assert rows["exact_match"].tolist() == right and rows["same"].tolist() == right
    assert rows["reward"].tolist() == [e + len(c) for e, c in zip(right, completions, strict=True)]


def test_the_builder_runs_every_job_put_before_close_in_order_past_a_failing_one(caplog):
    builder = Builder()
    done: list[int] = []
    for n in range(3):
        builder.put(functools.partial(done.append, n))
    builder.put(lambda: 1 / 0)
    builder.put(functools.partial(done.append, 3))
    builder.close()
    assert done == [0, 1, 2, 3] and "could not be recorded" in caplog.text
    builder.put(functools.partial(done.append, 4))  # after close: not run, nothing raised
    builder.close()
    assert done == [0, 1, 2, 3]


def test_pieces_cover_every_item_once_in_order():
    assert [list(piece) for piece in in_pieces(list(range(70)), 32)] == [
        list(range(32)),
        list(range(32, 64)),
        list(range(64, 70)),
    ]
    assert list(in_pieces([], 32)) == []


def test_async_and_partial_functions_keep_their_kind_and_name(tmp_path, sqlite_store):
    async def judge(completions, **kwargs):
        return [0.5] * len(completions)

    recorder = RolloutRecorder(store=sqlite_store)
    wrapped_judge, wrapped_partial = recorder.wrap([judge, functools.partial(length)])
    assert asyncio.iscoroutinefunction(wrapped_judge) and wrapped_partial.__name__ == "length"
    state, tok, _ = begin(recorder, tmp_path)
    kwargs = reward_call(state, tok)
    wrapped_partial(**kwargs)
    # on a thread of its own, as TRL runs async reward functions on its own loop's thread (and this
    # worker's main thread may hold the session's Playwright loop)
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        assert thread.submit(asyncio.run, wrapped_judge(**kwargs)).result() == [0.5] * 4
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    assert sqlite_store.rollout_trends(recorder.job_id).rewards["name"].unique().tolist() == [
        "judge",
        "length",
    ]


def test_evaluation_rollouts_are_not_stored(tmp_path, sqlite_store):
    recorder = RolloutRecorder(store=sqlite_store)
    (wrapped,) = recorder.wrap([exact])
    state, tok, model = begin(recorder, tmp_path)
    model.eval()
    assert wrapped(**reward_call(state, tok)) == [1.0, 0.0, 0.0, 1.0]
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    assert sqlite_store.rollout_prompts(recorder.job_id).empty


def test_a_failure_to_record_is_logged_and_training_gets_its_values(tmp_path, sqlite_store, caplog):
    recorder = RolloutRecorder(store=sqlite_store)
    (wrapped,) = recorder.wrap([length])
    state, tok, _ = begin(recorder, tmp_path)
    broken = reward_call(state, tok, answer=["ab"])  # a column shorter than the batch
    with caplog.at_level(logging.ERROR):
        assert wrapped(**broken) == [2.0, 2.0, 2.0, 2.0]
        recorder.on_train_end(config(tmp_path), state, TrainerControl())  # rows are built off the step
    assert "could not be recorded" in caplog.text
    assert sqlite_store.rollout_prompts(recorder.job_id).empty


def test_a_reward_call_before_train_begin_names_the_missing_callback():
    recorder = RolloutRecorder()
    (wrapped,) = recorder.wrap([exact])
    with pytest.raises(ConfigError, match=r"callbacks=\[recorder\]"):
        wrapped(prompts=["a"], completions=["a"], answer=["a"])


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_groups": 0}, "max_groups=0"),
        ({"every_n_generations": True}, "every_n_generations=True"),
        ({"job_id": " "}, "job_id=' '"),
        ({"store": "sqlite"}, "store='sqlite'"),
        ({"scorers": {"bad name": len}}, "bad name"),
        ({"tags": "baseline"}, "a single tag goes in a list"),
    ],
)
def test_bad_options_fail_at_construction_naming_the_option(options, named):
    with pytest.raises(ConfigError, match=named):
        RolloutRecorder(**options)


def test_the_job_gets_the_recorders_tags_and_note(tmp_path, sqlite_store):
    recorder = RolloutRecorder(store=sqlite_store, tags=["grpo", "baseline"], note="first RL run")
    recorder.wrap([exact])
    state, _, _ = begin(recorder, tmp_path)
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    (job,) = sqlite_store.list_jobs()
    assert (job.tags, job.note) == (("grpo", "baseline"), "first RL run")


def test_reward_models_and_duplicate_names_are_refused_by_wrap():
    with pytest.raises(ConfigError, match=r"nn\.Module"):
        RolloutRecorder().wrap([torch.nn.Linear(1, 1)])
    with pytest.raises(ConfigError, match="distinct"):
        RolloutRecorder().wrap([exact, exact])


def test_a_trainer_without_groups_is_refused_at_train_begin(tmp_path, sqlite_store):
    recorder = RolloutRecorder(store=sqlite_store)
    recorder.wrap([exact])
    with pytest.raises(ConfigError, match="GRPOConfig"):
        recorder.on_train_begin(h.arguments(tmp_path), TrainerState(), TrainerControl())


def test_rollouts_outlive_a_locked_store_and_a_poison_row_is_quarantined_alone(tmp_path):
    from predictions.delivery.outbox import Outbox
    from predictions.delivery.writer import Writer
    from predictions.store import SQLiteStore
    from tests.test_security import rollouts

    db = tmp_path / "p.db"
    store = SQLiteStore(db, timeout_s=0.05)
    good, other = rollouts("rl")
    poison = dataclasses.replace(other, completion_index=7, prompt=None)  # NOT NULL: refused for good
    with h.locked(db):
        writer = Writer(store, retries=1, backoff_s=0.01)
        writer.write_rollouts([good, poison, other])
        writer.close()  # stored nothing: every call is in the outbox
    assert store.rollout_prompts("rl").empty and len(Outbox(writer.spool_path).pending()) == 1
    Writer(store).close()  # the next writer replays the outbox first
    assert store.prompt_rollouts("rl", "q0")["completion_index"].tolist() == [0, 1]
    (quarantined,) = Outbox(writer.spool_path).quarantined()
    assert [row["completion_index"] for row in quarantined.call["rows"]] == [7]


def test_a_recorder_for_another_owner_keeps_its_calls_as_that_owners(tmp_path, monkeypatch):
    """A service-role machine configured for Ada records a GRPO run for Bob (`user_id=`) while Supabase
    is down: every call waits in the outbox under Bob's name and names Bob, so only Bob's identity
    replays it, as Bob's (as the callback's writer does)."""
    from predictions.delivery.outbox import Outbox
    from predictions.store.supabase import SupabaseStore
    from tests.helpers import free_port
    from tests.helpers_outbox import kept
    from tests.pg_fixtures import USER_A, USER_B
    from tests.postgrest_server import api_key

    monkeypatch.setenv("PREDICTIONS_SPOOL", str(tmp_path / "o.db"))
    down = SupabaseStore(f"http://127.0.0.1:{free_port()}", api_key("service_role"), user_id=USER_A)
    recorder = RolloutRecorder(store=down, user_id=USER_B)
    (wrapped,) = recorder.wrap([exact])
    state, tok, _ = begin(recorder, tmp_path)
    wrapped(**reward_call(state, tok))
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    assert [key.owner for key in Outbox(tmp_path / "o.db").pending()] == [f"user {USER_B}"]
    calls = kept(tmp_path / "o.db")
    assert [call["op"] for call in calls] == ["start_job", "write_rollouts", "finish_job"]
    owners = {call.get("user_id") for call in calls if call["op"] != "write_rollouts"}
    assert owners | {row["user_id"] for row in calls[1]["rows"]} == {USER_B}


def test_a_reward_function_that_raises_fails_training_with_its_error_and_the_job_once_train_is_rerun(
    tmp_path, sqlite_store
):
    """The user's error reaches the trainer unchanged; calling train() again (the fixed function, in the
    same process, as in a notebook) marks the first job failed at once, with its earlier rollouts kept and
    the half-scored batch left out, and starts a new job."""
    broken = [False]

    def picky(completions, **kwargs):
        if broken[0]:
            raise ValueError("picky cannot score this batch")
        return [1.0] * len(completions)

    recorder = RolloutRecorder(store=sqlite_store)
    first, second = recorder.wrap([exact, picky])
    state, tok, _ = begin(recorder, tmp_path)
    kwargs = reward_call(state, tok)
    first(**kwargs), second(**kwargs)
    state.global_step, broken[0] = 1, True
    kwargs = reward_call(state, tok)
    first(**kwargs)
    with pytest.raises(ValueError, match="picky cannot score this batch"):
        second(**kwargs)
    failed_job = recorder.job_id
    broken[0] = False
    state, tok, _ = begin(recorder, tmp_path)  # train() again
    kwargs = reward_call(state, tok)
    first(**kwargs), second(**kwargs)
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    statuses = {job.id: job.status for job in sqlite_store.list_jobs()}
    assert recorder.job_id != failed_job and statuses == {failed_job: "failed", recorder.job_id: "finished"}
    assert sqlite_store.rollout_trends(failed_job).steps["step"].tolist() == [1]  # not the half-scored batch
    assert sqlite_store.rollout_trends(recorder.job_id).steps["rollout_count"].tolist() == [4]


@pytest.mark.parametrize(
    ("error", "status"),
    [(ValueError("picky cannot score this batch"), "failed"), (KeyboardInterrupt(), "stopped")],
)
def test_a_notebook_cell_whose_run_raises_ends_the_recorders_job_before_the_next_cell(
    tmp_path, sqlite_store, ipython, error, status
):
    """In IPython (`post_run_cell`): the cell that started the run raised, so its job is finished at once,
    its earlier rollouts stored and its writer closed; the user's interrupt reads stopped, as their own."""
    recorder = RolloutRecorder(store=sqlite_store)
    first, second = recorder.wrap([exact, length])

    def run():
        state, tok, _ = begin(recorder, tmp_path)
        state.max_steps = 8
        kwargs = reward_call(state, tok)
        first(**kwargs), second(**kwargs)
        state.global_step = 1
        raise error

    ipython.user_ns["run"] = run
    assert ipython.run_cell("run()").error_in_exec is error
    job = sqlite_store.list_jobs()[0]
    assert (job.id, job.status, recorder._writer) == (recorder.job_id, status, None)
    assert sqlite_store.rollout_trends(job.id).steps["rollout_count"].tolist() == [4]
    reason = "Stopped at step 1 of 8: interrupted by the user (KeyboardInterrupt)."
    assert (job.stop_reason.describe() if job.stop_reason else None) == (
        reason if status == "stopped" else None
    )


def test_reward_functions_returning_none_store_none_and_a_total_of_the_functions_that_scored(
    tmp_path, sqlite_store
):
    """TRL lets a function return None for a rollout it does not apply to: that reward is stored as
    missing, the total sums the others (weighted), and a rollout no function scored has no total."""

    def odd(completions, **kwargs):
        return [None if i % 2 else 1.0 for i in range(len(completions))]

    def early(completions, **kwargs):
        return [2.0 if i < 2 else None for i in range(len(completions))]

    recorder = RolloutRecorder(store=sqlite_store)
    wrapped = recorder.wrap([odd, early])
    state, tok, _ = begin(recorder, tmp_path, reward_weights=[1.0, 0.5])
    kwargs = reward_call(state, tok)
    assert [f(**kwargs) for f in wrapped] == [[1.0, None, 1.0, None], [2.0, 2.0, None, None]]
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    rows = sqlite_store.step_rollouts(recorder.job_id, 1, limit=10).sort_values(
        ["group_index", "completion_index"]
    )
    assert rows["rewards"].tolist() == [
        {"odd": 1.0, "early": 2.0}, {"odd": None, "early": 2.0}, {"odd": 1.0, "early": None},
        {"odd": None, "early": None},
    ]  # fmt: skip
    assert rows["reward"].tolist()[:3] == [2.0, 1.0, 1.0] and pd.isna(rows["reward"].tolist()[3])
    steps = sqlite_store.rollout_trends(recorder.job_id).steps
    assert steps["avg_reward"].tolist() == pytest.approx([4.0 / 3])  # as TRL: unscorable rows left out


def test_the_training_thread_never_waits_for_a_store_call_in_progress(tmp_path):
    """A store call that never returns (until released) holds the writer's thread; reward calls of many
    large batches meanwhile all return: the training thread's path shares no lock with the writer."""
    from predictions.store import SQLiteStore

    class Stuck(SQLiteStore):
        def __init__(self, path):
            super().__init__(path)
            self.entered, self.release = threading.Event(), threading.Event()

        def write_rollouts(self, rows):
            self.entered.set()
            self.release.wait()
            super().write_rollouts(rows)

    store = Stuck(tmp_path / "p.db")
    recorder = RolloutRecorder(store=store, max_groups=None)
    (wrapped,) = recorder.wrap([length])
    state, tok, _ = begin(recorder, tmp_path)
    wrapped(**reward_call(state, tok))
    assert store.entered.wait(30)  # the writer's thread is inside the store call from here on
    big = ["ab", "ba"] * 500
    for step in range(1, 11):
        state.global_step = step
        kwargs = reward_call(state, tok, completions=big)
        kwargs |= {"prompts": ["x="] * len(big), "answer": ["ab"] * len(big)}
        assert len(wrapped(**kwargs)) == len(big)  # returned while the store call is still stuck
    store.release.set()
    recorder.on_train_end(config(tmp_path), state, TrainerControl())
    assert store.rollout_trends(recorder.job_id).steps["rollout_count"].tolist() == [4] + [1000] * 10
    store.close()


@given(
    accumulation=st.integers(1, 4),
    per_generation=st.integers(1, 4),
    iterations=st.integers(1, 3),
    stopped_at=st.integers(0, 12),
    resumed_at=st.integers(0, 12),
)
def test_generation_numbers_follow_the_trainer_and_a_resume_never_overwrites_a_kept_batch(
    accumulation, per_generation, iterations, stopped_at, resumed_at
):
    """TRL generates at every `steps_per_generation * num_iterations`-th micro-batch, counting from the step
    the process started at. A run resumed from step `resumed_at` numbers its batches on from those begun
    before it: the batch that trained the checkpoint's last steps keeps its rows, and each batch the
    interrupted run generated after the checkpoint is replaced by the resumed run's of the same number."""
    every = per_generation * iterations

    def numbers(origin: int, steps: int) -> list[tuple[int, int]]:
        shape = RunShape(2, [], accumulation, every, frozenset(), origin=origin)
        made, calls = [], {}
        for micro in range(steps * accumulation):
            if micro % every == 0:  # TRL's `_step % generate_every == 0`, `_step` from 0 in this process
                step = origin + micro // accumulation
                made.append((step, generation_number(step, calls.get(step, 0), shape)))
                calls[step] = calls.get(step, 0) + 1
        return made

    first = numbers(0, stopped_at + 6)
    assert [number for _, number in first] == list(range(len(first)))  # 0, 1, 2 ... once each
    resumed_at = min(resumed_at, stopped_at)
    resumed = numbers(resumed_at, 6)
    kept = {number for step, number in first if step < resumed_at}  # batches that trained kept steps
    assert resumed[0][1] == len(kept)  # the next number: no kept batch overwritten, none skipped
    assert [number for _, number in resumed] == list(range(len(kept), len(kept) + len(resumed)))


def test_the_store_a_recorder_opened_itself_is_closed_when_each_run_ends(tmp_path, monkeypatch):
    """No `store` option: each `train()` opens the store, and its end closes it (a search's trials, a
    notebook's runs: a connection and two open files each, before)."""
    db = tmp_path / "p.db"
    monkeypatch.setenv("PREDICTIONS_DB", str(db))
    monkeypatch.setenv("SUPABASE_URL", "")
    recorder = RolloutRecorder()
    first, second = recorder.wrap([exact, length])
    for _run in range(2):
        state, tok, _ = begin(recorder, tmp_path)
        kwargs = reward_call(state, tok)
        first(**kwargs), second(**kwargs)
        assert open_files(db) > 0  # open while the run goes on
        recorder.on_train_end(config(tmp_path), state, TrainerControl())
        assert open_files(db) == 0
    store = SQLiteStore(db)
    assert sorted(job.status for job in store.list_jobs()) == ["finished", "finished"]
    store.close()
