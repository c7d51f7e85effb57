"""Arguments of the read methods, checked before they reach SQL: each error names the value and
what would be valid."""

from __future__ import annotations

from predictions.errors import ConfigError
from predictions.scoring.names import CUSTOM_NAME, check_metric_name
from predictions.store.records import JOB_STATUSES


def check_metric(metric: str) -> str:
    """A built-in metric or a user scorer's name (any job may have one)."""
    return check_metric_name(metric)


def check_group_field(field: str) -> str:
    """A metadata field name: an identifier, like a user scorer's name, so it is safe as a JSON path."""
    if not isinstance(field, str) or CUSTOM_NAME.fullmatch(field) is None:
        raise ConfigError(f"field={field!r} is not a metadata field; valid: letters, digits and _")
    return field


def check_status(status: str) -> str:
    if status not in JOB_STATUSES:
        raise ConfigError(f"status={status!r} is not a job status; valid: {', '.join(JOB_STATUSES)}")
    return status


def check_limit(limit: int) -> int:
    """A rollout read's row limit: 1 to 1000, like a page (PostgREST's row cap is 1000)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ConfigError(f"limit={limit!r} is out of range; valid: 1 to 1000 rows")
    return limit


def check_count(rows: int) -> int:
    """A count of missing rows (`Store.record_missing`): a whole number, 0 or more."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ConfigError(f"rows={rows!r} is not a count of rows; valid: a whole number, 0 or more")
    return rows
