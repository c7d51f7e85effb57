"""What the Rollouts page concludes from a job's per-step rollout aggregates: the alarms, and a prompt's
groups laid out side by side. Pure pandas and escaped HTML; no Streamlit, no store.

Reward hacking shows as a total reward that keeps rising while the answers get worse by a measure the
reward does not see (a ground-truth metric), or while the completions grow until they are cut off.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from predictions.dashboard.diff import _number, diff_html, plain_html

LENGTH_GROWTH = 1.5
"""A mean completion length this many times the early one's counts as running away."""
TRUNCATED_SHARE = 0.5
"""...as does a latest window in which at least this share of completions was cut at the length limit."""
MIN_STEPS = 4
"""Fewer steps than this say nothing about a trend."""


@dataclass(frozen=True)
class Alarm:
    """One warning: what is happening, in words, with the numbers."""

    kind: str
    message: str


def windows(steps: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first and the last third of the steps (at least two steps each)."""
    size = max(2, len(steps) // 3)
    return steps.head(size), steps.tail(size)


def alarms(steps: pd.DataFrame) -> list[Alarm]:
    """Reward up while a ground-truth metric goes the wrong way; completion length running away."""
    if len(steps) < MIN_STEPS:
        return []
    early, late = windows(steps)
    found = []
    reward_rise = late["avg_reward"].mean() - early["avg_reward"].mean()
    for column, title, worse in (
        ("avg_exact_match", "exact match", -1),
        ("avg_word_overlap", "word overlap", -1),
        ("avg_char_error_rate", "CER", 1),
    ):
        before, after = early[column].mean(), late[column].mean()
        if reward_rise > 0 and pd.notna(before) and pd.notna(after) and (after - before) * worse > 0:
            found.append(
                Alarm(
                    "reward_vs_truth",
                    f"Reward rose by {reward_rise:.3f} while {title} against the ground truth went from "
                    f"{before:.3f} to {after:.3f}: the reward may be gamed.",
                )
            )
            break
    found += length_alarms(early, late)
    return found


def length_alarms(early: pd.DataFrame, late: pd.DataFrame) -> list[Alarm]:
    before, after = early["avg_completion_tokens"].mean(), late["avg_completion_tokens"].mean()
    truncated = late["truncated_count"].sum() / max(1, late["rollout_count"].sum())
    if before > 0 and after >= LENGTH_GROWTH * before:
        return [
            Alarm(
                "length",
                f"Completions grew from {before:.1f} to {after:.1f} tokens on average "
                f"({truncated:.0%} cut at the length limit lately).",
            )
        ]
    if truncated >= TRUNCATED_SHARE:
        return [Alarm("length", f"{truncated:.0%} of the latest completions were cut at the length limit.")]
    return []


def groups_html(history: pd.DataFrame) -> str:
    """One table row per group of a prompt (by step): each completion side by side with its reward,
    diffed against the ground truth when there is one. Every text is escaped by `diff_html`."""
    rows = []
    for (step, generation, group), frame in history.groupby(["step", "generation", "group_index"], sort=True):
        cells = []
        for row in frame.sort_values("completion_index").itertuples(index=False):
            truth = row.ground_truth
            text = diff_html(truth, row.completion) if isinstance(truth, str) else plain_html(row.completion)
            cut = " · cut" if row.truncated else ""
            head = (
                f"#{row.completion_index} · reward {_number(row.reward)} · {row.completion_tokens} tok{cut}"
            )
            cells.append(f'<td><div class="pm-head">{html.escape(head)}</div>{text}</td>')
        label = f"step {int(step)}<br>gen {int(generation)} · group {int(group)}"
        rows.append(f'<tr><td class="num">{label}</td>{"".join(cells)}</tr>')
    return f'<div class="pm-history"><table><tbody>{"".join(rows)}</tbody></table></div>'


GROUPS_CSS = "<style>.pm-head{color:#666;font-size:.78rem;margin-bottom:.2rem}</style>"
