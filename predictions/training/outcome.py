"""What a round gives back: each metric's average, and the early-stop rule that watches one of them.

The averages are the same numbers the dashboard shows for the round (the mean over the scored
samples, None values left out), so the Trainer's logs, `PredictionsMonitor.round()` and the store
agree. The rule counts consecutive rounds in which the watched metric got worse, in that metric's
own direction (a falling exact match is worse, a rising CER is worse).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from predictions.scoring.metrics import METRICS
from predictions.store.records import PredictionRow, StopReason


class PendingAverages(Protocol):
    """A round's averages while it is being scored (`round_scorer.Pending`)."""

    def ready(self) -> bool: ...

    def wait(self) -> Mapping[str, float] | None: ...


class RoundResult:
    """One round's outcome: `averages` by metric name (built-in and user scorers; a metric without a
    scored value is left out) and `stop`, the reason when the early-stop rule says to stop.

    A round is scored off the training thread, so `averages` may still be on their way: `scored` says
    whether they are known, and reading `averages` waits for them (`wait` returns them). With the
    early-stop rule on, the round waited for its own scores, so `stop` is always the final verdict.
    """

    __slots__ = ("_averages", "_pending", "step", "stop")

    def __init__(
        self,
        step: int,
        averages: Mapping[str, float] | None = None,
        stop: StopReason | None = None,
        pending: PendingAverages | None = None,
    ):
        self.step, self.stop = step, stop
        self._averages = dict(averages or {}) if pending is None else None
        self._pending = pending

    @property
    def scored(self) -> bool:
        """Whether `averages` are known without waiting."""
        if self._averages is None and self._pending.ready():
            self._averages = dict(self._pending.wait() or {})
        return self._averages is not None

    @property
    def averages(self) -> dict[str, float]:
        if self._averages is None:
            self._averages = dict(self._pending.wait() or {})
        return self._averages

    @property
    def should_stop(self) -> bool:
        return self.stop is not None

    def __bool__(self) -> bool:
        """`if monitor.round(...): break` keeps meaning 'stop' (round() returned a bool before)."""
        return self.should_stop

    def __reduce__(self) -> tuple[Any, ...]:
        """Sent to the other ranks as what is known now (averages still being scored stay on rank 0)."""
        return RoundResult, (self.step, self.averages if self.scored else {}, self.stop)

    def __repr__(self) -> str:
        averages = self._averages if self._averages is not None else "pending"
        return f"RoundResult(step={self.step}, averages={averages}, stop={self.stop})"


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
