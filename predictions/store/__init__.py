"""Stores: the `Store` protocol, the embedded SQLite default, Supabase, and `open_store()`."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import find_dotenv, load_dotenv

from predictions.errors import ConfigError
from predictions.store.identity import sqlite_identity, supabase_identity
from predictions.store.ingest_keys import INGEST_KEY_ENV
from predictions.store.protocol import Store
from predictions.store.records import Job, PageQuery, PredictionPage, PredictionRow, Trends
from predictions.store.sqlite import DEFAULT_DB_PATH, SQLiteStore

__all__ = [
    "DEFAULT_DB_PATH",
    "Job",
    "PageQuery",
    "PredictionPage",
    "PredictionRow",
    "SQLiteStore",
    "Store",
    "Trends",
    "open_store",
]


def open_store(*, env_file: str | os.PathLike[str] | None = None) -> Store:
    """The store the environment (and a `.env` file) points at: Supabase if configured, else SQLite.

    SUPABASE_URL with SUPABASE_KEY selects Supabase: the anon key with PREDICTIONS_INGEST_KEY writes
    as the ingest key's user (the key is checked now: a wrong or revoked one is an AuthError), the
    anon key alone needs a sign-in, the service-role key writes for the user PREDICTIONS_USER_ID.
    Otherwise the SQLite file at PREDICTIONS_DB (default `DEFAULT_DB_PATH`). Variables already set
    win over the `.env` file.
    """
    load_dotenv(env_file or find_dotenv(usecwd=True), override=False)
    url, key = os.environ.get("SUPABASE_URL", ""), os.environ.get("SUPABASE_KEY", "")
    ingest_key = os.environ.get(INGEST_KEY_ENV, "")
    if ingest_key and not (url and key):
        raise ConfigError(
            f"{INGEST_KEY_ENV} is set but SUPABASE_URL or SUPABASE_KEY is not; an ingest key writes to "
            "Supabase: set SUPABASE_URL and SUPABASE_KEY (the anon or publishable key) too"
        )
    if url or key:
        if not (url and key):
            missing = "SUPABASE_KEY" if url else "SUPABASE_URL"
            raise ConfigError(
                f"{missing} is not set but {'SUPABASE_URL' if url else 'SUPABASE_KEY'} is; set both to "
                "use Supabase, or neither to use the embedded SQLite store"
            )
        from predictions.store.supabase import SupabaseStore

        return SupabaseStore(url, key, ingest_key=ingest_key or None)
    return SQLiteStore(Path(os.environ.get("PREDICTIONS_DB") or DEFAULT_DB_PATH))


def outbox_key_from_env(user_id: str | None = None) -> tuple[str, str]:
    """The (store, owner) `open_store()` would give, without opening it (no network, no file)."""
    load_dotenv(find_dotenv(usecwd=True), override=False)
    url, key = os.environ.get("SUPABASE_URL", ""), os.environ.get("SUPABASE_KEY", "")
    if url and key:
        from predictions.store.supabase import USER_ID_ENV, key_role

        return supabase_identity(
            url,
            role=key_role(key),
            ingest_key=os.environ.get(INGEST_KEY_ENV) or None,
            user_id=user_id or os.environ.get(USER_ID_ENV) or None,
        )
    return sqlite_identity(Path(os.environ.get("PREDICTIONS_DB") or DEFAULT_DB_PATH))
