"""Rollouts: an RL job's completions (GRPO and the like) as the trainer generated them, step by step.

Reward trends per function and total, completion length, groups with nothing to learn from; the
alarm when the reward rises while the answers get worse; the best and worst completions of a step;
and one prompt's history, every group's completions side by side.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from predictions.dashboard import (
    analysis,
    charts,
    columns,
    diff,
    queries,
    rollout_analysis,
    rollout_charts,
    router,
    widgets,
)
from predictions.dashboard.run_panel import run_section

# 630 px and 80 px a reward function: with up to three functions the table fits a 1280 px page beside
# the sidebar (tests/test_browser_widths.py). A comment: Streamlit's magic would write a bare string.
ROLLOUT_COLUMNS = {
    "reward": st.column_config.NumberColumn("Reward", format="%.3f", width=75),
    "completion": columns.text("Completion", width=230),
    "completion_tokens": st.column_config.NumberColumn("Tokens", width=65),
    "prompt": columns.text("Prompt", width=140),
    "ground_truth": columns.text("Ground truth", width=120),
}
# Each reward function has a column of its own, keyed by its name after this prefix, so no function's name
# (say `prompt`) can take another column's place.
REWARD_PREFIX = "reward of "


def headline(steps: pd.DataFrame) -> None:
    """The latest step's mean reward, length and flat-group share, each with its change."""
    latest = steps.iloc[-1]
    previous = steps.iloc[-2] if len(steps) > 1 else None

    def delta(column: str) -> float | None:
        return None if previous is None else float(latest[column] - previous[column])

    flat = steps["zero_std_groups"] / steps["group_count"]
    cards = st.columns(4)
    reward, reward_change = analysis.number_text(latest["avg_reward"]), delta("avg_reward")
    change = None if reward_change is None else analysis.number_text(reward_change, signed=True)
    cards[0].metric("Mean reward", reward, change, border=True)  # the change in the value's own digits
    length, length_change = f"{latest['avg_completion_tokens']:.1f} tok", delta("avg_completion_tokens")
    change = None if length_change is None else f"{length_change:+.1f}"
    cards[1].metric("Mean length", length, change, delta_color="off", border=True)
    cards[2].metric("Equal-reward groups", f"{flat.iloc[-1]:.0%}", border=True)
    latest_count = f"{int(latest['rollout_count'])} rollouts at the latest"
    cards[3].metric("Steps", len(steps), latest_count, delta_color="off", delta_arrow="off", border=True)


def trend_charts(trends) -> None:
    steps = trends.steps
    st.vega_lite_chart(
        spec=rollout_charts.reward_chart(rollout_charts.reward_frame(steps, trends.rewards)), key="rewards"
    )
    left, right = st.columns(2)
    left.vega_lite_chart(spec=rollout_charts.length_chart(steps), key="length")
    right.vega_lite_chart(spec=rollout_charts.flat_groups_chart(steps), key="flat_groups")
    if steps["scored_count"].sum() > 0:
        rounds = steps.assign(epoch=1, sample_count=steps["rollout_count"])
        st.vega_lite_chart(spec=charts.trend_chart(rounds, "char_error_rate"), key="rollout_cer")


def as_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Rollout rows for a table and its column settings: each reward function in a number column of its
    own after the total (as text in one cell, three functions' values were cut at 1400 px)."""
    names = sorted({name for rewards in rows["rewards"] for name in rewards})
    each = {f"{REWARD_PREFIX}{name}": [rewards.get(name) for rewards in rows["rewards"]] for name in names}
    table = rows[list(ROLLOUT_COLUMNS)].assign(**each)
    order = ["reward", *each, *list(ROLLOUT_COLUMNS)[1:]]
    config = ROLLOUT_COLUMNS | {
        key: st.column_config.NumberColumn(
            name, format="%.3f", width=80, help=widgets.plain(f"The reward of {name}")
        )
        for key, name in zip(each, names, strict=True)
    }
    return table[order], config


def best_and_worst(view: widgets.View, steps: pd.DataFrame) -> None:
    st.subheader("Best and worst completions of a step")
    numbers = steps["step"].tolist()
    step = (
        st.select_slider("Step", numbers, value=numbers[-1], key="rollout_step")
        if len(numbers) > 1
        else numbers[0]
    )
    best, worst = st.tabs(["Best", "Worst"])
    for tab, is_best in ((best, True), (worst, False)):
        table, config = as_table(queries.step_rollouts(view.store, view.ref(), int(step), is_best))
        tab.dataframe(table, hide_index=True, column_config=config, key=f"rollouts_{is_best}")


def prompt_history(view: widgets.View) -> None:
    """Pick a prompt; its rewards over the steps, then every group's completions side by side."""
    st.subheader("A prompt's history")
    prompts = queries.rollout_prompts(view.store, view.ref())
    labels = {
        row.prompt_id: f"{row.prompt_id} · {row.prompt[:60]}" for row in prompts.itertuples(index=False)
    }
    prompt_id = st.selectbox("Prompt", list(labels), format_func=labels.get, key="rollout_prompt")
    history = queries.prompt_rollouts(view.store, view.ref(), prompt_id)
    if history.empty:
        st.text("No rollouts of this prompt.")
        return
    first = history.iloc[0]
    left, right = st.columns(2)
    left.caption("Prompt, as given to the model")
    left.code(first["prompt"], language=None, wrap_lines=True)
    right.caption("Ground truth")
    truth = first["ground_truth"]
    right.code(truth if isinstance(truth, str) else "(none: not scored)", language=None, wrap_lines=True)
    st.vega_lite_chart(spec=rollout_charts.prompt_chart(history), key="prompt_chart")
    note = "red struck text is missing or wrong, green is added" if isinstance(truth, str) else "as generated"
    st.caption(f"Every group of this prompt, its completions side by side ({note}).")
    st.html(
        diff.DIFF_CSS + diff.HISTORY_CSS + rollout_analysis.GROUPS_CSS + rollout_analysis.groups_html(history)
    )


def main() -> None:
    view = router.require_job()
    st.title("Rollouts")
    st.caption(widgets.plain(view.job.label))
    run_section(view.job, queries.trends(view.store, view.ref()).config)
    trends = queries.rollout_trends(view.store, view.ref())
    if trends.steps.empty:
        st.info(
            "This job has no rollouts. An RL trainer's rollouts are stored by RolloutRecorder: "
            "GRPOTrainer(reward_funcs=recorder.wrap(funcs), callbacks=[recorder]).",
            icon="🎲",
        )
        return
    for alarm in rollout_analysis.alarms(trends.steps):
        st.warning(widgets.plain(alarm.message), icon="🚨")
    headline(trends.steps)
    trend_charts(trends)
    best_and_worst(view, trends.steps)
    prompt_history(view)


main()
