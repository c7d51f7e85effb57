"""The store's settings: which store to open, who writes, where the outbox lives, read once from the
environment and a `.env` file (variables already set win), so that every reader agrees.

`open_store()`, the outbox's location and key, the dashboard's shared store (and its cache key) and
the demo command read `StoreSettings`; nothing else reads these variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values, find_dotenv

from predictions.errors import ConfigError
from predictions.store.identity import sqlite_identity, supabase_identity
from predictions.store.ingest_keys import INGEST_KEY_ENV
from predictions.store.protocol import Store
from predictions.store.sqlite import DEFAULT_DB_PATH, SQLiteStore

ENV_NAMES = {
    "supabase_url": "SUPABASE_URL",
    "supabase_key": "SUPABASE_KEY",
    "ingest_key": INGEST_KEY_ENV,
    "user_id": "PREDICTIONS_USER_ID",
    "db_path": "PREDICTIONS_DB",
    "outbox": "PREDICTIONS_SPOOL",
    "backend": "PREDICTIONS_STORE",
}
"""Each setting's environment variable."""
OUTBOX_NAME = "outbox.db"
BACKENDS = ("sqlite", "supabase")
"""What PREDICTIONS_STORE may name; unset, SUPABASE_URL and SUPABASE_KEY choose."""


@dataclass(frozen=True)
class StoreSettings:
    """Where rows go and as whom. Frozen and hashable: the dashboard keys its shared store on it, so
    any changed setting (keys included) opens a new store. Keys are left out of the repr.

    SUPABASE_URL with SUPABASE_KEY selects Supabase: the anon key with PREDICTIONS_INGEST_KEY writes as
    the ingest key's user, the anon key alone needs a sign-in, the service-role key writes for the
    user PREDICTIONS_USER_ID. Otherwise the SQLite file at PREDICTIONS_DB (default `DEFAULT_DB_PATH`).
    PREDICTIONS_STORE (`BACKENDS`) chooses outright, whatever else is set: `sqlite` reads a local file in
    a folder whose `.env` names Supabase (which an empty variable cannot unset). PREDICTIONS_SPOOL moves
    the outbox of any store.
    """

    supabase_url: str = ""
    supabase_key: str = field(default="", repr=False)
    ingest_key: str = field(default="", repr=False)
    user_id: str = ""
    db_path: str = str(DEFAULT_DB_PATH)
    outbox: str = ""
    backend: str = ""

    @classmethod
    def from_env(
        cls, env_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> StoreSettings:
        """The settings in `environ` (default `os.environ`) over those in `env_file` (default: the
        nearest `.env` from the working directory); neither is changed. Empty values count as unset."""
        path = env_file or find_dotenv(usecwd=True)
        values = {name: value for name, value in (dotenv_values(path) if path else {}).items() if value}
        values.update({name: value for name, value in (environ or os.environ).items() if value})
        return cls(**{setting: values[name] for setting, name in ENV_NAMES.items() if name in values})

    @property
    def uses_supabase(self) -> bool:
        if self.backend:
            return self.backend == "supabase"
        return bool(self.supabase_url or self.supabase_key)

    def check(self) -> None:
        """ConfigError, naming the variables to set, unless the settings name one store."""
        if self.backend and self.backend not in BACKENDS:
            raise ConfigError(
                f"PREDICTIONS_STORE={self.backend!r} is invalid; valid: {' or '.join(BACKENDS)}, or unset "
                "(Supabase where SUPABASE_URL and SUPABASE_KEY are set, else SQLite)"
            )
        if self.backend == "sqlite":
            return  # chosen outright: whatever names Supabase is left unused
        if self.ingest_key and not (self.supabase_url and self.supabase_key):
            raise ConfigError(
                f"{INGEST_KEY_ENV} is set but SUPABASE_URL or SUPABASE_KEY is not; an ingest key writes to "
                "Supabase: set SUPABASE_URL and SUPABASE_KEY (the anon or publishable key) too"
            )
        if self.uses_supabase and not (self.supabase_url or self.supabase_key):
            raise ConfigError(
                "PREDICTIONS_STORE=supabase but SUPABASE_URL and SUPABASE_KEY are not set; set both (your "
                "project's URL and its anon or publishable key)"
            )
        if self.uses_supabase and not (self.supabase_url and self.supabase_key):
            given, missing = ("SUPABASE_URL", "SUPABASE_KEY")[:: 1 if self.supabase_url else -1]
            raise ConfigError(
                f"{missing} is not set but {given} is; set both to use Supabase, or neither to use the "
                "embedded SQLite store"
            )

    def open_store(self) -> Store:
        """Supabase when configured (an ingest key is checked now: a wrong or revoked one is an
        AuthError), else the SQLite file."""
        self.check()
        if self.uses_supabase:
            from predictions.store.supabase import SupabaseStore

            return SupabaseStore(
                self.supabase_url,
                self.supabase_key,
                user_id=self.user_id or None,
                ingest_key=self.ingest_key or None,
            )
        return SQLiteStore(Path(self.db_path))

    def outbox_key(self, user_id: str | None = None) -> tuple[str, str]:
        """The (store, owner) `open_store()` would give, without opening it (no network, no file)."""
        if self.uses_supabase and self.supabase_url and self.supabase_key:
            from predictions.store.supabase_rest import key_role  # Supabase's clients only when used

            return supabase_identity(
                self.supabase_url,
                role=key_role(self.supabase_key),
                ingest_key=self.ingest_key or None,
                user_id=user_id or self.user_id or None,
            )
        return sqlite_identity(Path(self.db_path))

    def outbox_path(self, store_id: str) -> Path:
        """The outbox of a store (`Key.store`): PREDICTIONS_SPOOL, else beside a SQLite file, else one
        per OS user in the user cache dir (entries are keyed by store and owner inside)."""
        if self.outbox:
            return Path(self.outbox)
        if store_id.startswith("sqlite:"):
            database = Path(store_id.removeprefix("sqlite:"))
            return database.with_name(f"{database.stem}.outbox.db")
        from platformdirs import user_cache_path

        return user_cache_path("predictions") / OUTBOX_NAME
