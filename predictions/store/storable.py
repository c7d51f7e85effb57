"""Text every store can hold: the same replacement on SQLite and Postgres, counted so it stays visible.

Postgres `text` refuses NUL ("\\x00", which byte-level BPE decodes from "Ā", so a model can produce it)
and SQLite's UTF-8 encoder refuses lone surrogates (half an emoji, "\\ud83d"). Either one would make a
store refuse the whole round. Both are replaced with U+FFFD, the Unicode replacement character, before
the writer queues a row, and the row records how many characters were replaced.
"""

from __future__ import annotations

import dataclasses
import re

from predictions.store.records import PredictionRow, RolloutRow

REPLACEMENT = "\ufffd"
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL and any surrogate code point: a str holding one is never valid UTF-8 text on its own."""


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


def storable_row(row: PredictionRow) -> PredictionRow:
    """The row with storable prompt, ground truth and prediction, its replacement count added up."""
    texts, count = storable_fields(
        prompt=row.prompt, ground_truth=row.ground_truth, prediction=row.prediction
    )
    if not count:
        return row
    return dataclasses.replace(row, **texts, text_replacements=row.text_replacements + count)


def storable_rollout(row: RolloutRow) -> RolloutRow:
    """The rollout with storable prompt, prompt id, completion and ground truth, replacements counted."""
    texts, count = storable_fields(
        prompt=row.prompt, prompt_id=row.prompt_id, completion=row.completion, ground_truth=row.ground_truth
    )
    if not count:
        return row
    return dataclasses.replace(row, **texts, text_replacements=row.text_replacements + count)
