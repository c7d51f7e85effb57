"""The outbox keeps any call exactly as it was given, in order: every value a user can put in a row
(any text, NUL, lone surrogates, deep nesting, numbers of every size) comes back equal, since an append
is one `INSERT ... SELECT FROM json_each` (delivery/outbox.py) rather than a row per call."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from predictions.delivery.outbox import Key, Outbox, encode

ANY_TEXT = st.text(st.characters(exclude_categories=()))  # lone surrogates and NUL included
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=20,
)
CALLS = st.lists(st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=5), min_size=1, max_size=6)


@settings(max_examples=150)
@given(batches=st.lists(CALLS, min_size=1, max_size=3))
def test_every_call_comes_back_as_it_was_appended_in_order(batches):
    with tempfile.TemporaryDirectory() as folder:
        outbox, key = Outbox(Path(folder) / "outbox.db"), Key("sqlite:/x.db", "local")
        for calls in batches:
            outbox.append(key, calls)
        kept = outbox.claim(key, limit=1000)
        expected = [call for calls in batches for call in calls]
        assert [entry.text for entry in kept] == [encode(call) for call in expected]
        assert [entry.call for entry in kept] == [json.loads(encode(call)) for call in expected]
