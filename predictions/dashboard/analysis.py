"""Pure pandas helpers: the numbers behind the dashboard's headlines, warnings and sample lists.

They take the frames a store returns (`TREND_COLUMNS` rounds, `MATRIX_COLUMNS` long form) and work on
whole columns, so a job of 100 rounds x 100 samples costs milliseconds, never a Python loop per row.
No Streamlit here: every function is tested on plain data frames.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pandas as pd

from predictions.scoring.metrics import PRIMARY_METRIC, REGISTRY, Metric
from predictions.store.frames import SAMPLE_SUMMARY_COLUMNS
from predictions.store.records import Job, StopReason, Trends

CER = "avg_char_error_rate"

REGRESSION_MIN_WORSE = 0.02
"""The latest round must be at least this many points (of CER, or the watched metric) worse than the best
one to warn..."""
REGRESSION_RELATIVE = 0.25
"""...and at least this fraction of the best value worse, so noise around a good CER does not alarm."""
VELOCITY_WINDOW = 5
"""Learning velocity is the slope over this many of the latest scored rounds."""
STILL_FAILING_CER = 0.3
"""A sample never right whose latest CER is at least this is 'still failing'."""
HEATMAP_MAX_ROUNDS = 50
"""More rounds than this are thinned to every k-th round (the latest always kept) in the heatmap."""
HEATMAP_PAGE_SAMPLES = 50
"""Samples per heatmap page: about 14 px a row at the chart's full height, readable and clickable."""
SILENCE_FACTOR = 3
"""A running job is 'silent' once it has written nothing for this many times its usual round gap..."""
SILENCE_MIN = timedelta(minutes=10)
"""...and for at least this long, so a fast run's short pause does not alarm."""


def scored(rounds: pd.DataFrame) -> pd.DataFrame:
    """The rounds with at least one scored row: only those have metrics to chart or compare."""
    return rounds[rounds[CER].notna()]


def latest_and_delta(rounds: pd.DataFrame, column: str) -> tuple[float | None, float | None]:
    """The latest scored value of a column and its change since the previous scored round."""
    values = rounds[column].dropna()
    if values.empty:
        return None, None
    latest = float(values.iloc[-1])
    delta = latest - float(values.iloc[-2]) if len(values) > 1 else None
    return latest, delta


def number_text(value: float, *, signed: bool = False) -> str:
    """A metric's value for a card: three decimals, or three significant digits past a million (a user
    scorer may give 1e308: its 309 digits would fill the card)."""
    sign = "+" if signed else ""
    return f"{value:{sign}.3f}" if abs(value) < 1e6 else f"{value:{sign}.3g}"


def sparkline(values: pd.Series, points: int = 30) -> list[float]:
    """The last `points` values, rounded to 4 decimals as Python rounds (pandas' round overflows to
    infinity past 1e304)."""
    return [round(float(value), 4) for value in values.dropna().tail(points)]


def last_round_per_epoch(rounds: pd.DataFrame) -> pd.DataFrame:
    """With x by epoch, one point per epoch: its last round, the state the epoch ended in."""
    return rounds.groupby("epoch", sort=False).tail(1)


def watched_metric(trends: Trends, job: Job | None = None) -> Metric:
    """The metric the job's early-stop rule watches: the reason's metric of a job the rule stopped, else its
    recorded `stop_metric`, else CER. The early warning, the best round and the loss warning judge the
    answers by it, so they agree with the rule that stops the run (a job whose rounds lack that metric's
    values falls back to CER)."""
    by_name = {metric.name: metric for metric in trends.metrics}
    reason = job.stop_reason if job is not None else None
    reason = reason if isinstance(reason, StopReason) else None  # another callback's metric is no round's
    config = trends.config if isinstance(trends.config, dict) else {}
    for name in (reason.metric if reason else None, config.get("stop_metric")):
        metric = by_name.get(name) if isinstance(name, str) else None
        if (
            metric is not None
            and metric.column in trends.rounds
            and trends.rounds[metric.column].notna().any()
        ):
            return metric
    return REGISTRY[PRIMARY_METRIC]


