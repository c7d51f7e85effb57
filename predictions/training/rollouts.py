"""`RolloutRecorder`: every completion an RL trainer generated, with its rewards, at no extra `generate`.

TRL's `GRPOTrainer` calls each reward function with the rollouts of this process (`prompts`,
`completions`, `completion_ids`, every dataset column, `trainer_state`), every rollout exactly once,
before they are gathered. `wrap` puts a thin wrapper around each function that hands the function's
values back unchanged and keeps a copy; once every wrapped function has scored a batch, its rows go to
the non-blocking writer (spool, quarantine). Each process writes its own share, so under DDP every
rollout is stored once and no collective is added to the training step. As a `TrainerCallback` the
recorder learns the run's shape at train begin (group size, reward weights, eos tokens) and registers
the job, and at train end finishes it.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import inspect
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback

from predictions.delivery.pieces import in_pieces
from predictions.delivery.worker import Flag, Worker
from predictions.delivery.writer import Writer, check_can_write
from predictions.errors import ConfigError, PredictionsError, StoreUnavailableError
from predictions.scoring.metrics import score_batch
from predictions.scoring.sample import Sample
from predictions.scoring.user_scorers import check_scorers, run_scorers
from predictions.store.job_details import check_note, check_tags, job_details
from predictions.store.protocol import Store
from predictions.store.records import RolloutRow, TrainerStop
from predictions.training import notebook
from predictions.training.callback import calling_trainer, resumed_job_id
from predictions.training.distributed import broadcast_from_main, rank_and_world
from predictions.training.model_info import adapter, model_name
from predictions.training.monitor import described, generated_job_id
from predictions.training.preemption import at_exit, guard_job, interrupted_at
from predictions.training.run_context import TRAINING_KEY, clean_context, trainer_context
from predictions.training.trainer_stop import callbacks_beside, trainer_stop

logger = logging.getLogger(__name__)

GROUND_TRUTH_FIELDS = ("answer", "solution", "ground_truth")
"""Dataset columns taken as the ground truth when `ground_truth_field` is not given, first found first."""
NOT_COLUMNS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"}
)
"""Reward-function keywords that are TRL's own, not dataset columns."""
DEFAULT_MAX_GROUPS = 64
"""Groups kept per generation batch by default: every group of most runs, a bounded share of huge ones."""
STATE_KEY = "predictions_rollouts_job"
"""Where the job id lives in `TrainerState.stateful_callbacks` (every checkpoint saves it), so a run
resumed from a checkpoint continues the job; beside the callback's own key, so both can run together."""


@dataclass
class RolloutOptions:
    """What the recorder keeps and where; validated at construction (each error names the option).

    Attributes:
        store: where rollouts go (default: `open_store()`, opened at train begin).
        job_id: the run's id (default: a new one per run). An id that already has rollouts continues
            that job only when training resumes from a checkpoint.
        job_name: the name the dashboard shows (default: the TrainingArguments run_name, else the id).
        user_id: the owner written with every row (default: the store's user).
        tags, note: the job's tags and note, as for `PredictionsCallback`.
        id_field: the dataset column that names a prompt (default `id`); without it, a hash of the prompt.
        ground_truth_field: the dataset column holding the ground truth (default: the first of
            `answer`, `solution`, `ground_truth` present); the built-in metrics and `scorers` use it.
        scorers: your own metrics, as for `PredictionsCallback`, computed against the ground truth.
        every_n_generations: keep every n-th generation batch only (1 keeps all).
        max_groups: keep at most this many groups (prompts) of each generation batch; None keeps all.
    """

    store: Store | None = field(default=None, repr=False)
    job_id: str | None = None
    job_name: str | None = None
    user_id: str | None = None
    tags: Sequence[str] | None = None
    note: str | None = None
    id_field: str = "id"
    ground_truth_field: str | None = None
    scorers: Mapping[str, Any] | None = None
    every_n_generations: int = 1
    max_groups: int | None = DEFAULT_MAX_GROUPS

    def __post_init__(self) -> None:
        for name in ("job_id", "job_name", "user_id", "id_field", "ground_truth_field"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name}={value!r} is invalid; valid: None or a non-empty string")
        for name, optional in (("every_n_generations", False), ("max_groups", True)):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                valid = "None or an integer >= 1" if optional else "an integer >= 1"
                raise ConfigError(f"{name}={value!r} is invalid; valid: {valid}")
        if self.store is not None and not isinstance(self.store, Store):
            raise ConfigError(f"store={self.store!r} is invalid; valid: None (open_store()) or a Store")
        self.scorers = check_scorers(self.scorers)
        self.tags = check_tags(self.tags)
        self.note = check_note(self.note)

    def as_dict(self) -> dict[str, Any]:
        """The options for the job record (the store and the scorer functions left out)."""
        names = ("id_field", "ground_truth_field", "every_n_generations", "max_groups")
        return {**{name: getattr(self, name) for name in names}, "scorers": sorted(self.scorers or {})}


