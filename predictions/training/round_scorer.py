"""Rounds scored off the training thread: the training loop hands a round's answers over and goes on.

One daemon thread per job, shared by all its rounds, scores each round in turn (the built-in metrics,
then the user's scorers) and hands its rows to the writer once scored. Whoever needs a round's scores
waits for them: the early-stop rule, a caller reading `RoundResult.averages`, train end. A user scorer
still running on one round after `SCORER_LIMIT_S` is given up on (by whoever waits, or the next round
handed over): its values are None from that round on, it is not called again in this job, and a new
thread scores the rounds after it, so a hanging scorer costs training nothing and train end at most
that limit. When the process is stopped, the rounds still being scored go to the writer unscored at
once (then into the outbox with everything else), and their scored rows follow them if they are
ready in time: the later call replaces the earlier one, row by row.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from predictions.config import PredictionsConfig
from predictions.delivery.worker import Flag
from predictions.delivery.writer import Writer
from predictions.scoring.metrics import METRICS, UNSCORED, Scores, score_batch
from predictions.scoring.sample import Sample
from predictions.scoring.user_scorers import Scorer, run_scorers
from predictions.store.records import PredictionRow
from predictions.training.outcome import round_averages

logger = logging.getLogger(__name__)

SCORER_LIMIT_S = 60.0
"""How long one user scorer may run on one round before it is given up on for the rest of the job."""
POLL_S = 0.1
"""How often a waiting caller checks for a scorer past its limit."""


@dataclass(eq=False)
class HandedRound:
    """One round's answers, handed to the scorer; `averages` is set once its rows went to the writer."""

    job_id: str
    step: int
    epoch: int
    samples: list[Sample]
    answers: list[str]
    metrics: list[Scores] | None = None
    custom: dict[str, list[float | None]] = field(default_factory=dict)
    averages: dict[str, float] | None = None
    kept_unscored: bool = False
    done: Flag = field(default_factory=Flag)  # a signal handler may wait for it inside the caller's wait


@dataclass(frozen=True)
class Pending:
    """A handed round's averages as `RoundResult` reads them (`outcome.PendingAverages`)."""

    scorer: RoundScorer
    handed: HandedRound

    def ready(self) -> bool:
        return self.handed.done.is_set()

    def wait(self) -> dict[str, float] | None:
        return self.scorer.wait(self.handed)


