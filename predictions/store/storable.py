"""Values every store can hold: the same changes on SQLite and Postgres, counted so they stay visible.

Postgres `text` refuses NUL ("\\x00", which byte-level BPE decodes from "Ā", so a model can produce it)
and SQLite's UTF-8 encoder refuses lone surrogates (half an emoji, "\\ud83d"); JSON has no NaN or
infinity; a 3,000-deep dict breaks every JSON encoder. Any of these would make a store refuse the
whole round. `storable_call` changes every value a store call carries, once, in the writer: such
characters become U+FFFD, NaN and infinities null, anything deeper than `MAX_DEPTH`, longer than
`MAX_TEXT` or wider than `MAX_ITEMS` is cut with a marker text, other objects become their text. A
row counts its changes in `text_replacements`; a job's config in `storable_changes`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from predictions.store.job_details import MAX_NOTE_CHARS, MAX_TAG_CHARS, MAX_TAGS
from predictions.store.records import PredictionRow, RolloutRow

REPLACEMENT = "\ufffd"
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL and any surrogate code point: a str holding one is never valid UTF-8 text on its own."""
MAX_DEPTH = 32
"""Nesting levels kept in metadata, config and scores; deeper values become a marker text."""
MAX_ITEMS = 10_000
"""Items kept per dict or list; the rest are dropped, with a marker item."""
MAX_TEXT = 1_000_000
"""Characters kept per text."""
INT64 = 2**63


def storable(text: str) -> tuple[str, int]:
    """The text with every unstorable character replaced by U+FFFD, and how many were replaced."""
    return UNSTORABLE.subn(REPLACEMENT, text)


def storable_fields(**texts: str | None) -> tuple[dict[str, str | None], int]:
    """Each text made storable (None stays None), and the replacements counted over all of them."""
    total, cleaned = 0, {}
    for name, text in texts.items():
        if text is None:
            cleaned[name] = None
            continue
        cleaned[name], count = storable(text)
        total += count
    return cleaned, total


def storable_rollout(row: RolloutRow) -> RolloutRow:
    """Every field of a rollout storable as `storable_row` makes a row's: texts and ids, the reward
    function names (JSON keys: Postgres's jsonb refuses NUL and lone surrogates too) and user scores;
    the changes added to `text_replacements`. Reward values stay as given: the stores null non-finite
    ones."""
    changes = Changes()
    texts = {
        name: storable_value(getattr(row, name), changes)
        for name in ("job_id", "user_id", "prompt_id", "prompt", "completion", "ground_truth")
    }
    rewards = {storable_text(str(name), changes): value for name, value in (row.rewards or {}).items()}
    scores = storable_scores(row.scores, changes)
    if not changes.count:
        return row
    return dataclasses.replace(
        row, **texts, rewards=rewards, scores=scores, text_replacements=row.text_replacements + changes.count
    )


@dataclasses.dataclass
class Changes:
    """How many values were changed to be storable (characters replaced, numbers nulled, cuts)."""

    count: int = 0


def storable_value(value: Any, changes: Changes, depth: int = 0) -> Any:
    """A JSON-like value every store can keep (see the module docstring); each change counted."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value) if -INT64 <= int(value) < INT64 else cut(changes, "an integer beyond 64 bits")
    if isinstance(value, numbers.Real):
        return finite(float(value), changes)
    if isinstance(value, str):
        return storable_text(value, changes)
    if depth >= MAX_DEPTH:
        return cut(changes, f"deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        items = list(value.items())
        kept = {
            storable_text(str(k), changes): storable_value(v, changes, depth + 1)
            for k, v in items[:MAX_ITEMS]
        }
        if len(items) > MAX_ITEMS:
            kept["…"] = cut(changes, f"{len(items) - MAX_ITEMS} more items")
        return kept
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        kept_items = [storable_value(item, changes, depth + 1) for item in items[:MAX_ITEMS]]
        return kept_items + (
            [cut(changes, f"{len(items) - MAX_ITEMS} more items")] if len(items) > MAX_ITEMS else []
        )
    return storable_text(text_of(value), changes)


def storable_text(text: str, changes: Changes) -> str:
    cleaned, count = storable(text if len(text) <= MAX_TEXT else text[:MAX_TEXT])
    changes.count += count + (len(text) > MAX_TEXT)
    return cleaned if len(text) <= MAX_TEXT else cleaned + f"…[cut: {len(text) - MAX_TEXT} more characters]"


def finite(number: float, changes: Changes) -> float | None:
    if math.isfinite(number):
        return number
    changes.count += 1
    return None


def cut(changes: Changes, what: str) -> str:
    changes.count += 1
    return f"…[cut: {what}]"


def text_of(value: Any) -> str:
    """An object's text (its repr when str() itself fails)."""
    try:
        return str(value)
    except Exception:
        return object.__repr__(value)


