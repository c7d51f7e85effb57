"""Who a Supabase client acts for: nobody yet, a given access token, or a user signed in with
Supabase Auth, whose session is refreshed before each request (no timer thread)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from supabase_auth.errors import AuthError as SupabaseAuthError
from supabase_auth.errors import AuthRetryableError

from predictions.errors import AuthError, ConfigError, StoreUnavailableError
from predictions.store.supabase_rest import jwt_claims
from supabase import Client

USER_ID_ENV = "PREDICTIONS_USER_ID"


def check_user_id(user_id: str | None) -> str | None:
    """The user id as a canonical UUID string; ConfigError when it is not one."""
    if user_id is None:
        return None
    try:
        return str(uuid.UUID(str(user_id)))
    except ValueError as error:
        raise ConfigError(
            f"{USER_ID_ENV}={user_id!r} is not a user id; valid: the UUID of a Supabase Auth user "
            "(Authentication > Users in the Supabase dashboard)"
        ) from error


class Session:
    """The Supabase Auth session of one client: whose rows the reads show and the writes own.

    With an anon key (`key_role`) nobody is signed in until `sign_in()` or `restore()`; a bare
    `access_token` (`adopt()`) names its user but cannot be renewed.
    """

    def __init__(self, client: Client, url: str, description: str, key_role: str):
        self.client = client
        self.url = url
        self.description = description
        self.key_role = key_role
        self.user_id: str | None = None
        self.email: str | None = None

    @property
    def requires_sign_in(self) -> bool:
        """True with an anon key while nobody is signed in: row-level security then shows nothing."""
        return self.key_role == "anon" and self.user_id is None

    def adopt(self, access_token: str) -> None:
        """Take the user of an access token sent as it is (the client already carries it)."""
        claims = jwt_claims(access_token) or {}
        self.user_id = check_user_id(claims.get("sub"))
        self.email = claims.get("email")

    def restore(self, access_token: str, refresh_token: str) -> None:
        """Resume a session from its tokens, so it can be refreshed when it expires."""
        self.start("the given session", lambda: self.client.auth.set_session(access_token, refresh_token))

    def sign_in(self, email: str, password: str) -> None:
        """Sign in with Supabase Auth (email and password); AuthError, fit to show, when refused."""
        credentials = {"email": email, "password": password}
        self.start(f"sign-in as {email}", lambda: self.client.auth.sign_in_with_password(credentials))
        self.email = self.email or email

    def start(self, what: str, start: Callable[[], Any]) -> None:
        """Run a Supabase Auth call that starts a session; its user is whose rows we see from now on."""
        try:
            response = start()
        except AuthRetryableError as error:
            raise AuthError(f"cannot reach Supabase Auth at {self.url}: {error.message}") from error
        except SupabaseAuthError as error:
            raise AuthError(f"{what} failed: {error.message}") from error
        except httpx.HTTPError as error:
            raise AuthError(f"cannot reach Supabase Auth at {self.url}: {error}") from error
        if response.session is None or response.user is None:
            raise AuthError(f"{what} gave no session; is the email address confirmed?")
        self.user_id = response.user.id
        self.email = response.user.email

    def refresh(self) -> None:
        """Refresh the session when it is about to expire; run before each request is built."""
        try:
            self.client.auth.get_session()  # refreshes within supabase-py's EXPIRY_MARGIN (10 s)
        except (AuthRetryableError, httpx.HTTPError) as error:
            raise StoreUnavailableError(f"cannot reach Supabase Auth at {self.url}: {error}") from error
        except SupabaseAuthError as error:
            raise AuthError(
                f"{self.description}: the session could not be refreshed ({error.message}); sign in again"
            ) from error
