"""Which samples are tracked: picked once, seeded, so every round (and every rerun) shows the same ones.

Sources: a `datasets.Dataset`, a list of dicts, or a JSONL, JSON or CSV path. Formats are TRL's
shapes: chat `messages` (the last assistant turn is the ground truth), or a `prompt` with a
`completion` (or `response`, `answer`), each plain text or a list of chat turns. A preference dataset
(DPO, ORPO, KTO-style pairs: `prompt`, `chosen`, `rejected`) is asked its prompt and scored against
`chosen`; without a `prompt` field, a conversational `chosen` is read as a chat. A language-modelling
`text` dataset has no prompt to ask, so it is refused with the fields to add.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from predictions.config import DEFAULT_NUM_SAMPLES, PredictionsConfig
from predictions.errors import ConfigError, DatasetError
from predictions.scoring.sample import Messages, Sample

logger = logging.getLogger(__name__)

RESPONSE_FIELDS = ("response", "completion", "answer", "chosen")
"""Ground truth fields, in order of preference; `chosen` is a preference dataset's preferred answer."""
PATH_SUFFIXES = (".jsonl", ".json", ".csv")


def check_source(source: Any) -> None:
    """Fail at construction on a source of the wrong kind; its contents are checked at train begin."""
    if isinstance(source, str | os.PathLike):
        if Path(source).suffix.lower() not in PATH_SUFFIXES:
            raise ConfigError(
                f"samples={str(source)!r} has an unknown suffix; valid: {', '.join(PATH_SUFFIXES)}"
            )
        return
    if hasattr(source, "column_names") or (isinstance(source, Sequence) and not isinstance(source, bytes)):
        return
    raise ConfigError(
        f"samples={type(source).__name__} is invalid; valid: a datasets.Dataset, a list of dicts, "
        "or a .jsonl, .json or .csv path"
    )


def select_samples(source: Any, config: PredictionsConfig) -> list[Sample]:
    """The tracked samples, in row order; raises DatasetError on a missing field or too few rows."""
    records = load_records(source)
    indices = pick_indices(len(records), config)
    fields = field_names(records)
    for name in config.metadata_fields or ():
        _require(name, fields)
    chat_field = config.messages_field or _default_chat_field(records, fields, config)
    if chat_field:
        name = chat_field
        _require(name, fields)
        samples = [chat_sample(i, records[i][name], name) for i in indices]
    else:
        prompt_name, response_name = prompt_fields(fields, config)
        samples = [prompt_sample(i, records[i], prompt_name, response_name) for i in indices]
    return [with_record(sample, records[sample.index], config.metadata_fields) for sample in samples]


def _default_chat_field(records: Any, fields: list[str], config: PredictionsConfig) -> str | None:
    """`messages` when present; else a preference dataset's conversational `chosen` with no `prompt`
    (TRL's implicit prompt: the turns before the last assistant turn are the prompt)."""
    if config.prompt_field:
        return None
    if "messages" in fields:
        return "messages"
    if (
        "prompt" not in fields
        and "chosen" in fields
        and len(records)
        and isinstance(records[0]["chosen"], list)
    ):
        return "chosen"
    return None


def with_record(sample: Sample, record: Mapping[str, Any], metadata_fields: Sequence[str] | None) -> Sample:
    """The sample with its row (for user scorers) and the metadata fields kept with its stored rows."""
    row = dict(record)
    metadata = {name: _json_scalar(row.get(name)) for name in metadata_fields or ()}
    return replace(sample, record=row, metadata=metadata or None)


def _json_scalar(value: Any) -> Any:
    """A metadata value as JSON keeps it: text, numbers, bools and None as they are, others as text."""
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def load_records(source: Any) -> Sequence[Mapping[str, Any]]:
    """Rows from a Dataset or list as they are, or read from a JSONL, JSON or CSV file."""
    if not isinstance(source, str | os.PathLike):
        return source
    path = Path(source)
    if not path.is_file():
        raise DatasetError(f"samples path {str(path)!r} does not exist or is not a file")
    try:
        return _read_file(path)
    except (OSError, ValueError, csv.Error) as error:
        raise DatasetError(f"cannot read samples from {str(path)!r}: {error}") from error


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            return list(csv.DictReader(handle))
        if suffix == ".jsonl":
            return [json.loads(line) for line in handle if line.strip()]
        data = json.load(handle)
    if not isinstance(data, list):
        raise ValueError("a .json samples file must hold a list of objects")
    return data


