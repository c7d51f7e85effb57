"""The REST transport to a Supabase project: the client, its keys, and PostgREST's errors as ours.

It knows no jobs or rows: `SupabaseStore` says what to call, this module says how a request is sent
and what a failure means (`AuthError`, `StoreUnavailableError` worth retrying, or `StoreError` for
good), keeping PostgREST's code, hint and details on the error.

Requests go through postgrest-py's public client, not supabase-py's `Client`: that one also puts the
project key in `Authorization: Bearer`, where PostgREST expects a JWT, and the new `sb_publishable_`/
`sb_secret_` keys are not JWTs (a PostgREST reached without Supabase's gateway refuses them: "Expected
3 parts in JWT"); supabase-py 2.x has no option to leave it out. Here `Authorization` carries the
user's session token, else a legacy key (a JWT, whose role PostgREST takes), else nothing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import ssl
from collections.abc import Callable
from typing import Any

import httpx
from postgrest import APIError, ReturnMethod, SyncPostgrestClient

from predictions.errors import AuthError, ConfigError, JobDeletedError, StoreError, StoreUnavailableError
from predictions.store.ingest_keys import INGEST_KEY_ENV, SECRET_PREFIX

AUTH_CODES = frozenset({"42501", "PGRST300", "PGRST301", "PGRST302", "PGRST303", "401", "403"})
"""PostgREST/Postgres codes meaning "not allowed": bad or expired JWT, missing privilege, RLS."""
UNAVAILABLE_CODES = frozenset({"PGRST000", "PGRST001", "PGRST002", "PGRST003", "55P03", "408", "429"})
UNAVAILABLE_CLASSES = ("08", "40", "53", "57", "58")
"""Codes of a database or gateway that is down, overloaded or timing out right now: worth retrying.
Postgres classes 08 (connection), 40 (deadlock, serialization), 53 (resources), 57 (shutdown,
statement timeout), 58 (system I/O), and HTTP 5xx from a gateway. Every other code (4xx, 22 data,
23 constraint, 42 schema) is a refusal for good."""
JOB_DELETED_CODE = "P0410"
"""What the store raises for a write of a deleted job's run (20261207103000_deleted_runs.sql)."""
API_PATHS = ("/rest/v1", "/auth/v1")
"""Paths of a project's APIs: a URL copied from an API reference often ends in one."""


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, unverified (the server verifies it); None when it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


API_KEYS_PAGE = "Project Settings > API Keys"


def key_role(key: str) -> str:
    """`anon` or `service_role` (or another role a custom JWT names), from a Supabase API key.

    A key of the wrong kind is a ConfigError naming what it is and where the right one comes from."""
    if key.startswith("sb_publishable_"):
        return "anon"
    if key.startswith("sb_secret_"):
        return "service_role"
    if key.startswith(SECRET_PREFIX):
        raise ConfigError(
            f"SUPABASE_KEY holds an ingest key ({SECRET_PREFIX}...); it goes in {INGEST_KEY_ENV}, with the "
            f"project's publishable (anon) key as SUPABASE_KEY ({API_KEYS_PAGE})"
        )
    claims = jwt_claims(key) or {}
    role = claims.get("role")
    if not isinstance(role, str) or not role:
        raise ConfigError(
            "SUPABASE_KEY is not a Supabase API key: expected the project's publishable or secret key "
            f"(sb_publishable_/sb_secret_) or its legacy anon or service_role key ({API_KEYS_PAGE})"
        )
    if "sub" in claims:
        raise ConfigError(
            f"SUPABASE_KEY is a user's session token (role {role}), not a project key: set the project's "
            f"publishable (anon) key ({API_KEYS_PAGE}) and sign in"
        )
    return role


def check_url(url: str) -> str:
    """The project URL without a trailing slash; ConfigError unless it is an http(s) URL of a project
    (not one of its API paths, which the clients add themselves)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"SUPABASE_URL={url!r} is not usable; valid: the project's URL, such as "
            "https://<project>.supabase.co (Project Settings > API)"
        )
    api_path = next((path for path in API_PATHS if parsed.path.rstrip("/").endswith(path)), None)
    if api_path:
        project = url.rstrip("/").removesuffix(api_path)
        raise ConfigError(
            f"SUPABASE_URL={url!r} ends in {api_path}: set the project's URL without it, {project!r}; "
            "the store adds the API paths itself"
        )
    return url.rstrip("/")


def project_headers(key: str) -> dict[str, str]:
    """The headers a project key travels in: always `apikey`; `Authorization` only for a JWT key."""
    headers = {"apikey": key}
    if jwt_claims(key) is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's authorities, or SSL_CERT_FILE / SSL_CERT_DIR as set when
    first built), once per process. Each new httpx client otherwise builds its own, reading every
    authority's certificate again: 45 ms of CPU, twice for each store opened (REST and Auth). A context
    is safe to share between threads, and every client here offers the same protocols (HTTP/2, 1.1)."""
    return httpx.create_ssl_context()


