"""Who is calling, and what they may do (DESIGN.md section 5).

Three credentials: a project API key (`X-API-Key: rl_live_...`), a personal token
(`Authorization: Bearer rlu_...`) and the dashboard's session cookie (which carries the same kind
of token, plus a CSRF token every state-changing request must echo).

A key acts with the intersection of its scopes and its creator's *current* role, and sees only
its own project: every check runs on every request, so deactivation, expiry and role changes
take effect on the next one. Another tenant's object is NOT_FOUND, exactly like a missing one.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import Request
from sqlalchemy import Connection, bindparam, select, update

from redline.server.http_errors import ApiError, not_found
from redline.server.kit import tokens
from redline.server.kit.clock import utcnow
from redline.server.kit.cookies import session_cookie
from redline.server.tables import api_keys, projects, sessions, team_members

ROLES = ("viewer", "member", "admin", "owner")
SCOPES = ("runs:read", "runs:write", "artifacts:read", "artifacts:write", "flakiness:write",
          "executions:write", "project:admin")
DEFAULT_KEY_SCOPES = list(SCOPES[:5])

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"runs:read", "artifacts:read"}),
    "member": frozenset({"runs:read", "artifacts:read", "runs:write", "artifacts:write",
                         "flakiness:write", "executions:write"}),
    "admin": frozenset(SCOPES),
    "owner": frozenset(SCOPES),
}

CSRF_HEADER = "x-csrf-token"
LAST_USED_EVERY = timedelta(seconds=60)


@dataclass
class Principal:
    """The caller of one request."""

    kind: str  # "key" | "user"
    user_id: str
    key_id: str | None = None
    project_id: str | None = None  # a key's own project
    team_id: str | None = None  # a key's project's team
    key_scopes: frozenset[str] = field(default_factory=frozenset)  # scopes the key was given
    creator_role: str | None = None  # a key creator's current role
    session_id: str | None = None
    via_cookie: bool = False

    @property
    def rate_key(self) -> str:
        return self.key_id or self.user_id

    @property
    def effective_key_scopes(self) -> frozenset[str]:
        return self.key_scopes & ROLE_SCOPES.get(self.creator_role or "", frozenset())


def authenticate(request: Request, conn: Connection) -> Principal:
    """Resolve the credential of a request, or fail with AUTH_REQUIRED / AUTH_INVALID."""
    # (most requests have no query string: nothing to parse then)
    if request.scope.get("query_string") and ("api_key" in request.query_params
                                              or "token" in request.query_params):
        raise ApiError("AUTH_INVALID", "Credentials in the URL are refused: send the key in "
                       "the X-API-Key header", {"reason": "credential_in_url"})
    key = request.headers.get("x-api-key")
    if key is not None:
        return _authenticate_key(request, conn, key.strip())
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError("AUTH_INVALID", "Authorization must be 'Bearer rlu_...'",
                           {"reason": "malformed"})
        return authenticate_token(request, conn, token.strip(), via_cookie=False)
    cookie = session_cookie(request)
    if cookie:
        principal = authenticate_token(request, conn, cookie, via_cookie=True)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            _check_csrf(request, principal)
        return principal
    raise ApiError("AUTH_REQUIRED", "Authentication required: send an X-API-Key header or "
                   "'Authorization: Bearer <token>'", {})


# The key, its project's team and its creator's current role in one query.
_KEY_WITH_ROLE = (
    select(api_keys.c.id, api_keys.c.secret_hash, api_keys.c.project_id, api_keys.c.created_by,
           api_keys.c.scopes, api_keys.c.is_active, api_keys.c.expires_at,
           api_keys.c.last_used_at, projects.c.team_id, team_members.c.role)
    .join(projects, projects.c.id == api_keys.c.project_id)
    .outerjoin(team_members, (team_members.c.team_id == projects.c.team_id)
               & (team_members.c.user_id == api_keys.c.created_by))
    .where(api_keys.c.lookup == bindparam("lookup")))


def _authenticate_key(request: Request, conn: Connection, key: str) -> Principal:
    lookup = tokens.parse_token(key, tokens.API_KEY_PREFIX)
    if lookup is None:  # mangled, mistyped, or not a Redline key: refused without a query
        raise ApiError("AUTH_INVALID", "The API key is malformed", {"reason": "malformed"})
    row = conn.execute(_KEY_WITH_ROLE, {"lookup": lookup}).first()
    now = utcnow()
    if row is None or not tokens.token_matches(key, row.secret_hash):
        raise ApiError("AUTH_INVALID", "The API key is unknown or revoked", {"reason": "unknown"})
    if not row.is_active:
        raise ApiError("AUTH_INVALID", "The API key is deactivated", {"reason": "inactive"})
    if row.expires_at is not None and row.expires_at <= now:
        raise ApiError("AUTH_INVALID", "The API key has expired", {"reason": "expired"})
    if row.role is None:
        raise ApiError("AUTH_INVALID", "The API key's creator is no longer in the team",
                       {"reason": "creator_removed"})
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_EVERY:
        _touch(request, api_keys, row.id, "last_used_at", now)
    return Principal("key", row.created_by, key_id=row.id, project_id=row.project_id,
                     team_id=row.team_id, key_scopes=frozenset(row.scopes),
                     creator_role=row.role)


def authenticate_token(request: Request, conn: Connection, token: str,
                       via_cookie: bool) -> Principal:
    """A personal token or the session cookie's token (the dashboard's sign-in check)."""
    settings = request.app.state.settings
    lookup = tokens.parse_token(token, tokens.PERSONAL_TOKEN_PREFIX)
    if lookup is None:
        raise ApiError("AUTH_INVALID", "The token is malformed", {"reason": "malformed"})
    row = conn.execute(select(sessions).where(sessions.c.lookup == lookup)).first()
    now = utcnow()
    if row is None or not tokens.token_matches(token, row.secret_hash) or row.revoked_at:
        raise ApiError("AUTH_INVALID", "The session is unknown or signed out; sign in again",
                       {"reason": "unknown"})
    idle_limit = row.last_seen_at + timedelta(seconds=settings.session_idle_seconds)
    if row.expires_at <= now or idle_limit <= now:
        raise ApiError("AUTH_INVALID", "The session has expired; sign in again",
                       {"reason": "expired"})
    if row.last_seen_at < now - LAST_USED_EVERY:
        _touch(request, sessions, row.id, "last_seen_at", now)
    principal = Principal("user", row.user_id, session_id=row.id, via_cookie=via_cookie)
    request.state.csrf_token = row.csrf_token
    return principal


def _check_csrf(request: Request, principal: Principal) -> None:
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise ApiError("AUTH_FORBIDDEN", "Cross-site requests are refused",
                       {"reason": "cross_site", "required": ["same-origin"], "granted": []})
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent, request.state.csrf_token):
        raise ApiError("AUTH_FORBIDDEN", "A cookie-authenticated change needs the session's "
                       "CSRF token in the X-CSRF-Token header",
                       {"reason": "csrf", "required": ["csrf-token"], "granted": []})


_touched: dict[str, float] = {}
_touched_lock = threading.Lock()


def _touch(request: Request, table, row_id: str, column: str, now) -> None:
    """Record use at most once a minute. The write happens after the request has released its
    connection (a second connection held alongside the first could exhaust the pool under
    load), and only one request per credential and process does it."""
    moment = time.monotonic()
    with _touched_lock:
        if moment - _touched.get(row_id, -1e9) < LAST_USED_EVERY.total_seconds():
            return
        _touched[row_id] = moment
        if len(_touched) > 100_000:
            _touched.clear()

    def write(conn: Connection) -> None:
        conn.execute(update(table).where(table.c.id == row_id).values({column: now}))

    request.state.uow.after_finish.append(write)


def forbidden(required: list[str], granted: list[str], message: str) -> ApiError:
    return ApiError("AUTH_FORBIDDEN", message,
                    {"required": required, "granted": sorted(granted)})


def require_user(principal: Principal) -> None:
    """Team and account management is done by people, not by project keys."""
    if principal.kind != "user":
        raise forbidden(["user-session"], list(principal.effective_key_scopes),
                        "This endpoint needs a signed-in user (personal token or session), "
                        "not a project API key")


def team_role(conn: Connection, principal: Principal, team_id: str) -> str:
    """The caller's role in a team; NOT_FOUND when they are not in it."""
    if principal.kind == "key" and principal.team_id != team_id:
        raise not_found("Team", team_id)
    role = conn.execute(select(team_members.c.role).where(
        team_members.c.team_id == team_id,
        team_members.c.user_id == principal.user_id)).scalar()
    if role is None:
        raise not_found("Team", team_id)
    return role


