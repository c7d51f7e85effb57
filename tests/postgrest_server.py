"""A PostgREST-protocol test server over a real PostgreSQL: exactly the calls SupabaseStore makes.

No PostgREST binary can run here, so this stands in for Supabase's API gateway, PostgREST and the
password grant of Supabase Auth, speaking the same HTTP protocol to supabase-py:

- `POST /rest/v1/<table>?on_conflict=...&columns=...` with
  `Prefer: return=minimal,resolution=merge-duplicates` (a bulk upsert);
- `PATCH /rest/v1/<table>?<column>=eq.<value>` with `Prefer: return=minimal`;
- `POST /rest/v1/rpc/<function>` with named arguments in a JSON object;
- `POST /auth/v1/token?grant_type=password` (and `refresh_token`) for test users added with `add_user`;
- `GET /auth/v1/user` with a session's token (supabase-py's `set_session` asks it): 403
  `session_not_found` once that session signed out;
- `POST /auth/v1/logout?scope=global|local|others`: ends the user's sessions (their refresh tokens
  stop working, and `/user` says so for their access tokens), as Supabase Auth does.

Anything else is answered 501. Like Supabase's gateway, every request needs a known project key in
`apikey`: a legacy JWT key (`anon_key`, `service_key`) or a new `sb_publishable_`/`sb_secret_` key
(`publishable_key`, `secret_key`). Like PostgREST, each request verifies the JWT in Authorization
(HS256, the test secret; a new key there is refused as PostgREST refuses it: "Expected 3 parts in
JWT"), then runs in one transaction as the JWT's role (`set local role`) with its claims in
`request.jwt.claims`, so row-level security is enforced by Postgres itself. Without Authorization the
role is the gateway's: service_role for the secret key, else anon. Postgres errors come back as
PostgREST's JSON (`code`, `message`, `details`, `hint`) with PostgREST's HTTP statuses; a column or
function the database lacks is answered from the catalog as PostgREST 12/13 answers from its schema cache
(PGRST204, HTTP 400; PGRST202, HTTP 404). All SQL logic lives in the migrations: this only routes.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

TEST_JWT_SECRET = "predictions-monitor-test-secret-of-at-least-32-characters"
TABLES = frozenset({"training_predictions", "training_jobs", "training_rollouts", "training_series"})
SCHEMA = "public"
TOKEN_LIFETIME_S = 3600


@dataclass
class Reply:
    """What goes back: an HTTP status and a JSON text (empty for `return=minimal`)."""

    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class HTTPFailure(Exception):
    """A request refused before or after reaching Postgres, answered as PostgREST would."""

    def __init__(self, status: int, code: str, message: str, details: Any = None, hint: Any = None):
        super().__init__(message)
        self.reply = Reply(
            status, json.dumps({"code": code, "message": message, "details": details, "hint": hint})
        )


def unsupported(what: str) -> HTTPFailure:
    return HTTPFailure(501, "PGRST501", f"the test server does not support {what}")


def sign(claims: dict[str, Any], secret: str = TEST_JWT_SECRET) -> str:
    """An HS256 JWT, as Supabase signs its API keys and session tokens."""
    return jwt.encode(claims, secret, algorithm="HS256")


def api_key(role: str, secret: str = TEST_JWT_SECRET) -> str:
    """A project API key: a long-lived JWT whose role claim is `anon` or `service_role`."""
    now = int(time.time())
    return sign({"iss": "supabase-test", "role": role, "iat": now, "exp": now + 10 * 365 * 86400}, secret)


def postgres_status(sqlstate: str, role: str) -> int:
    """PostgREST's HTTP status for a Postgres error code."""
    if sqlstate == "42501":
        return 401 if role == "anon" else 403
    if sqlstate in ("23503", "23505"):
        return 409
    if sqlstate in ("42883", "42P01", "P0002"):
        return 404
    if sqlstate.startswith(("08", "53")):
        return 503
    if sqlstate.startswith("28"):
        return 403
    if sqlstate.startswith(("22", "23", "42", "P0")):
        return 400
    return 500


