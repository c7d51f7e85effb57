"""`PredictionsMonitor`: prediction rounds for any training loop; the Trainer callback is a thin adapter.

`start` checks everything before the first step (tokenizer, samples, a one-token generate, the job's
identity) and registers the job; `round` has every rank generate its equal shard of the samples and
rank 0 gather them and hand them to the scorer's thread (`round_scorer`), which scores them and hands
the rows to the writer; `finish` waits for the scorer, marks the job and waits for the writer. After
`start`, a failing round is logged and skipped, never raised. A run that dies without `finish` (an
exception) is marked failed when the interpreter exits, its queued rows stored; in a notebook, as soon
as the cell that raised ends (`notebook.py`). Ctrl-C marks it stopped, interrupted by the user.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from predictions.config import PredictionsConfig
from predictions.delivery.writer import Writer, check_can_write
from predictions.errors import ConfigError, PredictionsError, StoreError, StoreUnavailableError
from predictions.scoring.sample import Sample
from predictions.store.job_details import job_details
from predictions.store.protocol import Store
from predictions.store.records import SERIES_NAMES, SeriesPoint, StopReason, TrainerStop
from predictions.training import notebook
from predictions.training.distributed import (
    all_ranks_ok,
    broadcast_from_main,
    equal_shards,
    gather_to_main,
    rank_and_world,
    sharding,
)
from predictions.training.generator import (
    encode_batches,
    generate_batches,
    has_chat_template,
    is_encoder_decoder,
)
from predictions.training.model_info import adapter, model_name
from predictions.training.outcome import RegressionWatch, RoundResult
from predictions.training.preemption import SignalGuard, at_exit, guard_job, interrupted_at
from predictions.training.preflight import ModelInputs, preflight
from predictions.training.rng import rng_untouched
from predictions.training.round_scorer import Pending, RoundScorer, ScoreFirst
from predictions.training.run_context import TRAINING_KEY, clean_context
from predictions.training.samples import check_source, select_samples

logger = logging.getLogger(__name__)

SERIES_BATCH = 200
"""Logged values kept before they are written without waiting for the next round."""


class PredictionsMonitor:
    """Generates, scores and stores the model's answers to a fixed set of samples, round by round.

    `samples` is a `datasets.Dataset`, a list of dicts or a .jsonl/.json/.csv path; every other
    keyword is a `PredictionsConfig` field. Use it as a context manager to finish the job (failed
    when the block raises)::

        with PredictionsMonitor(samples, tokenizer=tokenizer, num_samples=8) as monitor:
            monitor.start(model)
            for epoch in range(1, 4):
                ...  # train
                monitor.round(model, step=step, epoch=epoch)
    """

    def __init__(self, samples: Any, *, tokenizer: Any = None, **options: Any):
        self.config = PredictionsConfig.from_options(**options)
        check_source(samples)
        self.source, self.tokenizer = samples, tokenizer
        self.samples: list[Sample] = []
        self.inputs: ModelInputs | None = None
        self.job_id: str | None = None
        self.writer: Writer | None = None
        self.scorer: RoundScorer | None = None
        self.run_number = 1
        """This run's place among its job's runs: 1 fresh, one more than the run whose checkpoint it
        resumed. The store orders statuses by it, whenever each run's calls arrive (problem 10)."""
        self.is_main = True
        self.watch = self._new_watch()
        self.stopped: StopReason | None = None
        """Why the early-stop rule ended training, once it has."""
        self._done_steps: set[int] = set()
        self._series: list[SeriesPoint] = []
        self.skipped: dict[int, list[int]] = {}
        """Samples a round lost because a rank's generation failed, by step (main process)."""
        self._active_tokenizer: Any = None
        self._signal_guard: SignalGuard | None = None
        self._exit_hook: Callable[[], None] = lambda: None
        """Takes off the exit hook that fails the job if the process ends first (`at_exit`)."""
        self._last_step = 0
        self.progress: Callable[[], tuple[int, int]] = lambda: (self._last_step, 0)
        """(step reached, planned last step) now, for the reason of a run the user interrupts: the
        callback reads the Trainer's state; a hand-written loop's is its last round's step, no plan."""

    def __enter__(self) -> PredictionsMonitor:
        return self

    def __exit__(self, error_type: Any, error: Any, traceback: Any) -> None:
        self.finish("failed" if error_type else "finished")

    # the three calls

    @rng_untouched()
    def start(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        step: int = 0,
        name: str | None = None,
        is_main: bool | None = None,
        resumed_job_id: str | None = None,
        resumed_run_number: int | None = None,
        training: Mapping[str, Any] | None = None,
        trial: str | None = None,
    ) -> str:
        """Check everything a round needs and register the job; returns its id. Raises before training.

        `step` > 0 means training resumed from a checkpoint: only then may an explicit `job_id` that
        already has rounds continue, and `resumed_job_id` (the id the checkpoint carries) is continued
        when no `job_id` is given, its status set back to running; `resumed_run_number` is the number
        the checkpoint's run had (`run_number`: this run counts one more). `name` is the display name when
        `job_name` is not set. `is_main` defaults to rank 0 of `torch.distributed` (a single process is
        the main one). `training` is the run's context shown on Trends and Compare (learning rate,
        epochs, batch size, seed, dataset size ...: the callback fills it from the Trainer's arguments).
        `trial` labels a hyperparameter search's trial ("trial-3"): its job id and name end with it, so
        every trial is its own job, also under an explicit `job_id` or `job_name`. A job this monitor
        started and never finished (the run raised: no hook tells the monitor) is marked failed first.
        """
        self._fail_unfinished()
        self._active_tokenizer = self._resolve_tokenizer(tokenizer)
        self.samples = select_samples(self.source, self.config)
        rank, world = rank_and_world()
        self.is_main = rank == 0 if is_main is None else is_main
        batch = equal_shards(self.samples, world)[rank][: self.config.batch_size]
        self.inputs = preflight(model, self._active_tokenizer, self.samples, batch, self.config)
        self._done_steps.clear()
        self.skipped.clear()
        self.watch, self.stopped = self._new_watch(), None
        name = with_trial(self.config.job_name or name or self.config.job_id, trial)
        store = self._agree_on_job(step, name, world, resumed_job_id, trial)
        self.run_number = run_number_of(self.job_id, step, resumed_job_id, resumed_run_number)
        if self.is_main:
            self._replay_watch(store, step)
            self._start_job(store, model, name, training)
        return self.job_id

    @rng_untouched()
    def round(self, model: Any, tokenizer: Any = None, *, step: int, epoch: float) -> RoundResult:
        """Generate one round at `step` and hand it over to be scored and stored; returns its outcome.

        The answers are scored on the scorer's thread, so this returns once they are generated:
        reading the result's `averages` waits for them. With `stop_after_regressions` the round waits
        for its own scores, so that `should_stop` is decided at this step. `epoch` is the 1-based
        epoch, or the Trainer's fractional `state.epoch` (rounded up). Every rank must call it with
        the same step; a step that already had a round is skipped (an empty result). Every rank
        encodes its shard, one all-reduce decides whether all of them generate, and rank 0's outcome
        (samples skipped, whether to stop, the averages when known) is broadcast so every rank acts
        on it. A failure is logged, never raised, except inside a sharded model's generate
        (docs/distributed.md).
        """
        if step in self._done_steps or not self.samples or model is None:
            return RoundResult(step)
        self._last_step = step
        self._done_steps.add(step)
        tokenizer = tokenizer or self._active_tokenizer
        rank, world = rank_and_world()
        shard = equal_shards(self.samples, world)[rank]
        batches = self._encode_shard(tokenizer, shard, rank, is_encoder_decoder(model))
        if not all_ranks_ok(batches is not None):
            self.skipped[step] = [sample.index for sample in self.samples]
            if self.is_main:
                logger.warning("predictions round at step %s skipped on every rank", step)
            return RoundResult(step)
        answers = gather_to_main(self._generate_shard(model, tokenizer, batches, rank), world)
        result = self._record(step, epoch, answers) if self.is_main and answers is not None else None
        result = RoundResult(step) if result is None else result  # not `or`: falsy unless stopping
        result, skipped = broadcast_from_main((result, self.skipped.get(step)), world)
        if skipped:
            self.skipped[step] = skipped
        if result.stop is not None:
            self.stopped = result.stop
            if self.is_main:
                logger.warning("predictions: %s Training stops here.", result.stop.describe())
        return result

    def log_training(self, step: int, values: Mapping[str, Any]) -> None:
        """Keep what the training loop logged at `step` (the `SERIES_NAMES`: loss, eval_loss,
        learning_rate; anything else, or a value that is not a finite number, is ignored) beside the
        answers, for Trends' loss chart. A hand-written loop may pass the loss tensor itself (a
        one-value tensor or NumPy scalar is read with `.item()`). Main process only; the points are
        written with the next round, or at `finish`."""
        if not self.is_main or self.job_id is None:
            return
        for name in SERIES_NAMES:
            value = finite_number(values.get(name))
            if value is not None:
                self._series.append(SeriesPoint(self.job_id, int(step), name, value, self.config.user_id))
        if len(self._series) >= SERIES_BATCH:
            self._flush_series()

    def _flush_series(self) -> None:
        """Hand the logged values kept so far to the writer (also from the signal guard: taken first)."""
        points, self._series = self._series, []
        if points and self.writer is not None:
            self.writer.write_series(points)

    def round_due(self, step: int) -> bool:
        """Whether `every_n_steps` asks for a round at this optimizer step."""
        every = self.config.every_n_steps
        return bool(every) and step % every == 0

    def step(self, model: Any, tokenizer: Any = None, *, step: int, epoch: float) -> RoundResult:
        """Call after every optimizer step: a round when `every_n_steps` asks for one, else nothing.

        Returns what `round` returns (its averages and whether training should stop); an empty result
        when no round is due, and always when `every_n_steps` is None (then only the rounds you call
        yourself happen).
        """
        if not self.round_due(step):
            return RoundResult(step)
        return self.round(model, tokenizer, step=step, epoch=epoch)

    def finish(self, status: str = "finished", stopped: TrainerStop | None = None) -> None:
        """Wait for every round to be scored, mark the job finished (or failed; or stopped, when the
        early-stop rule ended it or `stopped` says why another part of the run did: the rule's own reason
        wins when both did) and wait for the writer to store (or spool) every row."""
        self._flush_series()
        if self.scorer is not None:
            self.scorer.wait_all()  # bounded: a user scorer past its limit is given up on
            self.scorer.close()
            self.scorer = None
        if self.writer is not None and self.job_id is not None:
            reason, why = None, self.stopped or stopped
            if status == "finished" and why is not None:
                status, reason = "stopped", why.as_dict()
                if why is stopped:
                    logger.warning("predictions: job %r %s", self.job_id, stopped.describe())
            if not self.writer.closed:  # closed: a signal's guard gave the job its status, and flushed
                self.writer.finish_job(self.job_id, status=status, stop_reason=reason)
                self.writer.close()
            if self.config.store is None:  # opened for this job, by the monitor or its writer
                self.writer.close_store()
            self.writer = None
        if self._signal_guard is not None:
            self._signal_guard.uninstall()
            self._signal_guard = None
        self._exit_hook()
        self._exit_hook = lambda: None
        notebook.unwatch(self)

    def end_after_error(self, error: BaseException | None) -> None:
        """The notebook cell that started this run ended before the run did (`notebook.py`): the job is
        marked failed now, or stopped for a KeyboardInterrupt (the user's Interrupt), its rows stored."""
        if isinstance(error, KeyboardInterrupt):
            self.finish("finished", stopped=interrupted_at(*self.progress()))
            return
        logger.warning("predictions: job %r ended by %s; marked failed", self.job_id, described(error))
        self.finish("failed")

    def _fail_unfinished(self) -> None:
        """The previous run of this monitor raised before its end (a hyperparameter search goes on to
        its next trial, a notebook calls `train()` again): its job is marked failed, its rows stored."""
        if self.writer is not None and self.job_id is not None:
            if not self.writer.closed:  # closed: a signal (Ctrl-C caught by the loop) gave it its status
                logger.warning(
                    "predictions: job %r never reached its end (its run raised); marked failed", self.job_id
                )
            self.finish("failed")

    def _abandon(self) -> None:
        """Training cannot go on: the job's owner marks it failed and stores its rows now, bounded,
        rather than trusting the process to reach its exit hooks (a launcher may kill it first)."""
        if self.writer is not None and self.scorer is not None and self.job_id is not None:
            fail_unfinished_job(ScoreFirst(self.scorer, self.writer, self._flush_series), self.job_id)

    # a round

    def _encode_shard(
        self, tokenizer: Any, shard: list[Sample], rank: int, encoder_decoder: bool
    ) -> list[Any] | None:
        """This rank's prompts rendered and tokenized, or None (logged) when that fails."""
        options = self.config
        try:
            return encode_batches(
                tokenizer,
                shard,
                batch_size=options.batch_size,
                max_prompt_tokens=options.max_prompt_tokens,
                use_chat_template=options.use_chat_template,
                encoder_decoder=encoder_decoder,
            )
        except Exception:
            logger.exception("predictions round: preparing the prompts failed on rank %s", rank)
            return None

    def _generate_shard(self, model: Any, tokenizer: Any, batches: list[Any], rank: int) -> list[str] | None:
        """This rank's answers, or None (logged) when generation failed, so the gather still happens.

        A sharded model's forward is a collective: the other ranks wait inside it for this one, and
        nothing can bring them back out, so the error is raised and training stops (docs/distributed.md).
        """
        try:
            options = self.config
            return generate_batches(
                model,
                tokenizer,
                batches,
                max_new_tokens=options.max_new_tokens,
                generation_kwargs=options.generation_kwargs,
            )
        except Exception:
            if sharding(model) is not None and rank_and_world()[1] > 1:
                logger.critical(
                    "predictions round: generate failed on rank %s of a sharded model; the other ranks "
                    "are waiting in its collectives, so training cannot go on",
                    rank,
                )
                self._abandon()
                raise
            logger.exception("predictions round: generation failed on rank %s; its samples are skipped", rank)
            return None

    def _record(self, step: int, epoch: float, shards: list[list[str] | None]) -> RoundResult | None:
        """Hand the answers that came back to the scorer (main process); the round's outcome, its
        averages still pending unless the early-stop rule needs them now.

        A rank whose generation failed (possible only without sharding) costs its own samples: they are
        logged and listed in `self.skipped`, the others are stored.
        """
        try:
            answered = answers_by_index(self.samples, shards)
            kept = [sample for sample in self.samples if sample.index in answered]
            self._note_skipped(step, [s.index for s in self.samples if s.index not in answered])
            if not kept:
                return None
            answers = [answered[sample.index] for sample in kept]
            handed = self.scorer.hand_over(self.job_id, step, epoch, kept, answers)
            self._flush_series()
            if self.watch.limit is None:
                return RoundResult(step, pending=Pending(self.scorer, handed))
            averages = self.scorer.wait(handed) or {}
            return RoundResult(step, averages, self.watch.observe(averages.get(self.watch.metric), step))
        except Exception:
            logger.exception("predictions round at step %s could not be recorded", step)
            return None

    def _note_skipped(self, step: int, indices: list[int]) -> None:
        if indices:
            self.skipped[step] = indices
            logger.warning(
                "predictions round at step %s: %s of %s samples skipped (a rank's generation failed): %s",
                step,
                len(indices),
                len(self.samples),
                indices,
            )

    # prerequisites

    def _new_watch(self) -> RegressionWatch:
        metric, lower_is_better = self.config.watched_metric
        return RegressionWatch(self.config.stop_after_regressions, metric, lower_is_better)

    def _resolve_tokenizer(self, fallback: Any) -> Any:
        tokenizer = self.tokenizer or fallback
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a multimodal processor wraps one
        if tokenizer is None or not callable(getattr(tokenizer, "batch_decode", None)):
            raise ConfigError(
                f"tokenizer={tokenizer!r} is invalid; valid: a tokenizer, passed to the Trainer as "
                "processing_class= or to PredictionsCallback / PredictionsMonitor as tokenizer="
            )
        if self.config.use_chat_template == "on" and not has_chat_template(tokenizer):
            raise ConfigError(
                "use_chat_template='on' but the tokenizer has no chat_template; valid: 'auto' or 'off'"
            )
        return tokenizer

    def _open_store(self) -> Store | None:
        """The configured store, else `open_store()`, checked able to write before step 1.

        None when it cannot be opened yet (a locked SQLite file): the writer opens it later, and
        spools to that store's own spool meanwhile.
        """
        store: Store | None = self.config.store
        if store is None:
            from predictions.store import open_store

            try:
                store = open_store()
            except StoreUnavailableError:
                logger.exception("predictions store unavailable; rows go to its spool until it answers")
                return None
        check_can_write(store, self.config.user_id)
        return store

    def _agree_on_job(
        self, step: int, name: str | None, world: int, resumed: str | None, trial: str | None
    ) -> Store | None:
        """The main process opens the store and picks the job id; every rank gets the id, or its error."""
        store, problem, job_id = None, None, None
        if self.is_main:
            try:
                store = self._open_store()
                job_id = self._pick_job_id(store, step, name, resumed, trial)
            except PredictionsError as error:  # a bad key, user or job id: every rank raises it
                problem = error
        problem, self.job_id = broadcast_from_main((problem, job_id), world)
        if problem is not None:
            raise problem
        return store

    def _pick_job_id(
        self, store: Store | None, step: int, name: str | None, resumed: str | None, trial: str | None
    ) -> str:
        """The explicit id (a trial's ends with its label), the resumed checkpoint's, or a new one from
        `name`; ConfigError when an explicit id would merge this run into another."""
        job_id = with_trial(self.config.job_id, trial) if self.config.job_id else None
        if job_id is None and resumed is not None and step > 0:
            logger.info("predictions: resumed at step %s, continuing job %r", step, resumed)
            return resumed
        if job_id is None:
            return generated_job_id(name)
        rounds = existing_rounds(store, job_id) if step == 0 else 0  # step > 0: a resume continues it
        if rounds:
            raise ConfigError(
                f"job_id={job_id!r} already has {rounds} round(s) in {store.description} and this run starts "
                "at step 0, so it would merge into that job; valid: a new job_id (or none: each run gets "
                "its own), or resume the run that wrote it, e.g. trainer.train(resume_from_checkpoint=True)"
            )
        return job_id

    def _replay_watch(self, store: Store | None, step: int) -> None:
        """On a resume, the early-stop rule sees the job's rounds up to `step` again, so a run that was
        getting worse before the checkpoint is not given a fresh count."""
        if step == 0 or store is None or self.watch.limit is None:
            return
        try:
            rounds = store.trends(self.job_id).rounds
        except StoreError:
            logger.warning(
                "could not read job %r's earlier rounds; the early-stop count starts afresh", self.job_id
            )
            return
        column = f"avg_{self.watch.metric}"
        if column in rounds:
            for earlier, value in zip(rounds["step"], rounds[column], strict=True):
                if earlier <= step and value == value:  # NaN: a round without a value
                    self.watch.observe(float(value), int(earlier))

    def _start_job(
        self, store: Store | None, model: Any, name: str | None, training: Mapping[str, Any] | None
    ) -> None:
        """Register the job (through the writer), and mark it failed if the process dies or is stopped."""
        from predictions.store import open_store

        user_id = self.config.user_id
        self.writer = Writer(
            store,
            user_id=user_id,
            open_store=None if store is not None else open_store,
            run_number=self.run_number,
        )
        self.scorer = RoundScorer(self.writer, self.config)
        config = {**self.config.as_dict(), "rendering": self.inputs.rendering}
        config["model_inputs"] = {str(index): text for index, text in self.inputs.texts.items()}
        if (adapted := adapter(model)) is not None:
            config["adapter"] = adapted
        if (context := clean_context(training)) is not None:
            config[TRAINING_KEY] = context
        self.writer.start_job(
            self.job_id,
            name=name or self.job_id,
            model=model_name(model),
            config=config,
            user_id=self.config.user_id,
            **job_details(self.config.tags, self.config.note),
        )
        score_first = ScoreFirst(self.scorer, self.writer, self._flush_series)
        self._exit_hook = at_exit(fail_unfinished_job, score_first, self.job_id)
        self._signal_guard = guard_job(score_first, self.job_id, lambda: self.progress())
        notebook.watch(self)