def require_team_role(conn: Connection, principal: Principal, team_id: str,
                      minimum: str) -> str:
    role = team_role(conn, principal, team_id)
    if ROLES.index(role) < ROLES.index(minimum):
        raise forbidden([f"role:{minimum}"], [f"role:{role}"],
                        f"This needs the {minimum} role in the team; you are {role}")
    return role


@dataclass
class ProjectAccess:
    project_id: str
    team_id: str
    role: str


def require_project(conn: Connection, principal: Principal, project_id: str,
                    scope: str) -> ProjectAccess:
    """Check that the caller may act on a project with a scope; NOT_FOUND hides other
    tenants' projects, AUTH_FORBIDDEN names the missing scope."""
    if principal.kind == "key":
        # The key's own project: authentication has just read its team and the creator's
        # current role in this request, so there is nothing more to look up.
        if principal.project_id != project_id:
            raise not_found("Project", project_id)
        granted = principal.effective_key_scopes
        if scope not in granted:
            raise forbidden([scope], list(granted), f"Missing the '{scope}' scope for this action")
        # a key always has both: authentication read them with the key
        assert principal.team_id is not None and principal.creator_role is not None
        return ProjectAccess(project_id, principal.team_id, principal.creator_role)
    row = conn.execute(
        select(projects.c.team_id, team_members.c.role)
        .join(team_members, (team_members.c.team_id == projects.c.team_id)
              & (team_members.c.user_id == principal.user_id))
        .where(projects.c.id == project_id)).first()
    if row is None:
        raise not_found("Project", project_id)
    granted = (principal.effective_key_scopes if principal.kind == "key"
               else ROLE_SCOPES[row.role])
    if scope not in granted:
        raise forbidden([scope], list(granted), f"Missing the '{scope}' scope for this action")
    return ProjectAccess(project_id, row.team_id, row.role)


def require_in_project(conn: Connection, principal: Principal, row, scope: str, what: str,
                       ident: str):
    """A project's row (run, result, key, webhook, ...) the caller may act on with `scope`.
    A missing row and another tenant's row give the same NOT_FOUND, naming the object."""
    if row is None:
        raise not_found(what, ident)
    try:
        require_project(conn, principal, row.project_id, scope)
    except ApiError as exc:
        if exc.code == "NOT_FOUND":
            raise not_found(what, ident) from None
        raise
    return row


def require_owner(access: ProjectAccess, principal: Principal) -> None:
    if principal.kind != "user" or access.role != "owner":
        raise forbidden(["role:owner"], [f"role:{access.role}"],
                        "Only a team owner may do this")
