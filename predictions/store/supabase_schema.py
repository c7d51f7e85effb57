"""Whether a Supabase database has the migrations this package needs, asked once per store.

A package upgraded before `supabase db push` would send columns and call functions the database lacks:
every row of a long run refused (PGRST204) and quarantined. The database's
`predictions_schema_version()` (20261207110000_schema_version.sql, redefined by every later migration)
returns its newest migration's version; older than SCHEMA_VERSION, or no such function at all, is a
database that must be upgraded first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from predictions.errors import StoreError

SCHEMA_MIGRATION = "20261207110000_schema_version.sql"
"""The newest file of supabase/migrations: the database must have it (and every one before it)."""
SCHEMA_VERSION = SCHEMA_MIGRATION.partition("_")[0]
FIRST_VERSIONED = "20261207110000_schema_version.sql"
"""The migration that added the version function: a database without it is older."""
VERSION_FUNCTION = "predictions_schema_version"
MISSING_FUNCTION = "PGRST202"
"""PostgREST's code for a function the database lacks: a database older than the version function."""


def database_version(call: Callable[[str], Any]) -> str | None:
    """The version `call(VERSION_FUNCTION)` returns; None when the database has no such function.

    Any other error (an outage, a refused key) is raised as it is: it says nothing about the schema.
    """
    try:
        return str(call(VERSION_FUNCTION))
    except StoreError as error:
        if getattr(error, "code", None) == MISSING_FUNCTION:
            return None
        raise


def schema_problem(version: str | None, description: str) -> str | None:
    """What a database at `version` (None: older than the version function) lacks, and the fix; None
    when it has every migration this package needs (a newer database is fine too)."""
    if version is not None and version >= SCHEMA_VERSION:
        return None
    newest = f"its newest migration is {version}" if version else f"it predates {FIRST_VERSIONED}"
    newer = f"each file newer than {version}" if version else "each file it lacks"
    return (
        f"{description} lacks database migrations this version of predictions-monitor needs ({newest}; "
        f"it needs every one up to {SCHEMA_MIGRATION}): run `supabase db push` from a checkout of "
        f"predictions-monitor at this version (or apply supabase/migrations/<file> in the SQL editor, "
        f"{newer} up to {SCHEMA_MIGRATION}), then start again"
    )