def run_number_of(job_id: str, step: int, resumed_job_id: str | None, resumed_run_number: Any) -> int:
    """1 for a fresh run; a run resumed from a checkpoint of this job counts one more than the run that
    saved it (a checkpoint of an earlier version, without a number, was saved by run 1 as far as we know)."""
    if step <= 0 or resumed_job_id != job_id:
        return 1
    saved = resumed_run_number if isinstance(resumed_run_number, int) and resumed_run_number >= 1 else 1
    return saved + 1


def existing_rounds(store: Store | None, job_id: str) -> int:
    """How many rounds the store holds for this job (0 when it cannot say: then nothing is blocked)."""
    if store is None:
        return 0
    try:
        return len(store.rounds(job_id))
    except StoreError:
        logger.warning("could not check whether job %r already has rounds; it is used as given", job_id)
        return 0


def fail_unfinished_job(writer: Writer | ScoreFirst, job_id: str) -> None:
    """At interpreter exit: a job whose training never ended is marked failed, its queued rows stored.

    The Trainer calls no hook when training raises; without this the job would show as running forever
    and the last rounds, still queued for the writer's daemon thread, would be lost.
    """
    if not writer.closed:
        writer.finish_job(job_id, status="failed")
        writer.close(timeout_s=60.0)


def described(error: BaseException | None) -> str:
    """'RuntimeError: bad batch', for the line that says why a run's job failed."""
    if error is None:
        return "an error its cell caught (train() never reached its end)"
    return f"{type(error).__name__}: {error}"


