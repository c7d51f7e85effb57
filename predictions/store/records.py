"""The plain data every store takes and returns: a prediction row, a job, a job's trends, a page.

Backends return these and pandas frames (predictions/store/frames.py), never cursors or client
responses, so the dashboard and the tests treat SQLite and Supabase alike.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pandas as pd

from predictions.errors import ConfigError
from predictions.scoring.metrics import REGISTRY, Metric
from predictions.scoring.names import check_metric_name, is_custom_name
from predictions.store.frames import SORTABLE_COLUMNS, custom_names, job_metrics

LOCAL_USER_ID = "00000000-0000-0000-0000-000000000000"
"""The owner written when no user is given: the embedded store has one local user."""

JOB_STATUSES = ("running", "finished", "stopped", "failed")
"""`stopped`: training ended before its planned end, by the early-stop rule (`stop_after_regressions`)
or another of the run's callbacks (`EarlyStoppingCallback` ...); the job keeps its reason."""
FINAL_STATUSES = ("finished", "stopped", "failed")
"""Statuses after which a job writes no more rounds (until a resume sets it running again)."""


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One sample's prediction in one round: a row of `training_predictions`.

    Its fields are the table's: a column per built-in metric, `scores` for the values of user scorers
    by name, `metadata` for the sample fields kept with the row (to group by), `text_replacements`
    how many values no store can hold were changed (NUL and lone surrogates to U+FFFD, NaN and
    infinities to null, too deep or too long cut; `predictions.store.storable`).
    """

    job_id: str
    epoch: int
    step: int
    sample_index: int
    prompt: str
    prediction: str
    ground_truth: str | None = None
    exact_match: float | None = None
    char_error_rate: float | None = None
    length_ratio: float | None = None
    word_overlap: float | None = None
    user_id: str | None = None
    scores: dict[str, float | None] | None = None
    metadata: dict[str, Any] | None = None
    text_replacements: int = 0
    run: str | None = None
    """The writer's process run that wrote it (`Store.delete_job`: a deleted run's writes are dropped)."""

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, values as they are (not deep-copied like `dataclasses.asdict`)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


SERIES_NAMES = ("loss", "eval_loss", "learning_rate")
"""What the Trainer logs that is kept beside the answers: training loss, eval loss, learning rate."""
MAX_SERIES_POINTS = 30000
"""The most points a `training_series` read returns (10,000 logged steps of all three)."""


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One value the Trainer logged at a step (`name`: one of `SERIES_NAMES`), a `training_series` row."""

    job_id: str
    step: int
    name: str
    value: float
    user_id: str | None = None
    run: str | None = None
    """The writer's process run that wrote it, as `PredictionRow.run`."""

    def as_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(frozen=True, slots=True)
class StopReason:
    """Why the early-stop rule stopped a job: `metric` got worse `rounds` rounds in a row, up to `step`."""

    metric: str
    rounds: int
    step: int

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "rounds": self.rounds, "step": self.step}

    @classmethod
    def from_dict(cls, data: Any) -> StopReason | None:
        """The reason a store kept (JSON), or None when there is none or it is not one."""
        try:
            return cls(str(data["metric"]), int(data["rounds"]), int(data["step"]))
        except (TypeError, KeyError, ValueError):
            return None

    def describe(self, title: str | None = None) -> str:
        """'Stopped at step 12: the average CER got worse 2 rounds in a row.'"""
        rounds = f"{self.rounds} round{'s' if self.rounds != 1 else ''} in a row"
        return f"Stopped at step {self.step}: the average {title or self.metric} got worse {rounds}."


