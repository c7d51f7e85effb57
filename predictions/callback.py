"""`PredictionsCallback`: at each epoch end (and every N steps) the model answers the tracked samples.

One round: every rank generates its equal shard of the samples, rank 0 gathers, scores and hands the
rows to the writer, and training goes on. Configuration and dataset problems fail before the first
step; after that a failing round is logged and skipped, never raised. A run that dies without reaching
train end (an exception, Ctrl-C) is marked failed when the interpreter exits, its queued rows stored.
"""

from __future__ import annotations

import atexit
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from predictions.config import PredictionsConfig
from predictions.distributed import (
    all_ranks_ok,
    broadcast_from_main,
    equal_shards,
    gather_to_main,
    rank_and_world,
    sharding,
)
from predictions.errors import ConfigError, StoreUnavailableError
from predictions.generator import encode_batches, generate_batches, unwrap, uses_chat_template
from predictions.preemption import SignalGuard, guard_job
from predictions.sampler import Sample, check_source, select_samples
from predictions.scorer import score_batch
from predictions.store.base import PredictionRow, Store
from predictions.text import storable_row
from predictions.user_scorers import run_scorers
from predictions.writer import Writer, check_can_write

logger = logging.getLogger(__name__)


class PredictionsCallback(TrainerCallback):
    """Generates, scores and stores the model's answers to a fixed set of samples, round by round.

    `samples` is a `datasets.Dataset`, a list of dicts or a .jsonl/.json/.csv path; `tokenizer`
    defaults to the Trainer's `processing_class`; every other keyword is a `PredictionsConfig` field.
    """

    def __init__(self, samples: Any, *, tokenizer: Any = None, **options: Any):
        self.config = PredictionsConfig.from_options(**options)
        check_source(samples)
        self.source, self.tokenizer = samples, tokenizer
        self.samples: list[Sample] = []
        self.job_id: str | None = None
        self.writer: Writer | None = None
        self.watch = RegressionWatch(self.config.stop_after_regressions)
        self._done_steps: set[int] = set()
        self.skipped: dict[int, list[int]] = {}
        self._active_tokenizer: Any = None
        self._signal_guard: SignalGuard | None = None

    # hooks

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Check the tokenizer and the samples before the first step, and register the job."""
        self._active_tokenizer = self._resolve_tokenizer(kwargs.get("processing_class"))
        self.samples = select_samples(self.source, self.config)
        self.job_id = self.config.job_id or args.run_name or generated_job_id()
        self._done_steps.clear()
        self.skipped.clear()
        self.watch = RegressionWatch(self.config.stop_after_regressions)
        if state.is_world_process_zero:
            self.writer = self._start_writer()
            self.writer.start_job(
                self.job_id,
                name=self.config.job_name or self.job_id,
                model=model_name(kwargs.get("model")),
                config=self.config.as_dict(),
                user_id=self.config.user_id,
            )
            atexit.register(fail_unfinished_job, self.writer, self.job_id)
            self._signal_guard = guard_job(self.writer, self.job_id)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        every = self.config.every_n_steps
        if every and state.global_step % every == 0:
            return self._round(state, control, kwargs.get("model"))
        return None

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        return self._round(state, control, kwargs.get("model"))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Mark the job finished and wait for the writer to store (or spool) every row."""
        if self.writer is not None and self.job_id is not None:
            self.writer.finish_job(self.job_id, status="finished")
            self.writer.close()
            self.writer = None
        if self._signal_guard is not None:
            self._signal_guard.uninstall()
            self._signal_guard = None

    # a round

    def _round(self, state: TrainerState, control: TrainerControl, model: Any) -> TrainerControl | None:
        """Run one round unless this step already had one; returns `control` only when it changed.

        Every rank encodes its shard, one all-reduce decides whether all of them generate, and rank 0's
        outcome (the samples skipped, whether to stop) is broadcast so every rank holds the same.
        """
        if state.global_step in self._done_steps or not self.samples or model is None:
            return None
        self._done_steps.add(state.global_step)
        rank, world = rank_and_world()
        batches = self._encode_shard(equal_shards(self.samples, world)[rank], rank)
        if not all_ranks_ok(batches is not None):
            self.skipped[state.global_step] = [sample.index for sample in self.samples]
            if state.is_world_process_zero:
                logger.warning("predictions round at step %s skipped on every rank", state.global_step)
            return None
        answers = gather_to_main(self._generate_shard(model, batches, rank), world)
        stop = self._record(state, answers) if state.is_world_process_zero and answers is not None else False
        stop, skipped = broadcast_from_main((stop, self.skipped.get(state.global_step)), world)
        if skipped:
            self.skipped[state.global_step] = skipped
        if stop:
            logger.warning(
                "stopping training: average CER rose %s rounds in a row", self.config.stop_after_regressions
            )
            control.should_training_stop = True
            return control
        return None

    def _encode_shard(self, shard: list[Sample], rank: int) -> list[Any] | None:
        """This rank's prompts rendered and tokenized, or None (logged) when that fails."""
        options = self.config
        try:
            return encode_batches(
                self._active_tokenizer,
                shard,
                batch_size=options.batch_size,
                max_prompt_tokens=options.max_prompt_tokens,
                use_chat_template=options.use_chat_template,
            )
        except Exception:
            logger.exception("predictions round: preparing the prompts failed on rank %s", rank)
            return None

    def _generate_shard(self, model: Any, batches: list[Any], rank: int) -> list[str] | None:
        """This rank's answers, or None (logged) when generation failed, so the gather still happens.

        A sharded model's forward is a collective: the other ranks wait inside it for this one, and
        nothing can bring them back out, so the error is raised and training stops (docs/distributed.md).
        """
        try:
            options = self.config
            return generate_batches(
                model,
                self._active_tokenizer,
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
                raise
            logger.exception("predictions round: generation failed on rank %s; its samples are skipped", rank)
            return None

    def _record(self, state: TrainerState, shards: list[list[str] | None]) -> bool:
        """Score and queue the answers that came back (rank 0); True when the run should stop.

        A rank whose generation failed (possible only without sharding) costs its own samples: they are
        logged and listed in `self.skipped`, the others are stored.
        """
        try:
            answered = answers_by_index(self.samples, shards)
            kept = [sample for sample in self.samples if sample.index in answered]
            self._note_skipped(state.global_step, [s.index for s in self.samples if s.index not in answered])
            if not kept:
                return False
            answers = [answered[sample.index] for sample in kept]
            rows = build_rows(self.job_id, state, kept, answers, self.config)
            self.writer.write(rows)
            return self.watch.observe(mean([row.char_error_rate for row in rows]))
        except Exception:
            logger.exception("predictions round at step %s could not be recorded", state.global_step)
            return False

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

    def _resolve_tokenizer(self, processing_class: Any) -> Any:
        tokenizer = self.tokenizer or processing_class
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a multimodal processor wraps one
        if tokenizer is None or not callable(getattr(tokenizer, "batch_decode", None)):
            raise ConfigError(
                f"tokenizer={tokenizer!r} is invalid; valid: a tokenizer, passed to the Trainer as "
                "processing_class= or to PredictionsCallback as tokenizer="
            )
        if self.config.use_chat_template == "on" and not uses_chat_template(tokenizer, "auto"):
            raise ConfigError(
                "use_chat_template='on' but the tokenizer has no chat_template; valid: 'auto' or 'off'"
            )
        return tokenizer

    def _start_writer(self) -> Writer:
        """A writer on the configured store, else `open_store()`; checked able to write before step 1.

        A store that cannot be opened yet (a locked SQLite file) is opened later by the writer, which
        spools to that store's own spool meanwhile.
        """
        store: Store | None = self.config.store
        if store is None:
            from predictions.store import open_store

            try:
                store = open_store()
            except StoreUnavailableError:
                logger.exception("predictions store unavailable; rows go to its spool until it answers")
                return Writer(None, open_store=open_store)
        check_can_write(store, self.config.user_id)
        return Writer(store)


@dataclass
class RegressionWatch:
    """Counts consecutive rounds whose average CER rose; `observe` says when the limit is reached."""

    limit: int | None
    last: float | None = None
    rises: int = 0

    def observe(self, cer: float | None) -> bool:
        if cer is None:
            return False
        self.rises = self.rises + 1 if self.last is not None and cer > self.last else 0
        self.last = cer
        return self.limit is not None and self.rises >= self.limit


def fail_unfinished_job(writer: Writer, job_id: str) -> None:
    """At interpreter exit: a job whose training never ended is marked failed, its queued rows stored.

    The Trainer calls no hook when training raises; without this the job would show as running forever
    and the last rounds, still queued for the writer's daemon thread, would be lost.
    """
    if not writer.closed:
        writer.finish_job(job_id, status="failed")
        writer.close(timeout_s=60.0)


def build_rows(
    job_id: str, state: TrainerState, samples: list[Sample], answers: list[str], config: PredictionsConfig
) -> list[PredictionRow]:
    """One scored row per sample (built-in and user scorers); the epoch is the 1-based epoch of the step."""
    epoch = max(1, math.ceil(round(state.epoch or 0.0, 6)))
    scores = score_batch(answers, [sample.ground_truth for sample in samples])
    custom = run_scorers(config.scorers, samples, answers)
    return [
        storable_row(
            PredictionRow(
                job_id=job_id,
                epoch=epoch,
                step=state.global_step,
                sample_index=sample.index,
                prompt=sample.prompt,
                prediction=answer,
                ground_truth=sample.ground_truth,
                user_id=config.user_id,
                scores=values,
                metadata=sample.metadata,
                **score.as_dict(),
            )
        )
        for sample, answer, score, values in zip(samples, answers, scores, custom, strict=True)
    ]


def answers_by_index(samples: list[Sample], shards: list[list[str] | None]) -> dict[int, str]:
    """Each answered sample's answer by sample index; a failed rank's shard (None) answers nothing."""
    answered: dict[int, str] = {}
    for shard, answers in zip(equal_shards(samples, len(shards)), shards, strict=True):
        for sample, answer in zip(shard, answers or [], strict=False):
            answered.setdefault(sample.index, answer)  # the padding repeats the last sample
    return answered


def mean(values: list[float | None]) -> float | None:
    scored = [value for value in values if value is not None]
    return sum(scored) / len(scored) if scored else None


def model_name(model: Any) -> str | None:
    """The checkpoint name when the model was loaded from one, else its class name."""
    if model is None:
        return None
    model = unwrap(model)
    return getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__


def generated_job_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
