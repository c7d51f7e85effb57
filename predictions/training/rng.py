"""Every random number generator training draws from, saved before a round and put back after it.

Sampling rounds (`do_sample=True`) draw from torch's global generators; without this, the next
training step's dropout masks (and anything else drawn from them) would change, and the run's
losses with the monitor would differ from the run without it. Greedy rounds draw nothing, but the
state is put back all the same, so no generation option can change training.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


@contextmanager
def rng_untouched() -> Iterator[None]:
    """Save torch's CPU generator, every initialised CUDA device's, Python's `random` and NumPy's; restore
    them on exit, whatever happened inside (also usable as a decorator)."""
    saved = _capture()
    try:
        yield
    finally:
        _restore(saved)


def _capture() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "random": random.getstate(),
        "numpy": np.random.get_state(),
    }


def _restore(saved: dict[str, Any]) -> None:
    torch.set_rng_state(saved["torch"])
    if saved["cuda"] is not None:
        torch.cuda.set_rng_state_all(saved["cuda"])
    random.setstate(saved["random"])
    np.random.set_state(saved["numpy"])