@dataclass
class User:
    id: str
    email: str
    password: str


class PostgrestApi:
    """The routing and the per-request role switch; `PostgrestTestServer` puts it behind HTTP."""

    def __init__(self, conninfo: str, *, jwt_secret: str = TEST_JWT_SECRET, max_rows: int = 1000):
        self.conninfo = conninfo
        self.auth_conninfo = make_conninfo(conninfo, user="supabase_auth_admin")
        """Supabase Auth's own login, which owns auth.users."""
        self.jwt_secret = jwt_secret
        self.max_rows = max_rows
        self.new_keys = {
            f"sb_publishable_{secrets.token_urlsafe(16)}": "anon",
            f"sb_secret_{secrets.token_urlsafe(16)}": "service_role",
        }
        """The project's new API keys and the role the gateway gives each."""
        self.token_lifetime_s = TOKEN_LIFETIME_S
        """How long the sessions Auth issues last; a test shortens it to see them refreshed."""
        self.users: dict[str, User] = {}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}
        """Each live refresh token's user (email) and session id; a refresh keeps the session id."""
        self.ended_sessions: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        """(method, path) of every request, for tests that count requests."""
        self.headers: list[dict[str, str]] = []
        """The headers of every request (names in lower case), for tests of what a client sends."""
        self._lock = threading.Lock()
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()

    # routing

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Reply:
        parts = urlsplit(target)
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.calls.append((method, parts.path))
        self.headers.append({name.lower(): value for name, value in headers.items()})
        try:
            gateway_role = self.key_role(headers.get("apikey") or "")
            if method == "POST" and parts.path == "/auth/v1/token":
                return self.token(dict(query), self.json_body(body))
            if method == "POST" and parts.path == "/auth/v1/logout":
                return self.logout(headers, dict(query).get("scope", "global"))
            if method == "GET" and parts.path == "/auth/v1/user":
                return self.user(headers)
            if not parts.path.startswith("/rest/v1/"):
                raise unsupported(f"{method} {parts.path}")
            claims = self.claims(headers, gateway_role)
            name = parts.path.removeprefix("/rest/v1/")
            if method == "POST" and name.startswith("rpc/"):
                if query:
                    raise unsupported("filters on an rpc result")
                return self.rpc(claims, name.removeprefix("rpc/"), self.json_body(body))
            if name in TABLES and method == "POST":
                return self.upsert(claims, name, query, headers, self.json_body(body))
            if name in TABLES and method == "PATCH":
                return self.patch(claims, name, query, headers, self.json_body(body))
            raise unsupported(f"{method} {parts.path}")
        except HTTPFailure as failure:
            return failure.reply
        except Exception as error:  # a bug here: answer it rather than drop the connection
            return Reply(500, json.dumps({"code": "PGRST000", "message": repr(error)}))

    @staticmethod
    def json_body(body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except ValueError as error:
            raise HTTPFailure(400, "PGRST102", f"Empty or invalid json: {error}") from error

    def key_role(self, key: str) -> str:
        """The role the gateway gives a project key without a session; 401 for a key it does not know."""
        if not key:
            raise HTTPFailure(401, "401", "No API key found in request")
        if key in self.new_keys:
            return self.new_keys[key]
        try:
            jwt.decode(key, self.jwt_secret, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.InvalidTokenError as error:
            raise HTTPFailure(
                401,
                "401",
                "Invalid API key",
                hint="Double check your Supabase `anon` or `service_role` API key.",
            ) from error
        return "anon"

    def claims(self, headers: Any, gateway_role: str = "anon") -> dict[str, Any]:
        """The verified JWT claims of the request; without Authorization, the gateway's role."""
        authorization = headers.get("Authorization") or ""
        if not authorization:
            return {"role": gateway_role}
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPFailure(401, "PGRST301", "Invalid Authorization header")
        if token.count(".") != 2:
            raise HTTPFailure(401, "PGRST301", f"Expected 3 parts in JWT; got {token.count('.') + 1}")
        try:
            return jwt.decode(token, self.jwt_secret, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.ExpiredSignatureError as error:
            raise HTTPFailure(401, "PGRST303", "JWT expired") from error
        except jwt.InvalidTokenError as error:
            raise HTTPFailure(401, "PGRST301", f"JWT invalid: {error}") from error

    # the three REST calls

    def upsert(self, claims, table: str, query, headers, rows: Any) -> Reply:
        """A bulk upsert: INSERT ... ON CONFLICT (on_conflict) DO UPDATE SET every given column."""
        prefer = parse_prefer(headers)
        if prefer.get("return") != "minimal" or prefer.get("resolution") != "merge-duplicates":
            raise unsupported(f"a POST with Prefer {headers.get('Prefer')!r}")
        params = dict(query)
        if set(params) - {"on_conflict", "columns"} or not params.get("on_conflict"):
            raise unsupported(f"POST query parameters {sorted(params)} (on_conflict is required)")
        rows = rows if isinstance(rows, list) else [rows]
        if not rows or not all(isinstance(row, dict) for row in rows):
            raise HTTPFailure(400, "PGRST102", "Expected a JSON object or an array of objects")
        columns = split_columns(params.get("columns", "")) or list(rows[0])
        conflict = split_columns(params["on_conflict"])
        target = sql.Identifier(SCHEMA, table)
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        statement = sql.SQL(
            "insert into {target} ({names}) select {names} from json_populate_recordset(null::{target}, %s)"
            " on conflict ({conflict}) do update set {updates}"
        ).format(
            target=target,
            names=names,
            conflict=sql.SQL(", ").join(map(sql.Identifier, conflict)),
            updates=sql.SQL(", ").join(
                sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns
            ),
        )
        with self.transaction(claims) as conn:
            check_columns(conn, table, [*columns, *conflict])
            conn.execute(statement, (json.dumps(rows),))
        return Reply(201)

    def patch(self, claims, table: str, query, headers, values: Any) -> Reply:
        """UPDATE the rows matching `column=eq.value` filters with the given columns."""
        if parse_prefer(headers).get("return") != "minimal":
            raise unsupported(f"a PATCH with Prefer {headers.get('Prefer')!r}")
        if not isinstance(values, dict) or not values:
            raise HTTPFailure(400, "PGRST102", "Expected a non-empty JSON object")
        filters = [(column, value.removeprefix("eq.")) for column, value in query]
        if not filters or any(not value.startswith("eq.") for _, value in query):
            raise unsupported("a PATCH without eq filters, or with other operators")
        statement = sql.SQL(
            "update {target} as t set {sets}"
            " from json_populate_record(null::{target}, %s) as given where {where}"
        ).format(
            target=sql.Identifier(SCHEMA, table),
            sets=sql.SQL(", ").join(sql.SQL("{0} = given.{0}").format(sql.Identifier(c)) for c in values),
            where=sql.SQL(" and ").join(
                sql.SQL("t.{} = %s").format(sql.Identifier(column)) for column, _ in filters
            ),
        )
        with self.transaction(claims) as conn:
            check_columns(conn, table, list(values))  # a filter's unknown column is Postgres' 42703
            conn.execute(statement, (json.dumps(values), *(value for _, value in filters)))
        return Reply(204)

    def rpc(self, claims, name: str, arguments: Any) -> Reply:
        """Call a function of the exposed schema with named arguments, as PostgREST does.

        A function returning one value answers that value; one returning a set answers a JSON array
        cut to `max_rows`, PostgREST's row cap, which is why the dashboard's functions return jsonb.
        """
        arguments = arguments if arguments is not None else {}
        if not isinstance(arguments, dict):
            raise unsupported("positional rpc arguments")
        with self.transaction(claims) as conn:
            returns_set, types = self.find_function(conn, name, set(arguments))
            call = sql.SQL("{}({})").format(
                sql.Identifier(SCHEMA, name),
                sql.SQL(", ").join(sql.SQL("{0} := a.{0}").format(sql.Identifier(k)) for k in arguments),
            )
            source = sql.SQL("")
            if arguments:
                source = sql.SQL(" from json_to_record(%s) as a({})").format(
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(k), sql.SQL(types[k])) for k in arguments
                    )
                )
            if returns_set:
                statement = sql.SQL(
                    "select coalesce(json_agg(r), '[]')::text from (select f.*{source} cross join lateral"
                    " {call} as f limit {cap}) as r"
                ).format(source=source or sql.SQL(" from (select) as a"), call=call, cap=self.max_rows)
            else:
                statement = sql.SQL("select to_json({call})::text{source}").format(call=call, source=source)
            params = (json.dumps(arguments),) if arguments else ()
            (text,) = conn.execute(statement, params).fetchone()
        return Reply(200, text)

    @staticmethod
    def find_function(conn: psycopg.Connection, name: str, given: set[str]) -> tuple[bool, dict[str, str]]:
        """Whether the function returns a set, and its argument types by name; 404 like PostgREST."""
        rows = conn.execute(
            "select p.proretset, coalesce(p.proargnames, '{}'), p.pronargs, p.pronargdefaults,"
            " array(select format_type(t, null) from unnest(p.proargtypes) as t)"
            " from pg_proc as p join pg_namespace as n on n.oid = p.pronamespace"
            " where n.nspname = %s and p.proname = %s and p.prokind = 'f'",
            (SCHEMA, name),
        ).fetchall()
        for returns_set, names, count, defaults, types in rows:
            names = names[:count]
            if given <= set(names) and set(names[: count - defaults]) <= given:
                return returns_set, dict(zip(names, types, strict=True))
        raise no_function(name, sorted(given))

    # Postgres, as the JWT's role

    @contextmanager
    def transaction(self, claims: dict[str, Any]) -> Iterator[psycopg.Connection]:
        """One transaction as the JWT's role with its claims, the way PostgREST runs every request."""
        role = str(claims.get("role") or "anon")
        conn = self._connection()
        try:
            with conn.transaction():
                conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
                conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
                yield conn
        except psycopg.Error as error:
            diag = error.diag
            sqlstate = error.sqlstate or "XX000"
            raise HTTPFailure(
                postgres_status(sqlstate, role),
                sqlstate,
                diag.message_primary or str(error),
                diag.message_detail,
                diag.message_hint,
            ) from error
        finally:
            self._release(conn)

    def _connection(self) -> psycopg.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return psycopg.connect(self.conninfo, autocommit=True)

    def _release(self, conn: psycopg.Connection) -> None:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
        else:
            self._idle.put(conn)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()

    # Supabase Auth: the password and refresh-token grants

    def add_user(self, email: str, password: str, user_id: str | None = None) -> str:
        """A user of Supabase Auth: a row in auth.users (written as Auth writes it, as
        supabase_auth_admin), so what references it sees it, and a password for the password grant."""
        user = User(user_id or str(uuid.uuid4()), email, password)
        with psycopg.connect(self.auth_conninfo) as conn:
            conn.execute(
                "insert into auth.users (id, email) values (%s, %s)"
                " on conflict (id) do update set email = excluded.email",
                (user.id, email),
            )
        with self._lock:
            self.users[email] = user
        return user.id

    def delete_user(self, user_id: str) -> None:
        """Delete a user as Supabase's Authentication page does: their auth.users row, their sessions."""
        with psycopg.connect(self.auth_conninfo) as conn:
            conn.execute("delete from auth.users where id = %s", (user_id,))
        with self._lock:
            for email in [email for email, user in self.users.items() if user.id == user_id]:
                del self.users[email]
                for token in [token for token, (owner, _) in self.refresh_tokens.items() if owner == email]:
                    del self.refresh_tokens[token]

    def access_token(
        self,
        user_id: str,
        email: str | None = None,
        lifetime_s: int = TOKEN_LIFETIME_S,
        session_id: str | None = None,
    ) -> str:
        """A session JWT as Supabase Auth issues it: role authenticated, the user's id as sub."""
        now = int(time.time())
        claims = {
            "aud": "authenticated",
            "iss": "supabase-test/auth/v1",
            "sub": user_id,
            "email": email,
            "role": "authenticated",
            "aal": "aal1",
            "session_id": session_id or str(uuid.uuid4()),
            "is_anonymous": False,
            "iat": now,
            "exp": now + lifetime_s,
        }
        return sign(claims, self.jwt_secret)

    def token(self, query: dict[str, str], body: Any) -> Reply:
        """The password grant starts a session; the refresh-token grant continues one (same session
        id), spending the refresh token it was given."""
        grant = query.get("grant_type")
        body = body if isinstance(body, dict) else {}
        session_id = None
        with self._lock:
            if grant == "password":
                user = self.users.get(str(body.get("email", "")))
                if user is None or user.password != body.get("password"):
                    user = None
            elif grant == "refresh_token":
                email, session_id = self.refresh_tokens.pop(str(body.get("refresh_token", "")), (None, None))
                user = self.users.get(email) if email else None
            else:
                raise unsupported(f"grant_type={grant!r}")
        if user is None:
            code, message = (
                ("refresh_token_not_found", "Invalid Refresh Token")
                if grant == "refresh_token"
                else ("invalid_credentials", "Invalid login credentials")
            )
            return Reply(400, json.dumps({"code": 400, "error_code": code, "msg": message}))
        return Reply(200, json.dumps(self.session(user, session_id)))

    def session(self, user: User, session_id: str | None = None) -> dict[str, Any]:
        refresh_token = uuid.uuid4().hex
        session_id = session_id or str(uuid.uuid4())
        with self._lock:
            self.refresh_tokens[refresh_token] = (user.email, session_id)
        now = int(time.time())
        lifetime = self.token_lifetime_s
        return {
            "access_token": self.access_token(user.id, user.email, lifetime, session_id),
            "token_type": "bearer",
            "expires_in": lifetime,
            "expires_at": now + lifetime,
            "refresh_token": refresh_token,
            "user": user_json(user),
        }

    def user(self, headers: Any) -> Reply:
        """The user of the session token in Authorization, as Supabase Auth's `GET /user` answers."""
        claims = self.claims(headers)
        user = next((u for u in self.users.values() if u.id == claims.get("sub")), None)
        if user is None:
            raise HTTPFailure(403, "user_not_found", "User from sub claim in JWT does not exist")
        if claims.get("session_id") in self.ended_sessions:
            raise HTTPFailure(403, "session_not_found", "Session from session_id claim in JWT does not exist")
        return Reply(200, json.dumps(user_json(user)))

    def logout(self, headers: Any, scope: str) -> Reply:
        """End the caller's session (`local`), their other ones (`others`) or all of them (`global`)."""
        claims = self.claims(headers)
        email = claims.get("email")
        current = claims.get("session_id")
        with self._lock:
            sessions = {session for owner, session in self.refresh_tokens.values() if owner == email} | {
                current
            }
            ended = {"local": {current}, "others": sessions - {current}}.get(scope, sessions)
            self.ended_sessions |= ended
            for token in [token for token, (_, session) in self.refresh_tokens.items() if session in ended]:
                del self.refresh_tokens[token]
        return Reply(204)


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "aud": "authenticated",
        "role": "authenticated",
        "email": user.email,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "created_at": "2026-01-01T00:00:00Z",
    }