@dataclass(frozen=True, slots=True)
class TrainerStop:
    """Why training ended before its planned last step when something other than the early-stop rule
    stopped it: at `step` of `max_steps` (optimizer steps), by the callbacks named in `by`.

    When transformers' `EarlyStoppingCallback` stopped it, `by` names it and the rest says why:
    `metric` (`metric_for_best_model` as the Trainer checks it, `eval_`-prefixed) in its direction did
    not improve for `rounds` evaluations in a row, with `patience` allowed, and the Trainer's best value,
    its step and checkpoint. When a hyperparameter search pruned the trial, `search` names the search
    ("optuna"), `by` its pruner, `trial` the trial's number and `objective` the value it reported at
    `step`. When the user interrupted it (Ctrl-C, a notebook's Interrupt: SIGINT), `interrupted` and
    `by` name what stopped it ("KeyboardInterrupt"); `max_steps` is 0 where no Trainer planned the
    run (a hand-written loop). Otherwise `by` lists the run's own callbacks (any of them may have set
    `should_training_stop`; the Trainer does not say which). Stored with the keys `StopReason` has
    (`metric`, `rounds`, `step`), so an earlier version's dashboard reads an EarlyStoppingCallback stop
    too (and any other as "stopped by the early-stop rule"), and with `by`, which tells the two apart.
    """

    step: int
    max_steps: int
    by: tuple[str, ...] = ()
    metric: str | None = None
    greater_is_better: bool | None = None
    rounds: int | None = None
    patience: int | None = None
    best_value: float | None = None
    best_step: int | None = None
    best_checkpoint: str | None = None
    search: str | None = None
    trial: int | None = None
    objective: float | None = None
    interrupted: str | None = None

    def as_dict(self) -> dict[str, Any]:
        kept = {field.name: getattr(self, field.name) for field in fields(self)}
        return {**{k: v for k, v in kept.items() if v is not None}, "by": list(self.by)}

    @classmethod
    def from_dict(cls, data: Any) -> TrainerStop | None:
        """The stop a store kept (JSON), or None when it is not one; a field of the wrong type is left
        out rather than losing the rest."""
        try:
            step, max_steps, by = int(data["step"]), int(data["max_steps"]), data["by"]
        except (TypeError, KeyError, ValueError):
            return None
        typed = {
            "metric": str, "greater_is_better": bool, "rounds": int, "patience": int,
            "best_value": float, "best_step": int, "best_checkpoint": str,
            "search": str, "trial": int, "objective": float, "interrupted": str,
        }  # fmt: skip
        known = {name: kind(data[name]) for name, kind in typed.items() if _is(data.get(name), kind)}
        names = tuple(str(name) for name in by) if isinstance(by, list) else ()
        return cls(step, max_steps, names, **known)

    def describe(self) -> str:
        """'Stopped at step 8 of 24 by EarlyStoppingCallback: eval_loss (lower is better) did not
        improve for 1 evaluation in a row (patience 1). The best eval_loss was 0.5123 at step 4
        (checkpoint-4).'"""
        at = f"Stopped at step {self.step}" + (f" of {self.max_steps}" if self.max_steps > 0 else "")
        if self.search is not None:
            return self._describe_prune()
        if self.interrupted is not None:
            return f"{at}: interrupted by the user ({self.interrupted})."
        if self.metric is None:
            names = f" ({', '.join(self.by)})" if self.by else ""
            return f"{at} by the run's own callbacks{names}, before its planned end."
        direction = "higher" if self.greater_is_better else "lower"
        count = self.rounds if self.rounds is not None else self.patience
        times = "" if count is None else f" for {count} evaluation{'s' if count != 1 else ''} in a row"
        patience = "" if self.patience is None else f" (patience {self.patience})"
        text = f"{at} by {', '.join(self.by) or 'a callback'}: {self.metric} ({direction} is better) did not "
        text += f"improve{times}{patience}."
        if self.best_value is not None:
            where = "" if self.best_step is None else f" at step {self.best_step}"
            kept = f" ({self.best_checkpoint})" if self.best_checkpoint else ""
            text += f" The best {self.metric} was {self.best_value:.4g}{where}{kept}."
        return text

    def _describe_prune(self) -> str:
        """'Pruned by the optuna search (MedianPruner) at step 4 of 8: trial 1 reported an objective
        of 2.778 there.'"""
        pruner = f" ({', '.join(self.by)})" if self.by else ""
        text = f"Pruned by the {self.search} search{pruner} at step {self.step} of {self.max_steps}"
        trial = "the trial" if self.trial is None else f"trial {self.trial}"
        if self.objective is not None:
            return f"{text}: {trial} reported an objective of {self.objective:.4g} there."
        return f"{text}."


