"""Ingest keys: a write key per user for training machines, instead of the service-role key.

A signed-in user creates one per machine or team (`SupabaseStore.create_ingest_key`); the secret is
shown once and only its hash is stored (supabase/migrations/*_ingest_keys.sql). A trainer with the
anon key and PREDICTIONS_INGEST_KEY writes jobs and rows owned by the key's user, nothing else.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from predictions.errors import ConfigError

INGEST_KEY_ENV = "PREDICTIONS_INGEST_KEY"
SECRET_PREFIX = "pmk_"
"""Marks a predictions-monitor ingest key, so a leaked one is recognisable (and greppable)."""
MAX_LABEL_CHARS = 100


@dataclass(frozen=True, slots=True)
class IngestKey:
    """A key as listed: never its secret, only the secret's first characters (`prefix`)."""

    id: str
    label: str
    prefix: str
    created_at: str
    last_used_at: str | None = None
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def new_secret() -> str:
    """256 random bits, URL-safe: high entropy, so a plain SHA-256 of it is a safe thing to store."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_label(label: str) -> str:
    """The label without surrounding blanks; it names the key in lists and in revocations."""
    text = str(label or "").strip()
    if not 1 <= len(text) <= MAX_LABEL_CHARS:
        raise ConfigError(
            f"label={label!r} is not a key label; valid: 1 to {MAX_LABEL_CHARS} characters, "
            "e.g. the machine's name"
        )
    return text


@runtime_checkable
class IngestKeyManager(Protocol):
    """What a store that serves ingest keys adds (Supabase); the embedded store needs none."""

    def create_ingest_key(self, label: str) -> str:
        """A new key of the signed-in user; the secret is returned once."""

    def list_ingest_keys(self) -> list[IngestKey]:
        """The signed-in user's keys, never their secrets."""

    def revoke_ingest_key(self, key_id_or_label: str) -> None:
        """Revoke an active key by id or label."""
