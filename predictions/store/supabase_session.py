"""Who a Supabase client acts for: nobody yet, a given access token, or a user signed in with
Supabase Auth, whose session is refreshed before each request (no timer thread)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from supabase_auth import SyncGoTrueClient, SyncMemoryStorage
from supabase_auth.errors import AuthError as SupabaseAuthError
from supabase_auth.errors import AuthRetryableError

from predictions.errors import AuthError, ConfigError, StoreUnavailableError
from predictions.store.supabase_rest import http_client, jwt_claims, project_headers

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


def auth_client(url: str, key: str) -> SyncGoTrueClient:
    """Supabase Auth's public client at `url`/auth/v1; sessions kept in memory, refreshed on demand.
    Its HTTP client is the one it would make itself (httpx's default timeout), on the shared TLS context."""
    return SyncGoTrueClient(
        url=f"{url}/auth/v1",
        headers=project_headers(key),
        auto_refresh_token=False,  # refreshed before each request (`token()`), not by a timer thread
        persist_session=True,
        storage=SyncMemoryStorage(),
        http_client=http_client(),
    )


class Session:
    """The Supabase Auth session of one store: whose rows the reads show and the writes own.

    With an anon key (`key_role`) nobody is signed in until `sign_in()` or `restore()`; a bare
    `access_token` (`adopt()`) names its user but cannot be renewed.
    """

    def __init__(self, url: str, key: str, description: str, key_role: str):
        self.auth = auth_client(url, key)
        self.url = url
        self.description = description
        self.key_role = key_role
        self.user_id: str | None = None
        self.email: str | None = None
        self.bare_token: str | None = None

    @property
    def requires_sign_in(self) -> bool:
        """True with an anon key while nobody is signed in: row-level security then shows nothing."""
        return self.key_role == "anon" and self.user_id is None

    def adopt(self, access_token: str) -> None:
        """Send an access token as it is, for its user, until it expires (it cannot be renewed)."""
        claims = jwt_claims(access_token) or {}
        self.user_id = check_user_id(claims.get("sub"))
        self.email = claims.get("email")
        self.bare_token = access_token

    def restore(self, access_token: str, refresh_token: str) -> None:
        """Resume a session from its tokens, so it can be refreshed when it expires."""
        self.start("the given session", lambda: self.auth.set_session(access_token, refresh_token))

    def sign_in(self, email: str, password: str) -> None:
        """Sign in with Supabase Auth (email and password); AuthError, fit to show, when refused."""
        credentials = {"email": email, "password": password}
        self.start(f"sign-in as {email}", lambda: self.auth.sign_in_with_password(credentials))
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

    def token(self) -> str | None:
        """The access token to send now, refreshed first when about to expire; None when signed out."""
        try:
            session = self.auth.get_session()  # refreshes within supabase-auth's EXPIRY_MARGIN (10 s)
        except (AuthRetryableError, httpx.HTTPError) as error:
            raise StoreUnavailableError(f"cannot reach Supabase Auth at {self.url}: {error}") from error
        except SupabaseAuthError as error:
            raise AuthError(
                f"{self.description}: the session could not be refreshed ({error.message}); sign in again"
            ) from error
        return session.access_token if session is not None else self.bare_token

    def tokens(self) -> tuple[str, str] | None:
        """The signed-in session's access and refresh tokens, refreshed first when about to expire,
        for a browser to resume it; None without a renewable session."""
        self.token()
        session = self.auth.get_session()
        return (session.access_token, session.refresh_token) if session is not None else None

    def alive(self) -> bool:
        """Whether Supabase Auth still knows the signed-in session: a sign-out elsewhere ends it."""
        if self.user_id is None or self.bare_token is not None:
            return self.user_id is not None
        try:
            self.auth.get_user()
        except (AuthRetryableError, httpx.HTTPError) as error:
            raise StoreUnavailableError(f"cannot reach Supabase Auth at {self.url}: {error}") from error
        except SupabaseAuthError:
            self.forget()
            return False
        return True

    def sign_out(self) -> None:
        """End the session everywhere (Supabase Auth revokes all its refresh tokens), then here."""
        try:
            self.auth.sign_out({"scope": "global"})
        except (SupabaseAuthError, httpx.HTTPError) as error:
            raise AuthError(
                f"signed out here, but Supabase Auth could not end the session: {error}"
            ) from error
        finally:
            self.forget()

    def forget(self) -> None:
        self.user_id = self.email = self.bare_token = None

    def close(self) -> None:
        """Close Supabase Auth's HTTP connections."""
        self.auth.close()
