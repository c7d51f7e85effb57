"""A tracked sample, as generation and scoring see it: the record shared by the training loop and the
user's scorers, so the file that reads datasets (training/samples.py) is not needed to score one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Messages = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Sample:
    """One tracked sample: its row index, the prompt as readable text, its ground truth, its whole row
    (what user scorers get) and the fields of it kept with every stored row.

    `messages` holds the prompt's chat turns when the row is conversational (TRL renders those with
    the chat template); it is None for a plain-text prompt, which TRL feeds to the model as it is.
    """

    index: int
    prompt: str
    ground_truth: str | None
    messages: Messages | None = None
    record: Mapping[str, Any] | None = None
    metadata: dict[str, Any] | None = None
