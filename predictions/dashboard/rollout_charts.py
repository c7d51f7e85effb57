"""Charts of an RL job's rollouts: a frame from `Store.rollout_trends` in, an Altair chart out.

Rewards are drawn with a band of one standard deviation either side of the mean (the spread GRPO's
advantages are computed from), completion lengths with their min-max band.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from predictions.dashboard import palette
from predictions.dashboard.charts import BAND_COLOR, _x

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


def reward_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """The mean reward per step of the total and of each function, each with a ±1 std band."""
    color = alt.Color(
        "name:N",
        title="Reward",
        scale=alt.Scale(scheme="tableau10"),
        legend=alt.Legend(orient="bottom", labelLimit=0),
    )
    tooltip = [
        alt.Tooltip("name:N", title="Reward"),
        alt.Tooltip("step:Q", title="Step"),
        alt.Tooltip("avg:Q", title="Mean", format=".3f"),
        alt.Tooltip("std:Q", title="Std", format=".3f"),
    ]
    base = alt.Chart(frame).encode(x=_x("step"), color=color)
    band = base.mark_area(opacity=0.18).encode(y=alt.Y("low:Q", title=None), y2="high:Q")
    line = base.mark_line(point=alt.OverlayMarkDef(size=24)).encode(
        y=alt.Y("avg:Q", title=None), tooltip=tooltip
    )
    return alt.layer(band, line).properties(
        title="Reward per step (mean ± std)", height=REWARD_PLOT + REWARD_FRAME
    )


def length_chart(steps: pd.DataFrame) -> alt.LayerChart:
    """The mean completion length in tokens per step, with its min-max band and the truncated share."""
    data = steps[
        ["step", "avg_completion_tokens", "min_completion_tokens", "max_completion_tokens", "truncated_count"]
    ].assign(truncated=steps["truncated_count"] / steps["rollout_count"])
    base = alt.Chart(data).encode(x=_x("step"))
    band = base.mark_area(color=BAND_COLOR, opacity=0.35).encode(
        y=alt.Y("min_completion_tokens:Q", title=None), y2="max_completion_tokens:Q"
    )
    tooltip = [
        alt.Tooltip("step:Q", title="Step"),
        alt.Tooltip("avg_completion_tokens:Q", title="Mean tokens", format=".1f"),
        alt.Tooltip("min_completion_tokens:Q", title="Shortest"),
        alt.Tooltip("max_completion_tokens:Q", title="Longest"),
        alt.Tooltip("truncated:Q", title="Truncated", format=".0%"),
    ]
    line = base.mark_line(color=palette.LINE, point=alt.OverlayMarkDef(size=24, color=palette.LINE))
    return alt.layer(band, line.encode(y="avg_completion_tokens:Q", tooltip=tooltip)).properties(
        title="Completion length (tokens)", height=220
    )


def flat_groups_chart(steps: pd.DataFrame) -> alt.Chart:
    """The share of groups whose completions all got the same reward: no advantage, nothing learned."""
    data = steps[["step", "zero_std_groups", "group_count"]].assign(
        share=steps["zero_std_groups"] / steps["group_count"]
    )
    tooltip = [
        alt.Tooltip("step:Q", title="Step"),
        alt.Tooltip("share:Q", title="Zero-variance groups", format=".0%"),
        alt.Tooltip("group_count:Q", title="Groups"),
    ]
    return (
        alt.Chart(data)
        .mark_line(color=palette.LINE, point=alt.OverlayMarkDef(size=24, color=palette.LINE))
        .encode(x=_x("step"), y=alt.Y("share:Q", title=None, scale=alt.Scale(domain=[0, 1])), tooltip=tooltip)
        .properties(title="Groups with equal rewards (share)", height=220)
    )


def prompt_chart(history: pd.DataFrame) -> alt.LayerChart:
    """One prompt's rollouts: every completion's total reward as a point, their mean per step as a line."""
    data = history[["step", "completion_index", "reward", "completion_tokens"]].dropna(subset=["reward"])
    tooltip = [
        alt.Tooltip("step:Q", title="Step"),
        alt.Tooltip("completion_index:Q", title="Completion"),
        alt.Tooltip("reward:Q", title="Reward", format=".3f"),
        alt.Tooltip("completion_tokens:Q", title="Tokens"),
    ]
    base = alt.Chart(data).encode(x=_x("step"))
    points = base.mark_circle(size=36, opacity=0.55, color=BAND_COLOR).encode(
        y=alt.Y("reward:Q", title=None), tooltip=tooltip
    )
    mean = base.mark_line(color=palette.LINE).encode(y="mean(reward):Q")
    return alt.layer(points, mean).properties(title="This prompt's rewards", height=220)