@dataclass(frozen=True)
class Regression:
    """The latest round is clearly worse than the best one in `metric`: the early warning to stop a run."""

    metric: Metric
    latest_value: float
    latest_epoch: int
    latest_step: int
    best_value: float
    best_epoch: int
    best_step: int

    @property
    def worse_by(self) -> float:
        return abs(self.latest_value - self.best_value)


def best_round(rounds: pd.DataFrame, metric: Metric) -> pd.Series | None:
    """The earliest round with the best average of `metric`, in its own direction; None when unscored."""
    if metric.column not in rounds:
        return None
    values = rounds[metric.column].dropna().astype(float)
    if values.empty:
        return None
    return rounds.loc[values.idxmin() if metric.lower_is_better else values.idxmax()]


def regression_warning(rounds: pd.DataFrame, metric: Metric | None = None) -> Regression | None:
    """A `Regression` when the latest round's `metric` (CER by default) is clearly worse than the best
    round's, else None.

    'Clearly' means worse by at least `REGRESSION_MIN_WORSE` points and `REGRESSION_RELATIVE` of the
    best value, so a run wobbling around a CER of 0.01 does not cry wolf while one drifting from 0.20 to
    0.30 does.
    """
    metric = metric or REGISTRY[PRIMARY_METRIC]
    best = best_round(rounds, metric)
    if best is None:
        return None
    rows = rounds[rounds[metric.column].notna()]
    latest = rows.iloc[-1]
    best_value, latest_value = float(best[metric.column]), float(latest[metric.column])
    worse_by = latest_value - best_value if metric.lower_is_better else best_value - latest_value
    if len(rows) < 2 or worse_by < max(REGRESSION_MIN_WORSE, REGRESSION_RELATIVE * abs(best_value)):
        return None
    return Regression(
        metric,
        latest_value,
        int(latest["epoch"]),
        int(latest["step"]),
        best_value,
        int(best["epoch"]),
        int(best["step"]),
    )


@dataclass(frozen=True)
class Velocity:
    """How fast the average CER moves over the latest rounds, per 100 steps: one unit for the whole run
    (a unit switching from per-100-steps to per-epoch when the second epoch ended read as a jump)."""

    change: float
    unit: str
    rounds: int


def learning_velocity(rounds: pd.DataFrame, window: int = VELOCITY_WINDOW) -> Velocity | None:
    """The least-squares slope of the average CER over the last `window` scored rounds.

    Fitted against the step (always distinct), so rounds taken every N steps count as well as rounds
    taken once an epoch. None with < 2 rounds.
    """
    rows = scored(rounds).tail(window)
    if len(rows) < 2:
        return None
    slope = float(np.polyfit(rows["step"].to_numpy(float), rows[CER].to_numpy(float), 1)[0])
    return Velocity(slope * 100, "100 steps", len(rows))


def matrix_summary(matrix: pd.DataFrame) -> pd.DataFrame:
    """What `Store.sample_summary` aggregates (`SAMPLE_SUMMARY_COLUMNS`), computed from a long matrix
    (`MATRIX_COLUMNS`) in pandas: one row per sample, by index. The reference a store's summary must
    equal; the dashboard reads the store's."""
    rows = matrix.dropna(subset=["value"]).sort_values(["sample_index", "step"])
    values = rows.groupby("sample_index", sort=True)["value"]
    summary = pd.DataFrame({"first_value": values.first(), "latest_value": values.last()})
    summary["latest_step"] = rows.groupby("sample_index")["step"].max().astype(float)
    summary["min_value"] = values.min()
    earlier = rows[rows["step"] < rows["sample_index"].map(summary["latest_step"])]
    summary["min_earlier"] = earlier.groupby("sample_index")["value"].min()
    summary["last_zero_step"] = rows[rows["value"] == 0].groupby("sample_index")["step"].max().astype(float)
    every = pd.Index(sorted(matrix["sample_index"].unique().tolist()), name="sample_index")
    return summary.reindex(every).reset_index()[list(SAMPLE_SUMMARY_COLUMNS)]


