"""Stores: the `Store` protocol, the embedded SQLite default, Supabase, and `open_store()`."""

from __future__ import annotations

import os

from predictions.store.protocol import Store
from predictions.store.records import Job, PageQuery, PredictionPage, PredictionRow, Trends
from predictions.store.settings import StoreSettings
from predictions.store.sqlite import DEFAULT_DB_PATH, SQLiteStore

__all__ = [
    "DEFAULT_DB_PATH",
    "Job",
    "PageQuery",
    "PredictionPage",
    "PredictionRow",
    "SQLiteStore",
    "Store",
    "StoreSettings",
    "Trends",
    "open_store",
]


def open_store(*, env_file: str | os.PathLike[str] | None = None) -> Store:
    """The store the environment (and a `.env` file) points at: Supabase if configured, else SQLite.

    The rules are `StoreSettings`': SUPABASE_URL with SUPABASE_KEY selects Supabase (with
    PREDICTIONS_INGEST_KEY a training machine writes as the key's user; the key is checked now),
    otherwise the SQLite file at PREDICTIONS_DB. Variables already set win over the `.env` file.
    """
    return StoreSettings.from_env(env_file).open_store()