def http_client(**options: Any) -> httpx.Client:
    """An httpx client as supabase-py's clients make one (redirects followed, HTTP/2 offered), on the
    shared TLS context; `options` go to httpx (`timeout`)."""
    return httpx.Client(follow_redirects=True, http2=True, verify=tls_context(), **options)


def rest_client(url: str, key: str, *, timeout_s: float) -> SyncPostgrestClient:
    """postgrest-py's client for the project's REST API at `url`/rest/v1."""
    http = http_client(timeout=timeout_s)
    return SyncPostgrestClient(f"{url}/rest/v1", headers=project_headers(key), http_client=http)


def is_unavailable_code(code: str) -> bool:
    """True for a PostgREST, Postgres or HTTP code of an outage (see UNAVAILABLE_CLASSES)."""
    if code in UNAVAILABLE_CODES or (len(code) == 3 and code.startswith("5") and code.isdigit()):
        return True
    return len(code) == 5 and code.startswith(UNAVAILABLE_CLASSES)


def api_error_text(error: APIError) -> str:
    """PostgREST's message with its code, details and hint, the way people read them."""
    text = f"{error.message or 'request failed'} (code {error.code})"
    if error.details:
        text += f"; details: {error.details}"
    if error.hint:
        text += f"; hint: {error.hint}"
    return text


class Rest:
    """PostgREST requests through one client, each failure raised as the package's named error.

    `session_token` runs before each request is built and returns the signed-in user's access token
    (refreshed when about to expire) or None; `needs_sign_in` says whether an AuthError should tell the
    user to sign in first, `refused_key` which key setting to name when a key is refused.
    """

    def __init__(
        self,
        client: SyncPostgrestClient,
        key: str,
        description: str,
        *,
        session_token: Callable[[], str | None],
        needs_sign_in: Callable[[], bool],
        refused_key: Callable[[], str | None] = lambda: None,
    ):
        self.client = client
        self.key_token = key if jwt_claims(key) is not None else None
        self.description = description
        self.session_token = session_token
        self.needs_sign_in = needs_sign_in
        self.refused_key = refused_key

    def function(self, name: str, **params: Any) -> Any:
        """Call a SQL function through PostgREST's /rpc and return its JSON value."""
        self.authorize()
        return self.call(self.client.rpc(name, params).execute).data

    def upsert(self, table: str, records: list[dict[str, Any]], on_conflict: str) -> None:
        """A bulk upsert on `on_conflict`'s columns, returning nothing."""
        self.authorize()
        request = self.client.table(table).upsert(
            records, on_conflict=on_conflict, returning=ReturnMethod.minimal
        )
        self.call(request.execute)

    def authorize(self) -> None:
        """Set `Authorization` for the next request: the session's token, a JWT key, or nothing."""
        token = self.session_token() or self.key_token
        if token:
            self.client.auth(token)
        else:
            self.client.headers.pop("Authorization", None)

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.aclose()

    def call(self, request: Callable[[], Any]) -> Any:
        """Run a request, turning client errors into the package's named errors."""
        try:
            return request()
        except APIError as error:
            raise self.error(error) from error
        except httpx.TransportError as error:
            raise StoreUnavailableError(f"{self.description} cannot be reached: {error!r}") from error

    def error(self, error: APIError) -> StoreError:
        """The named error for a PostgREST error, with its `code`, `hint` and `details` attached."""
        code = str(error.code or "")
        text = f"{self.description}: {api_error_text(error)}"
        if code in AUTH_CODES:
            prefix = "sign in first: " if self.needs_sign_in() else ""
            if self.refused_key():
                prefix = f"{self.refused_key()} refused (revoked, or not a key of this project?): "
            named: StoreError = AuthError(prefix + text)
        elif is_unavailable_code(code):
            named = StoreUnavailableError(text)
        elif code == JOB_DELETED_CODE:
            named = JobDeletedError(text)
        else:
            named = StoreError(text)
        named.code, named.hint, named.details = error.code, error.hint, error.details
        return named
