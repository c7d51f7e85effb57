"""Where a store's outbox goes when its own place cannot be written (`delivery.outbox_place`): a file
per store in the user cache, that any store name can have and no other store shares."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from predictions.delivery import outbox_place
from predictions.delivery.outbox import Key, Outbox
from predictions.store.identity import LOCAL_OWNER, sqlite_identity

NAMES = st.text(
    st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)), min_size=1, max_size=60
)
"""A folder or file name as a user may give one (any character a Linux path component may hold)."""


@settings(max_examples=150)
@given(first=st.lists(NAMES, min_size=1, max_size=3), second=st.lists(NAMES, min_size=1, max_size=3))
def test_two_store_files_never_share_a_fallback_outbox_and_any_name_gets_one(tmp_path_factory, first, second):
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "predictions" / outbox_place.FALLBACK_FOLDER
    root = tmp_path_factory.getbasetemp()
    stores = [sqlite_identity(root.joinpath(*parts))[0] for parts in (first, second)]
    fallbacks = [outbox_place.fallback_path(store) for store in stores]
    assert all(path.parent == cache and len(path.name.encode()) < 80 for path in fallbacks)
    assert (fallbacks[0] == fallbacks[1]) == (stores[0] == stores[1])
    Outbox(fallbacks[0]).append(Key(stores[0], LOCAL_OWNER), [{"op": "finish_job", "job_id": "j"}])
    assert Outbox(fallbacks[0]).count(Key(stores[0], LOCAL_OWNER)) >= 1  # a file that can be made


def test_a_store_whose_outbox_can_be_kept_beside_it_keeps_it_there(tmp_path, monkeypatch):
    monkeypatch.delenv("PREDICTIONS_SPOOL", raising=False)
    store = sqlite_identity(tmp_path / "p.db")[0]
    assert outbox_place.choose(store) == outbox_place.Place(tmp_path / "p.outbox.db")
    assert outbox_place.places(store) == [tmp_path / "p.outbox.db"]  # no fallback made: none to look in
