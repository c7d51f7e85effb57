"""`PredictionsConfig`: every option of the callback, validated once, at construction.

A typo or a bad value fails before training starts, with a message naming the option, the value and
what would be valid; after that, monitoring never stops a run.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from predictions.errors import ConfigError
from predictions.scoring.metrics import PRIMARY_METRIC, REGISTRY
from predictions.scoring.names import CUSTOM_NAME
from predictions.scoring.user_scorers import check_scorers, describe
from predictions.store.job_details import check_note, check_tags
from predictions.store.protocol import Store

CHAT_TEMPLATE_MODES = ("auto", "on", "off")
DEFAULT_NUM_SAMPLES = 16
RESERVED_GENERATION_KWARGS = ("max_new_tokens", "input_ids", "attention_mask", "tokenizer")
"""Set by their own options or by the generator (which hands `generate` the tokenizer for `stop_strings`);
not allowed in `generation_kwargs`."""
NOT_RECORDED = ("store", "tags", "note")
"""Options not kept in the job's config: the store, and what the job keeps in its own columns."""


@dataclass
class PredictionsConfig:
    """What is tracked, how it is generated, and where it is written.

    Attributes:
        num_samples: how many samples are tracked (ignored when `sample_indices` is given); by
            default 16, or every row of a smaller source.
        seed: picks the tracked samples; the same seed picks the same samples in every run.
        sample_indices: track exactly these rows of the source instead of a seeded pick.
        prompt_field: the field holding the prompt (default: `prompt`).
        response_field: the ground truth field (default: `response`, `completion` or `answer`).
        messages_field: a chat field (a list of role/content turns); the last assistant turn is
            the ground truth, the turns before it the prompt (default: `messages` when present).
        use_chat_template: "auto" renders prompts as TRL's SFTTrainer does: conversational rows
            (chat turns) with the chat template and a generation prompt, plain-text prompts as they
            are. "on" applies the template to every prompt (it must exist); "off" feeds the raw text.
            True and False mean "on" and "off".
        max_new_tokens: the longest answer generated.
        max_prompt_tokens: prompts are cut to their last this-many tokens.
        batch_size: prompts generated together (32: the fastest on the CPU, docs/benchmarks.md).
        generation_kwargs: extra `model.generate` arguments; greedy decoding when empty. One answer
            is stored per sample, so `num_return_sequences` must stay 1. `stop_strings` works as
            given (the monitor passes the tokenizer) and the answer is cut before the first one.
        every_n_steps: also run a round every N optimizer steps; None runs one at each epoch end only.
            `PredictionsMonitor` honours it in `step()`, called after every optimizer step.
        job_id: the run's id in the store (default: a new id for every run). An id that already has
            rounds continues that job only when training resumes from a checkpoint.
        job_name: the name the dashboard shows (default: the TrainingArguments run_name, else the id).
        user_id: the owner written with every row (default: the store's local user).
        tags: short labels for the job (at most 20, up to 40 characters each), shown beside its name
            and searched by the dashboard's job picker.
        note: a few words about the job (up to 2,000 characters): why it was run, what changed.
            Tags and note are set when the job has none; its owner edits them on the dashboard, and
            a resumed run keeps the edited ones.
        stop_after_regressions: stop training once the round's average of `stop_metric` has got
            worse this many rounds in a row; None never stops. The job is then marked `stopped`, with
            the reason.
        stop_metric: the metric `stop_after_regressions` watches: a built-in metric with a direction (not
            length_ratio, whose best is 1) or one of your `scorers`, judged in its own direction
            (default: char_error_rate, where higher is worse).
        scorers: your own metrics, by name: functions `(prediction, ground_truth, sample) -> float |
            bool | None` (or objects with that `__call__` and optional `title`, `higher_is_better`),
            run on the main process's scoring thread each round, beside training (so never drawing
            from the global random generators); see `predictions.scorers` for ready-made ones.
        metadata_fields: sample fields kept with every stored row (a `category`, say), so the
            dashboard can split trends by their values.
        store: where rows go (default: `open_store()`, opened at train begin on the main process).
    """

    num_samples: int | None = None
    seed: int = 42
    sample_indices: Sequence[int] | None = None
    prompt_field: str | None = None
    response_field: str | None = None
    messages_field: str | None = None
    use_chat_template: str | bool = "auto"
    max_new_tokens: int = 64
    max_prompt_tokens: int = 512
    batch_size: int = 32
    generation_kwargs: Mapping[str, Any] = field(default_factory=dict)
    every_n_steps: int | None = None
    job_id: str | None = None
    job_name: str | None = None
    user_id: str | None = None
    tags: Sequence[str] | None = None
    note: str | None = None
    stop_after_regressions: int | None = None
    stop_metric: str | None = None
    scorers: Mapping[str, Any] | None = None
    metadata_fields: Sequence[str] | None = None
    store: Store | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "max_prompt_tokens", "batch_size"):
            _check_positive_int(name, getattr(self, name), optional=False)
        for name in ("num_samples", "every_n_steps", "stop_after_regressions"):
            _check_positive_int(name, getattr(self, name), optional=True)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed={self.seed!r} is invalid; valid: an integer")
        for name in ("prompt_field", "response_field", "messages_field", "job_id", "job_name", "user_id"):
            _check_text(name, getattr(self, name))
        self.sample_indices = _check_indices(self.sample_indices)
        self.use_chat_template = _check_chat_mode(self.use_chat_template)
        self.generation_kwargs = _check_generation_kwargs(self.generation_kwargs)
        self.scorers = check_scorers(self.scorers)
        self.metadata_fields = _check_metadata_fields(self.metadata_fields)
        self.tags = check_tags(self.tags)
        self.note = check_note(self.note)
        self._check_fields_agree()
        self._check_stop_metric()
        _check_store(self.store)

    def _check_fields_agree(self) -> None:
        """A chat field and a prompt field describe two formats; asking for both is a mistake."""
        if self.messages_field and (self.prompt_field or self.response_field):
            raise ConfigError(
                f"messages_field={self.messages_field!r} cannot be combined with prompt_field or "
                "response_field; valid: a chat messages field, or prompt/response fields"
            )

    def _check_stop_metric(self) -> None:
        """A metric this run computes, and only with the rule that uses it."""
        name = self.stop_metric
        if name is None:
            return
        valid = [*(m for m in REGISTRY if REGISTRY[m].ideal is None), *self.scorers]
        if name not in valid:
            builtin = REGISTRY.get(name)
            why = (
                f"has an ideal value ({builtin.ideal}), not a direction, so no round is 'worse'"
                if builtin is not None
                else "is not a metric of this run"
            )
            raise ConfigError(f"stop_metric={name!r} {why}; valid: {', '.join(map(repr, valid))}")
        if self.stop_after_regressions is None:
            raise ConfigError(
                f"stop_metric={name!r} is set but stop_after_regressions is None, so nothing would stop; "
                "valid: set stop_after_regressions (e.g. 3) too, or leave stop_metric out"
            )

    @property
    def watched_metric(self) -> tuple[str, bool]:
        """The metric the early-stop rule watches and whether lower is better (from the registry or
        the scorer's `higher_is_better`)."""
        name = self.stop_metric or PRIMARY_METRIC
        if name in REGISTRY:
            return name, REGISTRY[name].lower_is_better
        return name, not describe({name: self.scorers[name]})[name]["higher_is_better"]

    @classmethod
    def from_options(cls, **options: Any) -> PredictionsConfig:
        """Build from keyword options, rejecting unknown names with the closest valid ones."""
        valid = [f.name for f in fields(cls)]
        for name in options:
            if name not in valid:
                close = difflib.get_close_matches(name, valid, n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise ConfigError(f"{name!r} is not an option; {hint}valid: {', '.join(valid)}")
        return cls(**options)

    def as_dict(self) -> dict[str, Any]:
        """The options as JSON-ready data for the job record; the store itself is left out, and so are the
        tags and note, which the job keeps in their own columns (its owner may edit them)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NOT_RECORDED}
        data["sample_indices"] = list(self.sample_indices) if self.sample_indices is not None else None
        data["generation_kwargs"] = {str(k): jsonable(v) for k, v in self.generation_kwargs.items()}
        data["scorers"] = describe(self.scorers)
        data["metadata_fields"] = list(self.metadata_fields) if self.metadata_fields else None
        return data


def _check_positive_int(name: str, value: Any, *, optional: bool) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        valid = "None or an integer >= 1" if optional else "an integer >= 1"
        raise ConfigError(f"{name}={value!r} is invalid; valid: {valid}")


def _check_text(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{name}={value!r} is invalid; valid: None or a non-empty string")


def _check_indices(value: Any) -> tuple[int, ...] | None:
    """Unique non-negative integers, at least one, kept in the order given."""
    if value is None:
        return None
    valid = "None or a non-empty list of distinct integers >= 0"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"sample_indices={value!r} is invalid; valid: {valid}")
    bad = [i for i in value if not isinstance(i, int) or isinstance(i, bool) or i < 0]
    if bad or len(set(value)) != len(value):
        raise ConfigError(f"sample_indices={list(value)!r} is invalid; valid: {valid}")
    return tuple(value)


def _check_chat_mode(value: Any) -> str:
    if value is True or value is False:
        return "on" if value else "off"
    if value not in CHAT_TEMPLATE_MODES:
        raise ConfigError(
            f"use_chat_template={value!r} is invalid; valid: {', '.join(map(repr, CHAT_TEMPLATE_MODES))}, "
            "True or False"
        )
    return value


def _check_generation_kwargs(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"generation_kwargs={value!r} is invalid; valid: a dict of generate() arguments")
    reserved = [key for key in value if key in RESERVED_GENERATION_KWARGS]
    if reserved:
        raise ConfigError(
            f"generation_kwargs sets {', '.join(reserved)}; valid: any generate() argument except "
            f"{', '.join(RESERVED_GENERATION_KWARGS)} (use the max_new_tokens option; the tokenizer is "
            "passed to generate() for you)"
        )
    _check_generation_values(value)
    return dict(value)


def _check_generation_values(value: Mapping[str, Any]) -> None:
    """Values that fail or mislead in every round; anything else is tried once at train begin."""
    count = value.get("num_return_sequences", 1)
    if count != 1:
        raise ConfigError(
            f"generation_kwargs num_return_sequences={count!r} is not supported: one answer is stored per "
            "sample and round; valid: 1 (leave it out)"
        )
    temperature = value.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or temperature <= 0):
        raise ConfigError(f"generation_kwargs temperature={temperature!r} is invalid; valid: a number > 0")


def _check_metadata_fields(value: Any) -> tuple[str, ...] | None:
    """Distinct field names usable as a JSON key in SQL: letters, digits and _."""
    if value is None:
        return None
    valid = "None or a list of distinct field names (letters, digits and _, not starting with a digit)"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"metadata_fields={value!r} is invalid; valid: {valid}")
    bad = [name for name in value if not isinstance(name, str) or not CUSTOM_NAME.fullmatch(name)]
    if bad or len(set(value)) != len(value):
        raise ConfigError(f"metadata_fields={list(value)!r} is invalid; valid: {valid}")
    return tuple(value)


def _check_store(store: object) -> None:
    if store is not None and not isinstance(store, Store):
        raise ConfigError(
            f"store={store!r} is invalid; valid: None (open_store()) or a Store with write_predictions, "
            "start_job, finish_job and the reads of predictions.store.protocol.Store"
        )


def jsonable(value: Any) -> Any:
    """JSON data as it is; anything else summarised by its type (a tokenizer's repr runs to pages)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if type(value) in (list, tuple):  # a LogitsProcessorList is a list of objects: summarised
        return [jsonable(item) for item in value]
    if type(value) is dict:
        return {str(key): jsonable(item) for key, item in value.items()}
    return f"<{type(value).__name__}>"
