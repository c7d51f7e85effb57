"""Named errors of the predictions package, one place to import them from.

Each keeps the backend's own message; only the dashboard turns them into `st.error` text.
"""


class PredictionsError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(PredictionsError, ValueError):
    """An option has an invalid value; the message names the option, the value and what is valid."""


class DatasetError(PredictionsError, ValueError):
    """The sample source cannot give what the configuration asks for (a missing field, too few rows)."""


class StoreError(PredictionsError):
    """A store call was refused for good (a bad value, a constraint, auth); the backend's message kept.

    Retrying the same call cannot help: the writer quarantines the refused rows instead.
    """


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now (network, timeout, 5xx, locked file): worth retrying."""


class ReadOnlyStoreError(StoreUnavailableError):
    """The store can be read but not written here (a read-only filesystem, a file nobody may write);
    the message names the path. Nothing is refused for good: calls are kept until it can be written."""


class JobDeletedError(StoreError):
    """The call belongs to a run of a job its owner deleted on the dashboard: the store dropped it, as
    it drops every later write of that run, so the job stays deleted. Not a failure: nothing to keep."""


class AuthError(StoreError):
    """Sign-in failed or the key is not allowed to do what was asked."""


SESSION_REFUSALS = (AuthError, ReadOnlyStoreError)
"""Errors that refuse every write of a session, not a row: the writer stops writing and keeps every call."""


class OutboxError(PredictionsError):
    """The local outbox cannot be read or written (a read-only directory, a full disk, a broken file)."""


def is_transient(error: BaseException) -> bool:
    """True when the same call may succeed later (an outage); False when the store refused it for good."""
    if isinstance(error, StoreUnavailableError):
        return True
    if isinstance(error, StoreError):
        return False
    return isinstance(error, ConnectionError | TimeoutError)
