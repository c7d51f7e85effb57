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
    """A store call failed; the backend's own message is kept in the text and in `__cause__`."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now (network, locked file, server down): worth retrying."""


class AuthError(StoreError):
    """Sign-in failed or the key is not allowed to do what was asked."""
