"""Accounts: creating users, signing in and out (with per-account throttling), `me`."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import Connection

from redline.server.accounts import repository as repo
from redline.server.auth import ROLE_SCOPES, Principal
from redline.server.http_errors import ApiError, validation_error
from redline.server.kit import passwords, tokens
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_id

MIN_PASSWORD = 8


def user_json(row) -> dict:
    return {"id": row.id, "email": row.email, "name": row.name, "createdAt": iso(row.created_at)}


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email:
        raise validation_error("email", "invalid", f"'{email}' is not an email address")
    return email


def get_user(conn: Connection, user_id: str):
    """The user's row, or None."""
    return repo.get_user(conn, user_id)


def find_user_by_email(conn: Connection, email: str):
    """The row of the user with this email (compared in lower case), or None."""
    return repo.find_user_by_email(conn, email)


def has_users(conn: Connection) -> bool:
    """Whether anyone has an account yet (no: the server still awaits its setup)."""
    return repo.count_users(conn) > 0


def create_user(conn: Connection, email: str, password: str, name: str | None = None):
    email = normalise_email(email)
    if len(password) < MIN_PASSWORD:
        raise validation_error("password", "too_short",
                               f"The password needs at least {MIN_PASSWORD} characters")
    if repo.find_user_by_email(conn, email) is not None:
        raise ApiError("CONFLICT", f"A user with email '{email}' exists already",
                       {"field": "email", "reason": "exists"})
    now = utcnow()
    user_id = new_id("user")
    repo.insert_user(conn, id=user_id, email=email, name=name or email.split("@")[0],
                     password_hash=passwords.hash_password(password), failed_logins=0,
                     created_at=now, updated_at=now)
    return repo.get_user(conn, user_id)


def start_session(conn: Connection, user_id: str, settings, kind: str = "token") -> dict:
    now = utcnow()
    new = tokens.make_token(tokens.PERSONAL_TOKEN_PREFIX)
    csrf = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=settings.session_absolute_seconds)
    repo.insert_session(conn, id=new_id("sess"), user_id=user_id, kind=kind, lookup=new.lookup,
                        secret_hash=new.secret_hash, csrf_token=csrf, created_at=now,
                        last_seen_at=now, expires_at=expires)
    return {"token": new.token, "expiresAt": iso(expires), "csrfToken": csrf}


def login(conn: Connection, email: str, password: str, settings, limiter) -> dict:
    """Sign a user in. Failures are counted per account (not per address, OWASP), so an
    attacker spreading guesses over many addresses is throttled too; an unknown email and a
    wrong password get the same answer."""
    email = email.strip().lower()
    counter = f"login-fail:{email}"
    # Count the attempt before checking the password: concurrent guesses cannot all slip in
    # between a read of the counter and its increment. A success clears it.
    attempts = limiter.incr(counter, settings.login_lockout_seconds)
    if attempts > settings.login_max_failures:
        raise ApiError("RATE_LIMITED", "Too many failed sign-ins for this account; wait "
                       "before trying again", {"group": "login", "retryAfter":
                                               settings.login_lockout_seconds},
                       {"Retry-After": str(settings.login_lockout_seconds)})
    user = repo.find_user_by_email(conn, email)
    if not passwords.verify_password(user.password_hash if user else None, password):
        raise ApiError("AUTH_INVALID", "Email or password is wrong", {"reason": "credentials"})
    limiter.reset(counter)
    if passwords.needs_rehash(user.password_hash):
        repo.update_user(conn, user.id, password_hash=passwords.hash_password(password),
                         updated_at=utcnow())
    session = start_session(conn, user.id, settings)
    return {**session, "user": user_json(user)}


def logout(conn: Connection, principal: Principal) -> None:
    if principal.session_id is None:
        raise ApiError("AUTH_FORBIDDEN", "API keys do not sign in or out; deactivate the key "
                       "instead", {"required": ["user-session"], "granted": []})
    repo.revoke_session(conn, principal.session_id, utcnow())


def me(conn: Connection, principal: Principal) -> dict:
    user = repo.get_user(conn, principal.user_id)
    teams = [{"teamId": t.id, "teamName": t.name, "role": t.role}
             for t in repo.memberships(conn, principal.user_id)]
    if principal.kind == "key":
        teams = [t for t in teams if t["teamId"] == principal.team_id]
        scopes = sorted(principal.effective_key_scopes)
    else:
        scopes = sorted(set().union(*(ROLE_SCOPES[t["role"]] for t in teams)) if teams else [])
    return {**user_json(user), "kind": principal.kind, "keyId": principal.key_id,
            "projectId": principal.project_id, "scopes": scopes, "teams": teams}


def update_me(conn: Connection, principal: Principal, name: str | None,
              password: str | None, current_password: str | None = None) -> dict:
    """A new name, or a new password. A new password needs the current one (a stolen session
    alone cannot take the account over) and ends the user's other sessions and personal
    tokens, all but the one making the change."""
    if principal.kind != "user":
        raise ApiError("AUTH_FORBIDDEN", "An API key cannot change its user's account",
                       {"required": ["user-session"], "granted": []})
    values: dict = {}
    now = utcnow()
    if name is not None:
        values["name"] = name
    if password is not None:
        if current_password is None:
            raise validation_error("currentPassword", "required", "currentPassword is "
                                   "required to change the password")
        user = repo.get_user(conn, principal.user_id)
        if not passwords.verify_password(user.password_hash, current_password):
            raise validation_error("currentPassword", "incorrect",
                                   "currentPassword is not the current password")
        values["password_hash"] = passwords.hash_password(password)
        repo.revoke_other_sessions(conn, principal.user_id, principal.session_id, now)
    if values:
        repo.update_user(conn, principal.user_id, updated_at=now, **values)
    return me(conn, principal)