def sample_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per scored sample: CER first, best, best before the latest round, latest; improvement;
    the last step it was right.

    `summary` is `Store.sample_summary` for CER (or `matrix_summary` of a CER matrix). 'Right' is a CER
    of 0, the same as an exact match after stripping (the edit distance is 0 only when the texts are equal).
    """
    scored = summary[summary["latest_value"].notna()]
    lists = pd.DataFrame(
        {
            "sample_index": scored["sample_index"].astype(int),
            "first_cer": scored["first_value"],
            "best_cer": scored["min_value"],
            "latest_cer": scored["latest_value"],
            "latest_step": scored["latest_step"],
            "best_earlier_cer": scored["min_earlier"],
            "last_right_step": scored["last_zero_step"],
        }
    )
    lists["improvement"] = lists["first_cer"] - lists["latest_cer"]
    return lists.reset_index(drop=True)


def most_improved(summary: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The samples whose CER fell the most from their first round to their latest."""
    return summary[summary["improvement"] > 0].nlargest(n, "improvement")


def still_failing(summary: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Samples never right in any round whose latest CER is still high: what training does not fix."""
    failing = summary[(summary["best_cer"] > 0) & (summary["latest_cer"] >= STILL_FAILING_CER)]
    return failing.nlargest(n, "latest_cer")


def regressed(summary: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Samples right in an earlier round and wrong in their latest: what training broke."""
    broke = summary[summary["last_right_step"].notna() & (summary["latest_cer"] > 0)]
    return broke.nlargest(n, "latest_cer")


def drawn_steps(steps: Sequence[int], max_rounds: int = HEATMAP_MAX_ROUNDS) -> tuple[list[int], int]:
    """The rounds the heatmap draws of a job's `steps`: at most `max_rounds`, every k-th counted back from
    the latest (real values, not averages), so the chart stays a few thousand cells however long the
    run; and k, the stride."""
    ordered = sorted(set(int(step) for step in steps))
    stride = max(1, math.ceil(len(ordered) / max_rounds))
    return sorted(ordered[::-1][::stride]), stride


def heatmap_frame(matrix: pd.DataFrame, steps: Sequence[int]) -> pd.DataFrame:
    """The matrix's cells with a 1-based `round` column: each cell's step's place among all the job's
    `steps` (the matrix may hold only the rounds drawn)."""
    frame = matrix.copy()
    frame["round"] = np.searchsorted(np.sort(np.unique(np.asarray(steps))), frame["step"].to_numpy()) + 1
    return frame


def samples_worst_first(summary: pd.DataFrame, lower_is_better: bool = True) -> list[int]:
    """Sample indices by their latest value (`Store.sample_summary` of the metric), worst first
    (unscored last), ties by index: the order a page of the heatmap at 1,000 samples shows them in."""
    ordered = summary.sort_values("sample_index")
    scored = ordered[ordered["latest_value"].notna()]
    worst = scored.sort_values("latest_value", ascending=not lower_is_better, kind="stable")
    return [
        int(i) for i in (*worst["sample_index"], *ordered[ordered["latest_value"].isna()]["sample_index"])
    ]


def page_of(items: list[int], page: int, size: int) -> list[int]:
    """The `page`-th (0-based) slice of `size` items; the last page when `page` is past the end."""
    pages = max(1, math.ceil(len(items) / size))
    start = min(max(page, 0), pages - 1) * size
    return items[start : start + size]


def selected_sample(event: object, field: str = "sample_index") -> int | None:
    """The sample index a chart click selected, from `st.vega_lite_chart(..., on_select=...)`'s state."""
    selection = (event or {}).get("selection", {}) if isinstance(event, dict) else {}
    for points in selection.values():
        for point in points or []:
            if isinstance(point, dict) and point.get(field) is not None:
                return int(point[field])
    return None


@dataclass(frozen=True)
class Silence:
    """A job marked running that has written nothing for much longer than its rounds usually take."""

    since: timedelta
    usual_gap: timedelta


def quiet_for(job: Job, now: datetime) -> timedelta | None:
    """How long a running job has written nothing; None for a job that is not running."""
    if job.status != "running" or not job.last_active:
        return None
    return now - datetime.fromisoformat(job.last_active)


def silence(job: Job, round_times: Sequence[str], now: datetime) -> Silence | None:
    """The silence of a running job, judged by its own pace: the median gap from its start to each round.

    Training that raises in a process that goes on (a script catching the error) or that is killed
    outright (SIGKILL, out of memory) never reaches train end, so its job stays 'running'; this is how
    the dashboard can tell. (In a notebook the cell's end marks it failed: `training/notebook.py`.) A
    job without a gap to learn its pace from is never called silent.
    """
    since = quiet_for(job, now)
    if since is None or since <= SILENCE_MIN:
        return None
    times = sorted(datetime.fromisoformat(t) for t in (job.started_at, *round_times) if t)
    gaps = [later - earlier for earlier, later in pairwise(times)]
    if not gaps:
        return None
    usual_gap = statistics.median(gaps)
    return Silence(since, usual_gap) if since > max(SILENCE_MIN, SILENCE_FACTOR * usual_gap) else None


def human_duration(duration: timedelta) -> str:
    """'2 h 5 min', '12 min', '40 s': a duration as a person says it."""
    seconds = int(duration.total_seconds())
    hours, minutes = seconds // 3600, seconds % 3600 // 60
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{seconds} s"


def human_time(stamp: str | None, now: datetime) -> str:
    """'5 min ago', '3 h ago', or the UTC date and minute for anything older than a day; blank for None.

    The server does not know the reader's time zone, so older times say UTC rather than pass for local.
    """
    if not stamp:
        return ""
    when = datetime.fromisoformat(stamp)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    age = now - when
    if timedelta(0) <= age < timedelta(days=1):
        return "just now" if age < timedelta(minutes=1) else f"{human_duration(age)} ago"
    return when.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")


OVERFIT_ROUNDS = 3
"""The loss must fall, and the metric get worse, over this many rounds in a row to warn."""


@dataclass(frozen=True)
class LossDivergence:
    """Training loss falling round after round while the answers' metric gets worse: overfitting."""

    first_step: int
    last_step: int
    loss_from: float
    loss_to: float
    metric_from: float
    metric_to: float


def loss_at_rounds(rounds: pd.DataFrame, series: pd.DataFrame) -> pd.Series:
    """The training loss as of each round: the last `loss` logged at or before the round's step."""
    loss = series[series["name"] == "loss"].sort_values("step")
    if loss.empty or rounds.empty:
        return pd.Series([np.nan] * len(rounds), index=rounds.index, dtype=float)
    found = np.searchsorted(loss["step"].to_numpy(), rounds["step"].to_numpy(), side="right") - 1
    values = loss["value"].to_numpy(float)
    return pd.Series(np.where(found >= 0, values[np.maximum(found, 0)], np.nan), index=rounds.index)


def loss_divergence(
    rounds: pd.DataFrame, series: pd.DataFrame, column: str = CER, lower_is_better: bool = True
) -> LossDivergence | None:
    """A `LossDivergence` when, over the last `OVERFIT_ROUNDS` scored rounds, the training loss fell at
    every round while `column` (an `avg_` metric) got worse at every round; else None."""
    rows = rounds[rounds[column].notna()].assign(loss=lambda r: loss_at_rounds(r, series))
    rows = rows.tail(OVERFIT_ROUNDS)
    if len(rows) < OVERFIT_ROUNDS or rows["loss"].isna().any():
        return None
    loss_steps, metric_steps = np.diff(rows["loss"].to_numpy()), np.diff(rows[column].to_numpy(float))
    worse = metric_steps > 0 if lower_is_better else metric_steps < 0
    if not ((loss_steps < 0).all() and worse.all()):
        return None
    first, last = rows.iloc[0], rows.iloc[-1]
    return LossDivergence(
        int(first["step"]), int(last["step"]), float(first["loss"]), float(last["loss"]),
        float(first[column]), float(last[column]),
    )  # fmt: skip