def _is(value: Any, kind: type) -> bool:
    """Whether a stored JSON value is of `kind` (an int is a float too: Postgres' jsonb writes 2.5e+170 as
    its digits; a bool is no int)."""
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def stop_reason_from_dict(data: Any) -> StopReason | TrainerStop | None:
    """The reason a stopped job keeps, as its store holds it (JSON): another callback's stop when it
    names who (`by`), else the early-stop rule's; None when there is none or it is neither."""
    if isinstance(data, dict) and "by" in data:
        return TrainerStop.from_dict(data)
    return StopReason.from_dict(data)


@dataclass(frozen=True, slots=True)
class RolloutRow:
    """One completion an RL trainer generated and rewarded: a row of `training_rollouts`.

    `generation` numbers the trainer's generation batches, `group_index` the prompt's group within one
    and `completion_index` the completion within its group: with the owner and job, the natural key.
    `rewards` holds each reward function's value by name, `reward` the weighted total the trainer
    used; the metric columns and `scores` are filled only when the dataset had a ground truth.
    """

    job_id: str
    step: int
    generation: int
    group_index: int
    completion_index: int
    prompt_id: str
    prompt: str
    completion: str
    rewards: dict[str, float | None]
    reward: float | None
    completion_tokens: int
    truncated: bool
    ground_truth: str | None = None
    exact_match: float | None = None
    char_error_rate: float | None = None
    length_ratio: float | None = None
    word_overlap: float | None = None
    scores: dict[str, float | None] | None = None
    user_id: str | None = None
    text_replacements: int = 0
    run: str | None = None
    """The writer's process run that wrote it, as `PredictionRow.run`."""

    def as_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(frozen=True)
class RolloutTrends:
    """A job's rollouts summarised per step (`ROLLOUT_STEP_COLUMNS`), and per step and reward
    function (`REWARD_TREND_COLUMNS`, long form), both ordered by step; read from the SQL summary."""

    job_id: str
    steps: pd.DataFrame
    rewards: pd.DataFrame


@dataclass(frozen=True, slots=True)
class Job:
    """A training run as the job picker shows it; jobs known only from prediction rows have no name.

    No config: the list is read on every change of any job (10,000 configs with their rendered model
    inputs were 12.8 MB a read); a job's config comes with its `Trends`.
    """

    id: str
    status: str = "unknown"
    name: str | None = None
    model: str | None = None
    user_id: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    latest_epoch: int | None = None
    latest_step: int | None = None
    round_count: int = 0
    last_active: str | None = None
    """When the job last wrote a round or changed status (ISO-8601): how long a running job is silent."""
    stop_reason: StopReason | TrainerStop | None = None
    """Why it stopped early (status `stopped` only): the early-stop rule's reason, or another callback's."""
    rows_missing: int = 0
    """Rows its runs could keep nowhere: not stored, and the local outbox could not be written
    (`Store.record_missing`). The dashboard says so, since its charts lack them."""
    tags: tuple[str, ...] = ()
    """Short labels its owner gave it (`predictions.store.job_details`), to find it by."""
    note: str | None = None
    """Its owner's words about it: why it was run, what changed."""

    @property
    def label(self) -> str:
        """What the picker shows: the name (or id), a marker while it runs, and its tags in brackets."""
        title = self.name or self.id
        tags = "".join(f" [{tag}]" for tag in self.tags)
        return f"● {title}{tags}" if self.status == "running" else f"{title}{tags}"


@dataclass(frozen=True)
class Trends:
    """Per-round aggregates, ordered by step, the overall CER improvement in %, and the job's metrics.

    `rounds` has `TREND_COLUMNS` and, per user scorer, `avg_<name>`, `min_<name>` and `max_<name>`.
    `metrics` lists every metric of the job (built-in first) and `group_fields` the sample fields
    its rows keep to group by, both from the store: the dashboard has no list of its own. `config` is
    what the job recorded when it started (options, training arguments, model inputs); empty if none.
    """

    job_id: str
    rounds: pd.DataFrame
    overall_improvement: float | None
    metrics: tuple[Metric, ...] = tuple(REGISTRY.values())
    group_fields: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)