class RoundScorer:
    """Scores handed rounds in order on one background thread and writes each one's rows when scored."""

    def __init__(self, writer: Writer, config: PredictionsConfig):
        self.writer, self.config = writer, config
        self.scorers: dict[str, Scorer] = dict(config.scorers)
        """The user scorers still called; one given up on is removed."""
        self._lock = threading.RLock()  # a signal handler may keep rounds while the main thread holds it
        self._queue: queue.SimpleQueue[HandedRound | None] = queue.SimpleQueue()
        self._pending: list[HandedRound] = []
        self._busy: tuple[HandedRound, str, float] | None = None
        self._worker: threading.Thread | None = None
        self._start()

    # the training thread

    def hand_over(
        self, job_id: str, step: int, epoch: float, samples: list[Sample], answers: list[str]
    ) -> HandedRound:
        """Queue a round for scoring and return at once; the returned round's `done` is set once stored."""
        self.give_up_if_stuck()
        handed = HandedRound(job_id, step, epoch_number(epoch), list(samples), list(answers))
        with self._lock:
            self._pending.append(handed)
        self._queue.put(handed)
        return handed

    def wait(self, handed: HandedRound, timeout_s: float | None = None) -> dict[str, float] | None:
        """The round's averages once scored and written; None if `timeout_s` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not handed.done.wait(POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())):
            self.give_up_if_stuck()
            if deadline is not None and time.monotonic() >= deadline:
                return None
        return handed.averages

    def wait_all(self, timeout_s: float | None = None) -> bool:
        """Wait for every handed round to be scored and written; False if `timeout_s` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            pending = list(self._pending)
        for handed in pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.wait(handed, left) is None and not handed.done.is_set():
                return False
        return True

    def keep_unscored(self) -> int:
        """Hand every round not scored yet to the writer now, unscored (its built-in metrics where the
        thread has them), so that it is stored or kept even if the process ends before it is scored."""
        with self._lock:
            rounds = [r for r in self._pending if not r.done.is_set() and not r.kept_unscored]
            for handed in rounds:
                handed.kept_unscored = True
                metrics = handed.metrics or [UNSCORED] * len(handed.answers)
                self.writer.write(self._rows(handed, metrics, {}))
        if rounds:
            logger.warning(
                "predictions: %s round(s) not scored yet (steps %s) kept unscored; their scores follow if "
                "they are ready in time",
                len(rounds),
                ", ".join(str(r.step) for r in rounds),
            )
        return len(rounds)

    def close(self) -> None:
        """Stop the thread once the rounds handed over are done (call `wait_all` first to wait for them)."""
        self._queue.put(None)

    def give_up_if_stuck(self) -> None:
        """Give up on a user scorer past `SCORER_LIMIT_S`: its round is written without it, the scorer is
        not called again, and a new thread takes the rounds queued behind it."""
        with self._lock:
            busy = self._busy
            if busy is None or time.monotonic() - busy[2] < SCORER_LIMIT_S:
                return
            handed, name, _ = busy
            self._busy = None
            self.scorers.pop(name, None)
            self._finish(handed)
            self._start()
        logger.error(
            "predictions: scorer %r has run for over %g s on the round at step %s; it is given up on: its "
            "values are None from that round on and it is not called again in this job",
            name,
            SCORER_LIMIT_S,
            handed.step,
        )

    # the scoring thread

    def _start(self) -> None:
        """A new scoring thread; the one before it (stuck in a scorer) stops if that scorer ever returns."""
        self._worker = threading.Thread(target=self._run, name="predictions-scorer", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        me = threading.current_thread()
        while self._worker is me and (handed := self._queue.get()) is not None:
            try:
                self._score(handed)
            except Exception:
                logger.exception(
                    "predictions round at step %s could not be scored; stored unscored", handed.step
                )
                with self._lock:
                    self._finish(handed)

    def _score(self, handed: HandedRound) -> None:
        """Built-in metrics, then each user scorer still called, then the rows to the writer."""
        metrics = score_batch(handed.answers, [sample.ground_truth for sample in handed.samples])
        with self._lock:
            handed.metrics = metrics
            scorers = list(self.scorers.items())
        for name, scorer in scorers:
            with self._lock:
                if handed.done.is_set():  # given up on meanwhile
                    return
                self._busy = (handed, name, time.monotonic())
            values = run_scorers({name: scorer}, handed.samples, handed.answers)
            with self._lock:
                if self._busy is not None and self._busy[0] is handed:
                    self._busy = None
                handed.custom[name] = [row[name] for row in values]
        with self._lock:
            self._finish(handed)

    def _finish(self, handed: HandedRound) -> None:
        """Write the round's rows once (with what has been scored) and wake whoever waits. Under the lock."""
        if handed.done.is_set():
            return
        rows = self._rows(handed, handed.metrics or [UNSCORED] * len(handed.answers), handed.custom)
        self.writer.write(rows)
        handed.averages = round_averages(rows, [*METRICS, *self.config.scorers])
        self._pending.remove(handed)
        handed.done.set()

    def _rows(
        self, handed: HandedRound, metrics: Sequence[Scores], custom: dict[str, list[float | None]]
    ) -> list[PredictionRow]:
        names = list(self.config.scorers)
        values = [
            {name: custom[name][i] if name in custom else None for name in names} if names else None
            for i in range(len(handed.answers))
        ]
        return assemble_rows(handed, metrics, values, self.config.user_id)


def epoch_number(epoch: float) -> int:
    """The 1-based epoch a step belongs to: the Trainer's fractional `state.epoch` rounded up."""
    return max(1, math.ceil(round(epoch or 0.0, 6)))


def assemble_rows(
    handed: HandedRound,
    metrics: Sequence[Scores],
    custom: Sequence[dict[str, Any] | None],
    user_id: str | None,
) -> list[PredictionRow]:
    """One row per sample of the round, with its built-in metrics and user scores."""
    return [
        PredictionRow(
            job_id=handed.job_id,
            epoch=handed.epoch,
            step=handed.step,
            sample_index=sample.index,
            prompt=sample.prompt,
            prediction=answer,
            ground_truth=sample.ground_truth,
            user_id=user_id,
            scores=values,
            metadata=sample.metadata,
            **score.as_dict(),
        )
        for sample, answer, score, values in zip(handed.samples, handed.answers, metrics, custom, strict=True)
    ]


def build_rows(
    job_id: str, step: int, epoch: float, samples: list[Sample], answers: list[str], config: PredictionsConfig
) -> list[PredictionRow]:
    """A round's rows scored here, on the calling thread: what `RoundScorer` writes, in one call.

    Values a store cannot hold are made storable by `Writer.write`, which every row passes through.
    """
    handed = HandedRound(job_id, step, epoch_number(epoch), samples, answers)
    metrics = score_batch(answers, [sample.ground_truth for sample in samples])
    return assemble_rows(handed, metrics, run_scorers(config.scorers, samples, answers), config.user_id)


class ScoreFirst:
    """The writer as the signal guard and the exit hook use it: `spill` also keeps the rounds still
    being scored (unscored), and `close` gives them half its time to be scored before the writer's.
    `before_finish` hands the writer what the loop still holds (the logged loss since the last round)
    before the job's last status."""

    def __init__(self, scorer: RoundScorer, writer: Writer, before_finish: Callable[[], None] = lambda: None):
        self.scorer, self.writer, self.before_finish = scorer, writer, before_finish

    @property
    def closed(self) -> bool:
        return self.writer.closed

    def finish_job(self, job_id: str, status: str = "finished", stop_reason: dict | None = None) -> None:
        try:
            self.before_finish()
        except Exception:  # the status must still be written
            logger.exception("predictions: could not keep the values logged since the last round")
        self.writer.finish_job(job_id, status=status, stop_reason=stop_reason)

    def spill(self) -> int:
        """The writer's queue first, then the rounds not scored yet, straight to the outbox under the
        scorer's lock: a round scored meanwhile comes after its unscored rows, as a replay needs (the
        other way, its scored rows could reach the outbox before the spill's own append)."""
        spilled = self.writer.spill()
        self.scorer.keep_unscored()
        return spilled

    def close(self, timeout_s: float | None = None) -> None:
        start = time.monotonic()
        if not self.scorer.wait_all(None if timeout_s is None else timeout_s / 2):
            self.scorer.keep_unscored()
        left = None if timeout_s is None else max(1.0, timeout_s - (time.monotonic() - start))
        self.writer.close(timeout_s=left)
