"""Long pure-Python loops of the background threads (building rollout rows, making rows storable) run
in short pieces, with the interpreter lock handed back between pieces.

A thread keeps the interpreter lock until it blocks or until another thread has waited
`sys.getswitchinterval()` (5 ms by default) for it. The training thread asks for it again after every
torch call that released it, so a background loop over thousands of rows could make it wait up to
those 5 ms, again and again, while the loop ran. A short sleep between pieces lets a waiting training
thread take the lock at once: its wait is bounded by one piece (a fraction of a millisecond), and the
background work only takes a little longer. The switch interval itself is left alone: it is the
process's, and the user's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

PIECE = 32
"""Items per piece: about 0.1 to 0.5 ms of row building."""
PAUSE_S = 0.0001
"""The sleep between pieces; any sleep releases the lock, a non-zero one also leaves the core to the
thread that waited (a zero one takes the lock back before the waiter has run)."""

Item = TypeVar("Item")


def in_pieces(items: Sequence[Item], size: int = PIECE) -> Iterator[Sequence[Item]]:
    """`items` in slices of `size`, sleeping `PAUSE_S` between two slices (not before the first)."""
    for start in range(0, len(items), size):
        if start:
            time.sleep(PAUSE_S)
        yield items[start : start + size]