def storable_scores(scores: Any, changes: Changes) -> dict[str, float | None] | None:
    """User scores by name: names storable text, values finite floats or null (a non-number too)."""
    if not isinstance(scores, Mapping):
        return None if scores is None else {}
    cleaned = {}
    for name, value in list(scores.items())[:MAX_ITEMS]:
        number = value if isinstance(value, numbers.Real) and not isinstance(value, bool) else None
        if number is None and value is not None:
            changes.count += 1
        cleaned[storable_text(str(name), changes)] = (
            None if number is None else finite(float(number), changes)
        )
    return cleaned


def storable_row(row: PredictionRow) -> PredictionRow:
    """Every field of a row storable: texts, ids, metadata and scores; the changes added to
    `text_replacements`."""
    changes = Changes()
    texts = {
        name: storable_value(getattr(row, name), changes)
        for name in ("job_id", "user_id", "prompt", "ground_truth", "prediction")
    }
    metadata = storable_value(row.metadata, changes)
    scores = storable_scores(row.scores, changes)
    if not changes.count:
        return row
    return dataclasses.replace(
        row,
        **texts,
        metadata=metadata if isinstance(metadata, dict | None) else {"value": metadata},
        scores=scores,
        text_replacements=row.text_replacements + changes.count,
    )


def storable_job(job_id: str, details: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A job id and its start details (name, model, config, user id, tags, note) storable; the changes
    counted in the config's `storable_changes`."""
    changes = Changes()
    job_id = storable_value(job_id, changes)
    cleaned = {
        name: storable_value(value, changes)
        for name, value in details.items()
        if name not in ("tags", "note")
    }
    if "tags" in details or "note" in details:
        tags, note = storable_details(details.get("tags"), details.get("note"), changes)
        cleaned |= {name: value for name, value in (("tags", tags), ("note", note)) if name in details}
    if changes.count and "config" in details:
        config = cleaned.get("config")
        config = config if isinstance(config, dict) else {"value": config} if config is not None else {}
        cleaned["config"] = {**config, "storable_changes": changes.count}
    return job_id, cleaned


def storable_details(
    tags: Any, note: Any, changes: Changes | None = None
) -> tuple[list[str] | None, str | None]:
    """A job's tags and note every store can keep (`predictions.store.job_details` checks them first):
    texts storable, each tag cut to `MAX_TAG_CHARS`, at most `MAX_TAGS` distinct ones, the note cut to
    `MAX_NOTE_CHARS`; None stays None (the job's own are kept). Each change counted in `changes`."""
    changes = changes if changes is not None else Changes()
    kept = None
    if tags is not None:
        texts = [_capped(storable_text(text_of(tag), changes), MAX_TAG_CHARS, changes) for tag in list(tags)]
        kept = list(dict.fromkeys(text for text in texts if text))  # empty and repeated tags say nothing
        changes.count += max(0, len(kept) - MAX_TAGS)
        kept = kept[:MAX_TAGS]
    if note is not None:
        note = _capped(storable_text(text_of(note), changes), MAX_NOTE_CHARS, changes)
    return kept, note


def _capped(text: str, limit: int, changes: Changes) -> str:
    if len(text) <= limit:
        return text
    changes.count += 1
    return text[:limit]