def pick_indices(count: int, config: PredictionsConfig) -> list[int]:
    """`sample_indices` as given, else `num_samples` rows drawn with `seed`, sorted."""
    if config.sample_indices is not None:
        out_of_range = [i for i in config.sample_indices if i >= count]
        if out_of_range:
            raise DatasetError(f"sample_indices {out_of_range} are out of range: the source has {count} rows")
        return list(config.sample_indices)
    return sorted(random.Random(config.seed).sample(range(count), sample_count(count, config.num_samples)))


def sample_count(count: int, num_samples: int | None) -> int:
    """An explicit `num_samples` must fit the source; the default tracks every row of a smaller one."""
    if num_samples is None and count < DEFAULT_NUM_SAMPLES:
        logger.info(
            "the samples have %s rows, fewer than the default %s: all are tracked", count, DEFAULT_NUM_SAMPLES
        )
        return count
    wanted = num_samples or DEFAULT_NUM_SAMPLES
    if count < wanted:
        raise DatasetError(
            f"num_samples={wanted} but the source has only {count} rows; valid: num_samples <= {count}"
        )
    return wanted


def field_names(records: Any) -> list[str]:
    """The fields of the source: a Dataset's columns, or the keys of its first row."""
    if hasattr(records, "column_names"):
        return list(records.column_names)
    if not records or not isinstance(records[0], Mapping):
        raise DatasetError("the samples must be a non-empty list of dicts (rows)")
    return list(records[0].keys())


def prompt_fields(fields: list[str], config: PredictionsConfig) -> tuple[str, str | None]:
    """The prompt field and the ground truth field (None when the source has none)."""
    prompt_name = config.prompt_field or "prompt"
    if prompt_name not in fields and "text" in fields and not config.prompt_field:
        raise DatasetError(
            "the samples are a language-modelling dataset ('text'): nothing says where the prompt ends; "
            "valid: add 'prompt' and 'completion' fields (or a 'messages' list of chat turns), or name "
            f"yours with prompt_field= and response_field=; fields: {', '.join(map(repr, fields))}"
        )
    _require(prompt_name, fields)
    if config.response_field:
        _require(config.response_field, fields)
        return prompt_name, config.response_field
    return prompt_name, next((name for name in RESPONSE_FIELDS if name in fields), None)


def _require(name: str, fields: list[str]) -> None:
    if name not in fields:
        raise DatasetError(f"the samples have no field {name!r}; fields: {', '.join(map(repr, fields))}")


def prompt_sample(index: int, row: Mapping[str, Any], prompt_name: str, response_name: str | None) -> Sample:
    """A prompt/completion row: plain text, or TRL's conversational form (lists of chat turns)."""
    prompt = row.get(prompt_name)
    truth = completion_text(index, row.get(response_name), response_name) if response_name else None
    if isinstance(prompt, str):
        return Sample(index, prompt, truth)
    if isinstance(prompt, list):
        turns = _check_turns(index, prompt, prompt_name)
        return Sample(index, render_turns(turns), truth, turns)
    raise DatasetError(f"row {index}: {prompt_name!r} is {prompt!r}; valid: text or a list of chat turns")


def completion_text(index: int, completion: Any, name: str) -> str | None:
    """The ground truth: the text itself, or the assistant turns' content of a conversational one."""
    if completion is None or isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        turns = _check_turns(index, completion, name)
        return "".join(turn["content"] for turn in turns if turn["role"] == "assistant")
    return str(completion)


def chat_sample(index: int, messages: Any, name: str) -> Sample:
    """The turns before the last assistant turn are the prompt; that turn is the ground truth."""
    turns = _check_turns(index, messages, name)
    last = max((i for i, turn in enumerate(turns) if turn["role"] == "assistant"), default=None)
    prompt_turns = turns if last is None else turns[:last]
    truth = None if last is None else turns[last]["content"]
    if not prompt_turns:
        raise DatasetError(f"row {index}: {name!r} has no turn before the assistant's answer")
    return Sample(index, render_turns(prompt_turns), truth, prompt_turns)


def _check_turns(index: int, messages: Any, name: str) -> Messages:
    valid = "a list of {'role': ..., 'content': ...} dicts"
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"row {index}: {name!r} is {messages!r}; valid: {valid}")
    for turn in messages:
        if not isinstance(turn, Mapping) or not {"role", "content"} <= turn.keys():
            raise DatasetError(f"row {index}: {name!r} has the turn {turn!r}; valid: {valid}")
    return [{"role": str(t["role"]), "content": str(t["content"])} for t in messages]


def render_turns(turns: Messages) -> str:
    """Chat turns as readable text, for the store's prompt column and for template-less models."""
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return "\n".join(f"{turn['role']}: {turn['content']}" for turn in turns)