def check_columns(conn: psycopg.Connection, table: str, columns: list[str]) -> None:
    """PGRST204 (HTTP 400) for a column the table lacks, as PostgREST 12/13 answers from its schema
    cache before the statement runs (a client newer than the database's migrations sees this)."""
    known = {
        name
        for (name,) in conn.execute(
            "select attname from pg_catalog.pg_attribute"
            " where attrelid = %s::regclass and attnum > 0 and not attisdropped",
            (f"{SCHEMA}.{table}",),
        )
    }
    missing = next((column for column in columns if column not in known), None)
    if missing is not None:
        raise HTTPFailure(
            400, "PGRST204", f"Could not find the '{missing}' column of '{table}' in the schema cache"
        )


def no_function(name: str, arguments: list[str]) -> HTTPFailure:
    """PGRST202 (HTTP 404): no function of that name takes these named arguments, in PostgREST 12/13's
    words (its hint, a near match, is left out)."""
    function = f"{SCHEMA}.{name}"
    shown = f"({', '.join(arguments)})" if arguments else " without parameters"
    searched = {0: " without parameters", 1: " with parameter "}.get(len(arguments), " with parameters ")
    details = (
        f"Searched for the function {function}{searched}{', '.join(arguments)} or with a single unnamed "
        "json/jsonb parameter, but no matches were found in the schema cache."
    )
    return HTTPFailure(
        404, "PGRST202", f"Could not find the function {function}{shown} in the schema cache", details
    )