MetricRange = tuple[str, float | None, float | None]
"""(metric, low, high): rows whose metric lies within, inclusive; None leaves a side open."""


@dataclass(frozen=True)
class PageQuery:
    """Which rows of a job one page shows, and in what order: checked when made, frozen, hashable.

    `step` keeps one round; `wrong_only` the rows whose answer is not an exact match (rows without a
    ground truth are never wrong); `metric_range` a metric's range. `sort_by` is a column of
    `SORTABLE_COLUMNS` or a user scorer's name (nulls last, then step and sample). The dashboard's
    cache keys on the query itself.
    """

    step: int | None = None
    wrong_only: bool = False
    sort_by: str = "sample_index"
    descending: bool = False
    limit: int = 50
    offset: int = 0
    metric_range: MetricRange | None = None

    def __post_init__(self) -> None:
        if self.sort_by not in SORTABLE_COLUMNS and not is_custom_name(self.sort_by):
            raise ConfigError(
                f"sort_by={self.sort_by!r} is not sortable; valid: {', '.join(SORTABLE_COLUMNS)} "
                "or a user scorer's name"
            )
        if not _is_int(self.limit) or not 1 <= self.limit <= 1000:
            raise ConfigError(f"limit={self.limit!r} is out of range; valid: 1 to 1000 rows a page")
        if not _is_int(self.offset) or self.offset < 0:
            raise ConfigError(f"offset={self.offset!r} is negative; valid: 0 or more")
        if self.step is not None and not _is_int(self.step):
            raise ConfigError(f"step={self.step!r} is not a step; valid: a round's step (an int) or None")
        # plain values, so equal queries hash alike (numpy ints from a frame, a list for a range)
        object.__setattr__(self, "step", None if self.step is None else int(self.step))
        object.__setattr__(self, "limit", int(self.limit))
        object.__setattr__(self, "offset", int(self.offset))
        object.__setattr__(self, "wrong_only", bool(self.wrong_only))
        object.__setattr__(self, "descending", bool(self.descending))
        if self.metric_range is not None:
            metric, low, high = self.metric_range
            check_metric_name(metric, "metric_range")
            object.__setattr__(self, "metric_range", (metric, _bound(low), _bound(high)))

    def page(self, number: int) -> PageQuery:
        """The same query at its `number`-th page (1-based)."""
        return replace(self, offset=(max(1, number) - 1) * self.limit)


def _is_int(value: Any) -> bool:
    """An integer, numpy's included, but not a bool (True is no page size)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def _bound(value: float | None) -> float | None:
    """A metric range's side as a float; None stays open."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"metric_range bound {value!r} is not a number; valid: a number or None") from error


DEFAULT_PAGE = PageQuery()
"""The first 50 rows of a job by sample index: what `predictions_page(job_id)` returns."""


@dataclass(frozen=True)
class PredictionPage:
    """One page of predictions (`PREDICTION_COLUMNS`) and how many rows match the filter in all."""

    rows: pd.DataFrame
    total_count: int
    offset: int = 0
    limit: int = 50


def overall_improvement(avg_cers: Sequence[float | None]) -> float | None:
    """(first scored round's CER - last one's) / first * 100; None with < 2 scored rounds or first 0."""
    scored = [value for value in avg_cers if value is not None and not math.isnan(value)]
    if len(scored) < 2 or scored[0] == 0:
        return None
    return (scored[0] - scored[-1]) / scored[0] * 100.0


def make_trends(
    job_id: str, rounds: pd.DataFrame, improvement: float | None, config: dict[str, Any] | None
) -> Trends:
    """Trends with the job's metric list and group fields, described by the job's recorded config."""
    config = config if isinstance(config, dict) else {}
    group_fields = config.get("metadata_fields") or ()
    metrics = job_metrics(custom_names(rounds), config.get("scorers"))
    return Trends(job_id, rounds, improvement, metrics, tuple(str(f) for f in group_fields), config)