def answers_by_index(samples: list[Sample], shards: list[list[str] | None]) -> dict[int, str]:
    """Each answered sample's answer by sample index; a failed rank's shard (None) answers nothing."""
    answered: dict[int, str] = {}
    for shard, answers in zip(equal_shards(samples, len(shards)), shards, strict=True):
        for sample, answer in zip(shard, answers or [], strict=False):
            answered.setdefault(sample.index, answer)  # the padding repeats the last sample
    return answered


def finite_number(value: Any) -> float | None:
    """`value` as a finite float: a Python or NumPy number, or a tensor holding one value; else None."""
    if not isinstance(value, numbers.Real) and callable(getattr(value, "item", None)):
        try:
            value = value.item()  # a loss tensor as a loop has it, or a NumPy scalar
        except (TypeError, ValueError, RuntimeError):  # more than one value
            return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def with_trial(base: str | None, trial: str | None) -> str | None:
    """A search trial's job id or name: `base` and the trial's label ("sweep-trial-3"), the label alone
    without a base; `base` as it is outside a search."""
    if trial is None:
        return base
    return f"{base}-{trial}" if base else trial


def generated_job_id(name: str | None = None) -> str:
    """A new id for every run, readable: the name's slug (or `run`), the UTC time and a random suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "run").lower()).strip("-")[:40] or "run"
    return f"{slug}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
