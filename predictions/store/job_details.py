"""A job's tags and note: what a person adds to a run to find it again and say why it was run.

Set from training (`PredictionsCallback(..., tags=[...], note=...)`, `RolloutRecorder`) and edited on
the dashboard by the job's owner. Checked here, once, with the same rules for both ways in and both
stores; `predictions.store.storable` then makes them storable (NUL and lone surrogates replaced).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from predictions.errors import ConfigError

MAX_TAGS = 20
"""Tags a job may have: enough to say what a run is, few enough to show beside its name."""
MAX_TAG_CHARS = 40
"""Characters per tag (after surrounding whitespace is dropped and inner runs made one space)."""
MAX_NOTE_CHARS = 2000
"""Characters of a job's note: a few paragraphs. The job list carries notes, so they stay short."""


def check_tags(value: Any, option: str = "tags") -> tuple[str, ...] | None:
    """Tags as stored: each trimmed, inner whitespace (newlines included) made one space, duplicates
    dropped in order; None stays None (leave the job's tags as they are). ConfigError names `option`."""
    if value is None:
        return None
    valid = f"None or a list of at most {MAX_TAGS} non-empty strings of up to {MAX_TAG_CHARS} characters"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(f"{option}={value!r} is invalid; valid: {valid} (a single tag goes in a list)")
    if not all(isinstance(tag, str) for tag in value):
        raise ConfigError(f"{option}={list(value)!r} is invalid; valid: {valid}")
    tags = tuple(dict.fromkeys(" ".join(tag.split()) for tag in value))
    bad = [tag for tag in tags if not tag or len(tag) > MAX_TAG_CHARS]
    if bad or len(tags) > MAX_TAGS:
        shown = f"{len(tags)} tags" if not bad else f"tag {bad[0]!r}"
        raise ConfigError(f"{option} has {shown}, which is invalid; valid: {valid}")
    return tags


def check_note(value: Any, option: str = "note") -> str | None:
    """The note as stored (surrounding whitespace dropped); None leaves the job's note as it is, "" clears
    it. ConfigError names `option`."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value.strip()) > MAX_NOTE_CHARS:
        shown = f"a {len(value.strip()):,}-character text" if isinstance(value, str) else repr(value)
        raise ConfigError(
            f"{option}={shown} is invalid; valid: None or a text of up to {MAX_NOTE_CHARS:,} characters"
        )
    return value.strip()


def job_tags(stored: Any) -> tuple[str, ...]:
    """Tags as a store read them (a JSON list, or nothing), for `Job.tags`."""
    return tuple(str(tag) for tag in stored) if isinstance(stored, list) else ()


def job_details(tags: Sequence[str] | None, note: str | None) -> dict[str, Any]:
    """The `tags` and `note` arguments of a job's start, those given only (None leaves the job's own)."""
    return {name: value for name, value in (("tags", tags), ("note", note)) if value is not None}