@dataclass
class RunShape:
    """What the trainer's arguments and tokenizer say about its batches, read at train begin."""

    num_generations: int
    weights: list[float]
    accumulation: int
    generate_every: int
    stop_ids: frozenset[int]
    origin: int = 0
    tokenizer: Any = None
    chat_kwargs: dict[str, Any] = field(default_factory=dict)
    model: Any = None


@dataclass
class Batch:
    """One reward call's rollouts while the wrapped functions score them in turn."""

    kwargs: dict[str, Any]
    values: list[list[Any] | None]


@dataclass
class Kept:
    """A batch's rollouts that are kept, as text: their indices in the batch, completions, ground
    truths, rendered prompts and (once scored) the user's scores, by position."""

    indices: list[int]
    completions: list[str] = field(default_factory=list)
    truths: list[str | None] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    scores: list[dict[str, float | None] | None] = field(default_factory=list)


class RolloutRecorder(TrainerCallback):
    """Stores every rollout of a GRPO-style trainer, with each reward, from the reward functions' calls::

        recorder = RolloutRecorder(job_name="grpo-run")
        trainer = GRPOTrainer(model, reward_funcs=recorder.wrap([accuracy, brevity]), args=args,
                              train_dataset=dataset, callbacks=[recorder])

    Keywords are `RolloutOptions` fields. Training is never changed: each function's values go back to
    the trainer as they came, and a failure to record is logged, never raised.
    """

    def __init__(self, **options: Any):
        self.options = RolloutOptions(**options)
        self.job_id: str | None = None
        self.names: list[str] = []
        self._shape: RunShape | None = None
        self._writer: Writer | None = None
        self._builder: Builder | None = None
        self._pending: dict[int, Batch] = {}
        self._lock = threading.Lock()
        self._step_calls = (-1, 0)
        self._guard: Any = None
        self._is_main = True
        self._progress: Callable[[], tuple[int, int]] = lambda: (0, 0)
        """(step reached, planned last step) of the open run: for the reason of an interrupted one."""
        self._exit_hook: Callable[[], None] = lambda: None

    # the reward functions

    def wrap(self, reward_funcs: Callable | Sequence[Callable]) -> list[Callable]:
        """The reward functions, each wrapped to report its values here; pass the list to the trainer."""
        funcs = [reward_funcs] if callable(reward_funcs) else list(reward_funcs)
        self.names = [reward_name(func) for func in funcs]
        if not funcs or len(set(self.names)) != len(self.names) or any(is_module(f) for f in funcs):
            raise ConfigError(
                f"reward_funcs={self.names!r} is invalid; valid: one or more reward functions with distinct "
                "names (a reward model, an nn.Module, is not called with the rollouts: wrap a function that "
                "calls it)"
            )
        return [self._wrapped(func, position) for position, func in enumerate(funcs)]

    def _wrapped(self, func: Callable, position: int) -> Callable:
        if is_async(func):

            async def reward_async(*args: Any, **kwargs: Any) -> Any:
                values = as_list(await func(*args, **kwargs))
                self._observe(position, kwargs, values)
                return values

            return named_like(reward_async, func)

        def reward(*args: Any, **kwargs: Any) -> Any:
            values = as_list(func(*args, **kwargs))
            self._observe(position, kwargs, values)
            return values

        return named_like(reward, func)

    def _observe(self, position: int, kwargs: dict[str, Any], values: Sequence[Any]) -> None:
        """Keep one function's values; the last of a batch's functions sends the batch on."""
        try:
            if self._shape is None:
                self._refuse_unregistered()
            key = id(kwargs.get("completions"))
            with self._lock:
                batch = self._pending.setdefault(key, Batch(kwargs, [None] * len(self.names)))
                batch.values[position] = values  # not copied: O(1) here; the builder reads them
                if any(value is None for value in batch.values):
                    return
                del self._pending[key]
            self._record(batch)
        except ConfigError:
            raise
        except Exception:
            logger.exception("rollouts of a reward call could not be recorded; training goes on")

    def _refuse_unregistered(self) -> None:
        raise ConfigError(
            "RolloutRecorder got a reward call before train begin; valid: pass the recorder to the trainer "
            "too, GRPOTrainer(..., reward_funcs=recorder.wrap(funcs), callbacks=[recorder])"
        )

    # one batch

    def _record(self, batch: Batch) -> None:
        """In the training thread, only what changes later (the step, the model's mode) is read; the rows
        are built, scored and queued by the builder thread, so a step waits microseconds, not milliseconds."""
        shape, kwargs = self._shape, batch.kwargs
        state = kwargs.get("trainer_state")
        if self._builder is None or state is None or not getattr(shape.model, "training", True):
            return  # evaluation rollouts are not training rollouts
        generation = self._generation(state.global_step)
        if generation % self.options.every_n_generations:
            return
        offset = rank_and_world()[0] * len(kwargs["prompts"])  # the trainer gathers ranks in rank order
        step = state.global_step + 1  # read now: the state moves on while the builder works
        self._builder.put(lambda: self._write(kwargs, batch.values, step, generation, offset))

    def _write(
        self, kwargs: dict[str, Any], values: list[list[Any]], step: int, generation: int, offset: int
    ) -> None:
        """In the builder thread: the batch's rows, handed to the writer in one call. Built in pieces
        (`in_pieces`), so the training thread never waits long for the interpreter lock meanwhile; the
        user's scorers are called once for the batch, as they expect."""
        kept = self._texts(kwargs, offset)
        if not kept.indices:
            return
        kept.scores = self._user_scores(kwargs, kept.indices, kept.prompts, kept.truths, kept.completions)
        rows = []
        for piece in in_pieces(range(len(kept.indices))):
            rows += self._rows(kwargs, values, kept, piece, (step, generation, offset))
        self._writer.write_rollouts(rows)

    def _generation(self, global_step: int) -> int:
        """The number of the generation batch (the same on every rank): see `generation_number`."""
        step, calls = self._step_calls
        calls = calls if step == global_step else 0
        self._step_calls = (global_step, calls + 1)
        return generation_number(global_step, calls, self._shape)

    def _texts(self, kwargs: dict[str, Any], offset: int) -> Kept:
        """The rollouts `max_groups` keeps, as text (prompts rendered as the model saw them)."""
        limit, size = self.options.max_groups, self._shape.num_generations
        count = len(kwargs["prompts"])
        kept = Kept([i for i in range(count) if limit is None or (offset + i) // size < limit])
        truth = self.options.ground_truth_field or next((f for f in GROUND_TRUTH_FIELDS if f in kwargs), None)
        rendered: dict[int, str] = {}
        for piece in in_pieces(kept.indices):
            kept.completions += [completion_text(kwargs["completions"][i]) for i in piece]
            kept.truths += [text_or_none(kwargs[truth][i]) if truth in kwargs else None for i in piece]
            kept.prompts += self._render_prompts([kwargs["prompts"][i] for i in piece], rendered)
        return kept

    def _rows(
        self,
        kwargs: dict[str, Any],
        values: list[list[Any]],
        kept: Kept,
        piece: Sequence[int],
        where: tuple[int, int, int],
    ) -> list[RolloutRow]:
        """The rows of the kept rollouts at positions `piece`; `where` is (step, generation, offset)."""
        shape, options = self._shape, self.options
        step, generation, offset = where
        texts, truths = [kept.completions[n] for n in piece], [kept.truths[n] for n in piece]
        metrics = score_batch(texts, truths) if any(t is not None for t in truths) else [None] * len(piece)
        ids = kwargs.get(options.id_field)
        token_ids = kwargs.get("completion_ids")
        rows = []
        for scored, n in zip(metrics, piece, strict=True):
            i = kept.indices[n]
            tokens = token_ids[i] if token_ids else []
            group, index = divmod(offset + i, shape.num_generations)
            rewards = {name: reward_number(value[i]) for name, value in zip(self.names, values, strict=True)}
            rows.append(
                RolloutRow(
                    job_id=self.job_id,
                    step=step,
                    generation=generation,
                    group_index=group,
                    completion_index=index,
                    prompt_id=prompt_id(ids[i] if ids is not None else None, kept.prompts[n]),
                    prompt=kept.prompts[n],
                    completion=kept.completions[n],
                    rewards=rewards,
                    reward=weighted_total(list(rewards.values()), shape.weights),
                    completion_tokens=len(tokens),
                    truncated=bool(tokens) and int(tokens[-1]) not in shape.stop_ids,
                    ground_truth=kept.truths[n],
                    scores=kept.scores[n],
                    user_id=options.user_id,
                    **(scored.as_dict() if scored is not None else {}),
                )
            )
        return rows

    def _render_prompts(self, prompts: list[Any], cache: dict[int, str]) -> list[str]:
        """Each prompt as the model saw it: chat turns through the chat template, text as it is; `cache`
        holds the batch's prompts rendered so far (a group's completions share one prompt object)."""
        rendered = []
        for prompt in prompts:
            if id(prompt) not in cache:
                cache[id(prompt)] = render_prompt(prompt, self._shape.tokenizer, self._shape.chat_kwargs)
            rendered.append(cache[id(prompt)])
        return rendered

    def _user_scores(
        self,
        kwargs: dict[str, Any],
        keep: list[int],
        prompts: list[str],
        truths: list[str | None],
        texts: list[str],
    ) -> list[dict[str, float | None] | None]:
        if not self.options.scorers:
            return [None] * len(keep)
        columns = {name: value for name, value in kwargs.items() if name not in NOT_COLUMNS}
        count = len(kwargs["prompts"])
        columns = {name: value for name, value in columns.items() if is_column(value, count)}
        samples = [
            Sample(i, prompts[n], truths[n], record={name: value[i] for name, value in columns.items()})
            for n, i in enumerate(keep)
        ]
        return run_scorers(self.options.scorers, samples, texts)

    # the Trainer's hooks

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Read the run's shape, agree on the job id across ranks (a resumed run continues the job its
        checkpoint names), register the job with the run's context, start the writer, and guard every
        rank's rollouts against SIGTERM, SIGINT and SIGHUP."""
        self._end("failed")  # a previous train() that raised never reached train end
        model = kwargs.get("model")
        self._shape = run_shape(args, kwargs.get("processing_class"), model, origin=state.global_step)
        self._pending.clear()
        self._step_calls = (-1, 0)
        name = getattr(args, "run_name", None)
        store = self._agree_on_job(state.global_step, name, resumed_job_id(state, STATE_KEY))
        state.stateful_callbacks[STATE_KEY] = {"job_id": self.job_id}
        from predictions.store import open_store

        owner = self.options.user_id  # the run's own: its calls are kept, and replayed, as that owner's
        self._writer = Writer(store, user_id=owner, open_store=None if store is not None else open_store)
        self._builder = Builder()
        self._is_main = state.is_world_process_zero
        if self._is_main:
            self._writer.start_job(
                self.job_id,
                name=self.options.job_name or name or self.job_id,
                model=model_name(model),
                config=self._job_config(args, state, model, kwargs.get("train_dataloader")),
                user_id=self.options.user_id,
                **job_details(self.options.tags, self.options.note),
            )
        kept = DrainFirst(self._builder, self._writer)
        job_id = self.job_id if self._is_main else None  # another rank's job is rank 0's to mark
        self._exit_hook = at_exit(close_at_exit, kept, job_id)
        self._progress = lambda: (state.global_step, state.max_steps)
        self._guard = guard_job(kept, job_id, self._progress)
        notebook.watch(self, with_cell=True)  # train() returns only after train end

    def _job_config(self, args: Any, state: Any, model: Any, dataloader: Any) -> dict[str, Any]:
        """What the job records: the recorder's options, the PEFT adapter, the run's context."""
        config = {"kind": "rollouts", "reward_functions": self.names, **self.options.as_dict()}
        if (adapted := adapter(model)) is not None:
            config["adapter"] = adapted
        context = trainer_context(args, state, calling_trainer(self), dataloader)
        if (context := clean_context(context)) is not None:
            config[TRAINING_KEY] = context
        return config

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Finish the job (main process), `stopped` when another callback ended training before its
        planned last step (`trainer_stop`), and wait for every rank's rollouts to be stored or spooled."""
        others = callbacks_beside(calling_trainer(self), self)
        self._end("finished", trainer_stop(args, state, control, others))

    def _end(self, status: str, stopped: TrainerStop | None = None, why: str = "an error?") -> None:
        """Drain the builder, give the job its last status (main process; `stopped`, with its reason,
        when `stopped` says why training ended early), close the writer, and take the signal guard off;
        nothing when no run is open."""
        if self._writer is None:
            return
        if status != "finished":
            logger.warning("job %r never reached train end (%s); marked %s", self.job_id, why, status)
        self._builder.close()
        reason = stopped.as_dict() if status == "finished" and stopped is not None else None
        if self._is_main and reason is not None:
            status = "stopped"
            logger.warning("predictions: job %r %s", self.job_id, stopped.describe())
        if not self._writer.closed:  # closed: a signal's guard gave the job its status, and flushed
            if self._is_main:
                self._writer.finish_job(self.job_id, status=status, stop_reason=reason)
            self._writer.close()
        if self.options.store is None:  # opened for this job, by the recorder or its writer
            self._writer.close_store()
        self._writer, self._builder = None, None
        if self._guard is not None:
            self._guard.uninstall()
            self._guard = None
        self._exit_hook()
        self._exit_hook = lambda: None
        notebook.unwatch(self)

    def end_after_error(self, error: BaseException | None) -> None:
        """The notebook cell that started this run ended before train end (`notebook.py`): the job is
        marked failed now, or stopped for a KeyboardInterrupt (the user's Interrupt), its rows stored."""
        if isinstance(error, KeyboardInterrupt):
            self._end("finished", interrupted_at(*self._progress()))
            return
        self._end("failed", why=described(error))

    def _agree_on_job(self, step: int, run_name: str | None, resumed: str | None) -> Store | None:
        """Rank 0 opens the store, checks it can write and picks the id; every rank gets the id or the
        error (so all raise together); then each other rank opens its own store for its own rollouts."""
        rank, world = rank_and_world()
        store, problem, job_id = None, None, None
        if rank == 0:
            try:
                store = self._open_store()
                job_id = self._pick_job_id(store, step, run_name, resumed)
            except PredictionsError as error:
                problem = error
        problem, self.job_id = broadcast_from_main((problem, job_id), world)
        if problem is not None:
            raise problem
        if rank != 0:
            try:
                store = self._open_store()
            except Exception:
                logger.exception(
                    "rank %s cannot open the store yet; its rollouts are spooled meanwhile", rank
                )
                store = None
        return store

    def _open_store(self) -> Store | None:
        """The configured store, else `open_store()`; None (logged) while it cannot be opened."""
        store = self.options.store
        if store is None:
            from predictions.store import open_store

            try:
                store = open_store()
            except StoreUnavailableError:
                logger.exception("predictions store unavailable; rollouts go to its spool until it answers")
                return None
        check_can_write(store, self.options.user_id)
        return store

    def _pick_job_id(self, store: Store | None, step: int, run_name: str | None, resumed: str | None) -> str:
        """The explicit id, the resumed checkpoint's, or a new one; ConfigError when an explicit id would
        merge a fresh run into another job."""
        job_id = self.options.job_id
        if job_id is None and resumed is not None and step > 0:
            logger.info("rollouts: resumed at step %s, continuing job %r", step, resumed)
            return resumed
        if job_id is None:
            return generated_job_id(self.options.job_name or run_name)
        if step == 0 and store is not None and not store.rollout_trends(job_id).steps.empty:
            raise ConfigError(
                f"job_id={job_id!r} already has rollouts in {store.description} and this run starts at "
                "step 0, so it would merge into that job; valid: a new job_id (or none), or resume the run "
                "that wrote it"
            )
        return job_id


class Builder:
    """A daemon thread that runs queued jobs in order (building rows, handing them to the writer); a
    failing job is logged and the next one runs. `close` waits for the queue to empty.

    The training thread only appends to a deque: no lock and no wakeup. Waking the thread at every
    reward call let the OS give the woken thread the training thread's core right there (the
    recorder's worst steps in bench_rollouts were those preemptions, of milliseconds at load); the
    thread looks for jobs every `POLL_S` instead, and only `close` wakes it.
    """

    POLL_S = 0.05
    """How often the thread looks for jobs: rows reach the writer at most this late."""

    def __init__(self):
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()  # append is atomic
        self._closing = Flag()  # a signal handler may set it again inside close()'s own set
        self._thread = Worker(self._run, name="predictions-rollouts")  # a signal handler may close it again
        self._thread.start()

    def put(self, job: Callable[[], None]) -> None:
        self._jobs.append(job)

    def close(self, timeout_s: float | None = None) -> None:
        """Run every job put so far, then stop the thread (waiting at most `timeout_s`)."""
        self._closing.set()
        self._thread.wait(timeout_s)

    def _run(self) -> None:
        while True:
            closing = self._closing.is_set()  # read first: every job put before close() is then run
            while self._jobs:
                job = self._jobs.popleft()
                try:
                    job()
                except Exception:
                    logger.exception("rollouts of a reward call could not be recorded; training goes on")
            if closing:
                return
            self._closing.wait(self.POLL_S)


class DrainFirst:
    """The writer as the signal guard uses it, except that closing first lets the builder turn the
    batches it still holds into rows (bounded), so a stopped run keeps its last rollouts too."""

    def __init__(self, builder: Builder, writer: Writer):
        self.builder, self.writer = builder, writer

    @property
    def closed(self) -> bool:
        return self.writer.closed

    def finish_job(self, job_id: str, status: str = "finished", stop_reason: dict | None = None) -> None:
        self.writer.finish_job(job_id, status=status, stop_reason=stop_reason)

    def spill(self) -> None:
        self.writer.spill()

    def close(self, timeout_s: float | None = None) -> None:
        self.builder.close(timeout_s)
        self.writer.spill()  # what the builder handed over since the first spill
        self.writer.close(timeout_s=timeout_s)


def close_at_exit(kept: DrainFirst, job_id: str | None) -> None:
    """At interpreter exit, for a run that never reached train end (training raised): the builder's
    batches become rows, the job (main process) is marked failed, and every row is stored or kept."""
    if not kept.closed:
        kept.builder.close(60.0)
        if job_id is not None:
            kept.finish_job(job_id, status="failed")
        kept.writer.close(timeout_s=60.0)


def generation_number(global_step: int, calls: int, shape: RunShape) -> int:
    """Which generation batch a reward call scored, counted from the run's first: the same on every rank,
    and after a resume it neither reuses the number of a batch that trained a kept step nor skips one.

    The trainer generates at every `generate_every`-th micro-batch of this process, counting from the
    step it started at (`origin`): a run resumed mid-batch regenerates at once. Before `origin` the run
    had begun `ceil(origin * accumulation / every)` batches; a resumed batch numbered like one of the
    interrupted run's replaces it, as the steps it trained were discarded by the resume. `calls` is the
    number of earlier reward calls at this `global_step` (several batches a step when
    `steps_per_generation` < `gradient_accumulation_steps`).
    """
    every, accumulation, origin = shape.generate_every, shape.accumulation, shape.origin
    before = -(-origin * accumulation // every)
    return before + -(-(global_step - origin) * accumulation // every) + calls


def run_shape(args: Any, tokenizer: Any, model: Any, origin: int = 0) -> RunShape:
    """Group size, reward weights, generation cadence and the ids that end a completion, from the
    trainer's arguments, tokenizer and model (as GRPOTrainer derives them); `origin` is the step the run
    starts at (after a resume, the checkpoint's)."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    count = getattr(args, "num_generations", None)
    if not isinstance(count, int) or count < 1:
        raise ConfigError(
            f"num_generations={count!r}: RolloutRecorder needs a GRPO-style trainer's arguments (GRPOConfig)"
        )
    weights = getattr(args, "reward_weights", None)
    accumulation = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
    per_generation = int(getattr(args, "steps_per_generation", None) or accumulation)
    every = per_generation * int(getattr(args, "num_iterations", 1) or 1)
    return RunShape(
        num_generations=count,
        weights=[float(w) for w in weights] if weights else [],
        accumulation=accumulation,
        generate_every=every,
        stop_ids=stop_ids(tokenizer, model),
        tokenizer=tokenizer,
        chat_kwargs=dict(getattr(args, "chat_template_kwargs", None) or {}),
        model=model,
        origin=int(origin),
    )


def stop_ids(tokenizer: Any, model: Any) -> frozenset[int]:
    """The ids whose presence at a completion's end means it was not cut short: eos and pad, as TRL."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    ids += [getattr(tokenizer, "eos_token_id", None), getattr(tokenizer, "pad_token_id", None)]
    return frozenset(int(i) for i in ids if i is not None)


def render_prompt(prompt: Any, tokenizer: Any, chat_kwargs: Mapping[str, Any]) -> str:
    """A prompt as text: chat turns through the tokenizer's chat template (as the trainer renders them)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=False, **chat_kwargs
        )
    if isinstance(prompt, list):
        turns = [turn for turn in prompt if isinstance(turn, dict)]
        return "\n".join(f"{turn.get('role')}: {turn.get('content')}" for turn in turns)
    return str(prompt)


def completion_text(completion: Any) -> str:
    """A completion as text: a conversational one is its turns' contents joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(turn.get("content") or "") for turn in completion if isinstance(turn, dict))
    return str(completion)


def prompt_id(given: Any, prompt: str) -> str:
    """The dataset's id of the prompt, else a hash of its rendered text (stable across runs)."""
    if given is not None:
        return str(given)
    return "sha1:" + hashlib.sha1(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def reward_number(value: Any) -> float | None:
    """A reward as a float; None (and NaN) for a function that did not score this completion."""
    if value is None:
        return None
    number = float(value)
    return None if number != number else number


def weighted_total(values: list[float | None], weights: list[float]) -> float | None:
    """The total the trainer optimises: the weighted sum, skipping functions that gave None; None
    when none scored (as TRL's nansum with its all-NaN rows marked)."""
    weights = weights or [1.0] * len(values)
    scored = [w * v for w, v in zip(weights, values, strict=True) if v is not None]
    return sum(scored) if scored else None


def text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def is_column(value: Any, length: int) -> bool:
    return isinstance(value, list) and len(value) == length


def as_list(values: Any) -> Any:
    """The function's values as the trainer gets them: a generator is read once into a list."""
    return values if isinstance(values, Sequence) or hasattr(values, "tolist") else list(values)


def reward_name(func: Any) -> str:
    """The name TRL logs a reward function under (partials unwrapped, else the class name)."""
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def named_like(wrapper: Callable, func: Callable) -> Callable:
    """The wrapper under the function's name, so TRL logs `rewards/<name>` as it would without it."""
    wrapper.__name__ = wrapper.__qualname__ = reward_name(func)
    wrapper.__doc__ = getattr(func, "__doc__", None)
    wrapper.__wrapped__ = func
    return wrapper


def is_module(func: Any) -> bool:
    return any(
        cls.__name__ == "Module" and cls.__module__.startswith("torch.nn") for cls in type(func).__mro__
    )


def is_async(func: Any) -> bool:
    """True for an async function, a partial of one, or an object whose `__call__` is one: TRL awaits
    those, so their wrapper must be async too."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)