def parse_prefer(headers: Any) -> dict[str, str]:
    """`Prefer: return=minimal,resolution=merge-duplicates` as a dict."""
    items = ",".join(headers.get_all("Prefer") or []).split(",")
    return dict(item.strip().partition("=")[::2] for item in items if item.strip())


def split_columns(text: str) -> list[str]:
    """`a,"b",c` as names; supabase-py quotes the names it sends in `columns`."""
    return [name.strip().strip('"') for name in text.split(",") if name.strip()]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """TCP_NODELAY, as PostgREST's own server sets it: a reply is written as its headers, then its body,
    and with Nagle's algorithm the body waited for the client's delayed ACK of the headers, 40 ms on
    every request of a kept-alive connection (44 ms a request instead of 2.7)."""
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.server.api.handle(self.command, self.path, self.headers, body)
        payload = reply.body.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows failures, not every request."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: PostgrestApi):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api


class PostgrestTestServer:
    """`PostgrestApi` on a local port, in a background thread; `url` is the Supabase project URL."""

    def __init__(self, conninfo: str, *, jwt_secret: str = TEST_JWT_SECRET, max_rows: int = 1000):
        self.api = PostgrestApi(conninfo, jwt_secret=jwt_secret, max_rows=max_rows)
        self.anon_key = api_key("anon", jwt_secret)
        self.service_key = api_key("service_role", jwt_secret)
        self.publishable_key, self.secret_key = self.api.new_keys
        self._http = _Server(self.api)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(
            target=self._http.serve_forever, args=(0.05,), name="postgrest-test", daemon=True
        )
        self._client = httpx.Client(base_url=self.url)
        """For tests that send a raw request (`request`): one client, because each new one builds a TLS
        context (45 ms of CPU), even for plain HTTP."""

    def __enter__(self) -> PostgrestTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()
        self._http.shutdown()
        self._http.server_close()
        self.api.close()

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        """A raw HTTP request to `path` (e.g. "/rest/v1/rpc/<function>"); `options` go to httpx."""
        return self._client.request(method, path, **options)

    def add_user(self, email: str, password: str, user_id: str | None = None) -> str:
        return self.api.add_user(email, password, user_id)

    def delete_user(self, user_id: str) -> None:
        self.api.delete_user(user_id)

    def session(self, email: str) -> dict[str, Any]:
        """A new session of a test user, as a sign-in returns it: access and refresh token."""
        return self.api.session(self.api.users[email])

    def access_token(self, user_id: str, email: str | None = None, lifetime_s: int = TOKEN_LIFETIME_S) -> str:
        return self.api.access_token(user_id, email, lifetime_s)
