"""`Idempotency-Key` records (DESIGN.md section 4): the claim of a key, its stored response,
and its release. The record of a finished request is written by `complete` in the request's
own transaction, so its effect and its record exist together or not at all."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from redline.server.http_errors import ApiError
from redline.server.kit.clock import utcnow
from redline.server.kit.secrets import SecretBox
from redline.server.tables import idempotency_keys

log = logging.getLogger("redline.server")

TTL = timedelta(hours=24)
# A claim is a lease: the request that holds it renews it every `RENEW_EVERY` seconds while
# it runs (`renew`), so a claim not renewed for `STALE_AFTER` belongs to a request that died
# with its process; a retry takes it over at once. The dead request's effect was rolled back
# with it, so running it again doubles nothing.
STALE_AFTER = timedelta(seconds=8)
RENEW_EVERY = 2.0
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Claim:
    scope: str  # the credential, method and path the key belongs to
    key: str
    request_hash: str


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: list[list[str]]
    body: bytes


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError("VALIDATION_ERROR", "Idempotency-Key must be 1 to 255 printable "
                       "characters", {"field": "Idempotency-Key", "reason": "invalid"})


def claim_scope(credential: str, method: str, path: str) -> str:
    """Keys are per credential and per route: the same key elsewhere is another request."""
    return hashlib.sha256(f"{credential}|{method}|{path}".encode()).hexdigest()


def _where(claim: Claim):
    return (idempotency_keys.c.scope == claim.scope) & (idempotency_keys.c.key == claim.key)


def take(conn: Connection, claim: Claim, box: SecretBox) -> StoredResponse | None:
    """Take the key (None: run the request), or answer the stored response; a mismatch is
    IDEMPOTENCY_BODY_MISMATCH and a request still running with the key is CONFLICT. In a
    short transaction of its own, committed before the request runs."""
    now = utcnow()
    row = conn.execute(select(idempotency_keys).where(_where(claim))).first()
    if row is not None and row.created_at < now - TTL:
        conn.execute(delete(idempotency_keys).where(_where(claim)))
        row = None
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(idempotency_keys).values(
                    scope=claim.scope, key=claim.key, request_hash=claim.request_hash,
                    state="running", created_at=now, locked_at=now))
            return None
        except IntegrityError:  # another request took it in between
            row = conn.execute(select(idempotency_keys).where(_where(claim))).one()
    if row.request_hash != claim.request_hash:
        raise ApiError("IDEMPOTENCY_BODY_MISMATCH", "This Idempotency-Key was used with a "
                       "different request", {"field": "Idempotency-Key",
                                             "reason": "body_mismatch"})
    if row.state == "done":
        return StoredResponse(row.response_status, row.response_headers,
                              box.open_bytes(row.response_body))
    if row.locked_at < now - STALE_AFTER:
        conn.execute(update(idempotency_keys).where(_where(claim)).values(locked_at=now))
        return None
    raise ApiError("CONFLICT", "A request with this Idempotency-Key is still in progress",
                   {"field": "Idempotency-Key", "reason": "in_flight"},
                   {"Retry-After": "1"})


def renew(conn: Connection, claim: Claim) -> None:
    """Extend the lease of a claim whose request is still running."""
    conn.execute(update(idempotency_keys).where(
        _where(claim), idempotency_keys.c.state == "running").values(locked_at=utcnow()))


def complete(conn: Connection, claim: Claim, response: StoredResponse,
             box: SecretBox) -> None:
    """Store the response with the request's effect, in its transaction. The body is sealed:
    it may hold a secret shown once (a new API key, a webhook secret, an invitation's token)."""
    conn.execute(update(idempotency_keys).where(_where(claim)).values(
        state="done", response_status=response.status, response_headers=response.headers,
        response_body=box.seal(response.body).encode("ascii")))


def release(conn: Connection, claim: Claim) -> None:
    """Free the key of a request that failed: nothing of it is kept, so a corrected retry
    with the same key runs anew."""
    conn.execute(delete(idempotency_keys).where(
        _where(claim), idempotency_keys.c.state == "running"))


def stored_response(messages: list[dict[str, Any]]) -> StoredResponse:
    """What is kept of a response given as ASGI messages (not its request id or cookies)."""
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in start["headers"]
               if k.lower() not in (b"x-request-id", b"set-cookie")]
    return StoredResponse(start["status"], headers, body)


def replay_messages(response: StoredResponse) -> list[dict[str, Any]]:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"idempotent-replayed", b"true"))
    return [{"type": "http.response.start", "status": response.status, "headers": headers},
            {"type": "http.response.body", "body": response.body}]
