"""Charts of an RL job's rollouts: a frame from `Store.rollout_trends` in, a Vega-Lite spec out.

Rewards are drawn with a band of one standard deviation either side of the mean (the spread GRPO's
advantages are computed from), completion lengths with their min-max band.
"""

from __future__ import annotations

import pandas as pd

from predictions.dashboard import palette
from predictions.dashboard.charts import BAND_COLOR, _line, _x
from predictions.dashboard.vega import Spec, channel, chart, layer, mark, tooltip, view

TOTAL = "total"
"""The series name of the weighted total reward, beside each reward function's name."""


def reward_frame(steps: pd.DataFrame, rewards: pd.DataFrame) -> pd.DataFrame:
    """Long form (`step`, `name`, `avg`, `std`, `low`, `high`): the total, then each reward function."""
    total = steps[["step", "avg_reward", "std_reward"]].rename(
        columns={"avg_reward": "avg", "std_reward": "std"}
    )
    frame = pd.concat([total.assign(name=TOTAL), rewards[["step", "name", "avg", "std"]]], ignore_index=True)
    frame = frame.dropna(subset=["avg"])
    return frame.assign(low=frame["avg"] - frame["std"].fillna(0), high=frame["avg"] + frame["std"].fillna(0))


REWARD_PLOT, REWARD_FRAME = 240, 195
"""The reward chart's plot height, and what its height holds besides (title, axis, the legend below):
Streamlit fits the whole chart into the spec's height, which left a 65 px plot at 260 px."""


def reward_chart(frame: pd.DataFrame) -> Spec:
    """The mean reward per step of the total and of each function, each with a ±1 std band."""
    color = channel(
        "name:N", title="Reward", scale={"scheme": "tableau10"}, legend={"orient": "bottom", "labelLimit": 0}
    )
    tips = tooltip(
        ("name:N", "Reward"), ("step:Q", "Step"), ("avg:Q", "Mean", ".3f"), ("std:Q", "Std", ".3f")
    )
    band = view(
        frame,
        mark("area", opacity=0.18),
        x=_x("step"),
        color=color,
        y=channel("low:Q", title=None),
        y2={"field": "high"},
    )
    line = view(
        frame, _line(size=24), x=_x("step"), color=color, y=channel("avg:Q", title=None), tooltip=tips
    )
    return chart(layer(band, line, title="Reward per step (mean ± std)", height=REWARD_PLOT + REWARD_FRAME))


def length_chart(steps: pd.DataFrame) -> Spec:
    """The mean completion length in tokens per step, with its min-max band and the truncated share."""
    data = steps[
        ["step", "avg_completion_tokens", "min_completion_tokens", "max_completion_tokens", "truncated_count"]
    ].assign(truncated=steps["truncated_count"] / steps["rollout_count"])
    band = view(
        data,
        mark("area", color=BAND_COLOR, opacity=0.35),
        x=_x("step"),
        y=channel("min_completion_tokens:Q", title=None),
        y2={"field": "max_completion_tokens"},
    )
    tips = tooltip(
        ("step:Q", "Step"),
        ("avg_completion_tokens:Q", "Mean tokens", ".1f"),
        ("min_completion_tokens:Q", "Shortest"),
        ("max_completion_tokens:Q", "Longest"),
        ("truncated:Q", "Truncated", ".0%"),
    )
    line = view(
        data, _line(palette.LINE, 24), x=_x("step"), y=channel("avg_completion_tokens:Q"), tooltip=tips
    )
    return chart(layer(band, line, title="Completion length (tokens)", height=220))


def flat_groups_chart(steps: pd.DataFrame) -> Spec:
    """The share of groups whose completions all got the same reward: no advantage, nothing learned."""
    data = steps[["step", "zero_std_groups", "group_count"]].assign(
        share=steps["zero_std_groups"] / steps["group_count"]
    )
    tips = tooltip(
        ("step:Q", "Step"), ("share:Q", "Zero-variance groups", ".0%"), ("group_count:Q", "Groups")
    )
    share = channel("share:Q", title=None, scale={"domain": [0, 1]})
    line = view(data, _line(palette.LINE, 24), x=_x("step"), y=share, tooltip=tips)
    return chart({**line, "title": "Groups with equal rewards (share)", "height": 220})


def prompt_chart(history: pd.DataFrame) -> Spec:
    """One prompt's rollouts: every completion's total reward as a point, their mean per step as a line."""
    data = history[["step", "completion_index", "reward", "completion_tokens"]].dropna(subset=["reward"])
    tips = tooltip(
        ("step:Q", "Step"),
        ("completion_index:Q", "Completion"),
        ("reward:Q", "Reward", ".3f"),
        ("completion_tokens:Q", "Tokens"),
    )
    points = view(
        data,
        mark("circle", size=36, opacity=0.55, color=BAND_COLOR),
        x=_x("step"),
        y=channel("reward:Q", title=None),
        tooltip=tips,
    )
    mean = view(data, mark("line", color=palette.LINE), x=_x("step"), y=channel("mean(reward):Q"))
    return chart(layer(points, mean, title="This prompt's rewards", height=220))
