"""What a round gives back: each metric's average, and the early-stop rule that watches one of them.

The averages are the same numbers the dashboard shows for the round (the mean over the scored
samples, None values left out), so the Trainer's logs, `PredictionsMonitor.round()` and the store
agree. The rule counts consecutive rounds in which the watched metric got worse, in that metric's
own direction (a falling exact match is worse, a rising CER is worse).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from predictions.scoring.metrics import METRICS
from predictions.store.records import PredictionRow, StopReason


@dataclass(frozen=True)
class RoundResult:
    """One round's outcome: `averages` by metric name (built-in and user scorers; a metric without a
    scored value is left out) and `stop`, the reason when the early-stop rule says to stop."""

    step: int
    averages: dict[str, float] = field(default_factory=dict)
    stop: StopReason | None = None

    @property
    def should_stop(self) -> bool:
        return self.stop is not None

    def __bool__(self) -> bool:
        """`if monitor.round(...): break` keeps meaning 'stop' (round() returned a bool before)."""
        return self.should_stop


def round_averages(rows: Sequence[PredictionRow], metrics: Sequence[str]) -> dict[str, float]:
    """Each metric's mean over the rows that have a value: a built-in column or a user score by name."""
    averages = {}
    for name in metrics:
        values = [_value(row, name) for row in rows]
        scored = [value for value in values if value is not None]
        if scored:
            averages[name] = sum(scored) / len(scored)
    return averages


def _value(row: PredictionRow, name: str) -> float | None:
    if name in METRICS:
        return getattr(row, name)
    return (row.scores or {}).get(name)


@dataclass
class RegressionWatch:
    """Counts consecutive rounds whose average of `metric` got worse; `observe` says when to stop."""

    limit: int | None
    metric: str
    lower_is_better: bool
    last: float | None = None
    worse_rounds: int = 0

    def observe(self, value: float | None, step: int) -> StopReason | None:
        """The reason to stop once `limit` rounds in a row got worse; a round without a value is skipped."""
        if value is None:
            return None
        worse = self.last is not None and (value > self.last if self.lower_is_better else value < self.last)
        self.worse_rounds = self.worse_rounds + 1 if worse else 0
        self.last = value
        if self.limit is not None and self.worse_rounds >= self.limit:
            return StopReason(metric=self.metric, rounds=self.worse_rounds, step=step)
        return None
