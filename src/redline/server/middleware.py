"""The request pipeline, as plain ASGI middleware (outermost first):

1. `RequestContext`: a request id on every response, security headers, and the last line of
   defence: any exception becomes the catalog's envelope (INTERNAL, or UNAVAILABLE when the
   database is unreachable), logged with the request id, never a stack trace to the client.
2. `BodyGuard`: the size cap per path, enforced from Content-Length and while streaming (before
   the whole body is read), and JSON content type on JSON endpoints.
3. `UnitOfWork`: one database transaction per request (`UnitOfWorkState`), committed only
   after the endpoint succeeded and before the response leaves: here, or already in the
   endpoint's thread when nothing after it can change the outcome (`deps.OneThreadRouter`);
   and `Idempotency-Key` handling, whose record is written in that same transaction (always
   committed here), so the effect and the record exist together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import anyio
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from redline.server.db import WRITE, is_nul_in_text, is_unavailable, sqlite_write_lock
from redline.server.http_errors import ApiError, error_response
from redline.server.kit.clock import utcnow
from redline.server.kit.ids import new_id
from redline.server.tables import idempotency_keys

log = logging.getLogger("redline.server")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


async def _send_response(send, response) -> None:
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class RequestContext:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = new_id("req")
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.append((b"x-request-id", request_id.encode()))
                for name, value in SECURITY_HEADERS:
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # the last line of defence: nothing escapes unenveloped
            if started:
                log.exception("error after the response started [%s]", request_id)
                return
            await _send_response(send_with_headers, exception_response(exc, request_id))


def exception_response(exc: BaseException, request_id: str | None):
    if isinstance(exc, ApiError):
        return error_response(exc.code, exc.message, exc.details, request_id, exc.headers)
    if isinstance(exc, RecursionError):
        return error_response("VALIDATION_ERROR", "The body is nested too deeply",
                              {"field": "body", "reason": "too_deep"}, request_id)
    if is_nul_in_text(exc):
        return error_response("VALIDATION_ERROR", "Text values cannot contain the NUL "
                              "character (U+0000): remove it and send the request again",
                              {"reason": "nul_character"}, request_id)
    if is_unavailable(exc):
        log.warning("database unavailable [%s]: %s", request_id, exc)
        return error_response("UNAVAILABLE", "The database cannot be reached right now",
                              {"dependency": "database"}, request_id, {"Retry-After": "2"})
    log.exception("internal error [%s]", request_id)
    return error_response("INTERNAL", "Internal server error; the operator can find it in the "
                          "logs by its requestId", {}, request_id)


class BodyGuard:
    """Caps request bodies before they are read whole, and wants JSON on JSON endpoints."""

    def __init__(self, app, default_cap: int, caps: dict[str, int], raw_paths: set[str]):
        self.app = app
        self.default_cap = default_cap
        self.caps = caps  # path -> cap, for the endpoints that take big bodies
        self.raw_paths = raw_paths  # endpoints that take a body other than JSON

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            return await self.app(scope, receive, send)
        path = scope["path"]
        cap = self.caps.get(path, self.default_cap)
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError("VALIDATION_ERROR", "Content-Length is not a number",
                               {"field": "Content-Length", "reason": "invalid"})
            if int(length) > cap:
                raise ApiError("PAYLOAD_TOO_LARGE", f"The body is {length} bytes; this "
                               f"endpoint takes at most {cap}", {"limit": cap})
        has_body = (length is not None and int(length) > 0) or "transfer-encoding" in headers
        if (path.startswith("/api/") and path not in self.raw_paths and has_body):
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != "application/json" and not media_type.endswith("+json"):
                raise ApiError("VALIDATION_ERROR", "Send the body as JSON "
                               "(Content-Type: application/json)",
                               {"field": "Content-Type", "reason": "unsupported_media_type",
                                "errors": [{"field": "Content-Type", "reason":
                                            "unsupported_media_type",
                                            "message": "expected application/json"}]})
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    # The framework turns errors while reading a body into a generic 400;
                    # this mark lets its handler answer the real reason.
                    scope.setdefault("state", {})["body_over_cap"] = cap
                    raise ApiError("PAYLOAD_TOO_LARGE", f"The body is over the {cap}-byte cap "
                                   "of this endpoint", {"limit": cap})
            return message

        await self.app(scope, counted_receive, send)


class UnitOfWorkState:
    """The request's database connection, opened on first use, committed once at the end."""

    def __init__(self, engine: Engine, write: bool, loop_reads=None):
        self.engine = engine
        self.write = write
        self.loop_reads = loop_reads  # how a read runs on the event loop (db.make_loop_reads)
        self._conn: Connection | None = None
        self.after_commit: list[Callable[[], None]] = []
        self.after_finish: list[Callable[[], None]] = []  # commit or not, connection released
        self.stores_response = False  # the response is stored with the effect (idempotency)
        self._lock = None
        self._lent: Connection | None = None  # a connection the caller owns (`lend`)

    def lend(self, conn: Connection) -> None:
        """Use `conn`, which the caller owns, as it is, instead of checking one out: the event
        loop's reads (`db.make_loop_reads`), where each statement is its own transaction, so
        there is nothing to begin or roll back. `finish` leaves it open, and hands the
        `after_finish` bookkeeping (which may write) to a thread."""
        self._lent = conn

    @property
    def opened(self) -> bool:
        return self._conn is not None or bool(self.after_finish)

    def connection(self) -> Connection:
        if self._conn is None and self._lent is not None:
            self._conn = self._lent  # in its owner's state: no BEGIN (see `lend`)
        elif self._conn is None:
            if self.write and self._lock is None:
                self._lock = sqlite_write_lock(self.engine)
                if self._lock is not None:
                    self._lock.acquire()
            conn = self.engine.connect()
            if self.write:
                conn = conn.execution_options(**WRITE)
            elif conn.dialect.name == "postgresql":
                # A read needs no transaction there: at READ COMMITTED each statement sees its
                # own snapshot inside one too, and BEGIN and ROLLBACK are two round trips.
                # (SQLite keeps its BEGIN: there a read transaction is one snapshot, for free.)
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.begin()
            self._conn = conn
        return self._conn

    def finish(self, commit: bool, before_commit: Callable[[Connection], None] | None = None):
        conn, lent = self._conn, self._lent
        try:
            if commit and (conn is not None or before_commit is not None):
                conn = self.connection()
                if before_commit is not None:
                    before_commit(conn)
                conn.commit()
            elif conn is not None and conn is not lent:
                conn.rollback()
        finally:
            if conn is not None and conn is not lent:
                conn.close()
            self._conn = self._lent = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            # Taken, not just read: a finished unit of work is not `opened` any more, so the
            # middleware does not finish it (and run these) a second time.
            after_finish, self.after_finish = self.after_finish, []
            if after_finish and lent is not None:  # on the event loop: not here
                _bookkeeping.submit(_run_all, after_finish)
            else:
                _run_all(after_finish)
        after_commit, self.after_commit = self.after_commit, []
        if commit:
            for callback in after_commit:
                try:
                    callback()
                except Exception:  # a wake-up hint failing must not fail the request
                    log.exception("after-commit callback failed")


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        callback()


# Bookkeeping a read leaves behind (a key's last use, at most once a minute per key): it writes,
# so it must not run on the event loop.
_bookkeeping = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redline-bookkeeping")

_finishers: anyio.CapacityLimiter | None = None


async def finish_in_thread(function, *args):
    """Run a unit of work's commit or rollback in a thread of its own small pool, not the
    endpoints' one. A SQLite writer holds the in-process write lock until it finishes, and the
    endpoints' threads may all be taken by requests waiting for that lock: finishing in one of
    those would wait for ever."""
    global _finishers
    if _finishers is None:
        _finishers = anyio.CapacityLimiter(16)
    return await anyio.to_thread.run_sync(function, *args, limiter=_finishers)


IDEMPOTENCY_TTL = timedelta(hours=24)
# A claim whose request never finished (the process died) is taken over after this long;
# its effect was rolled back with it, so running the request again doubles nothing.
IDEMPOTENCY_STALE = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


class UnitOfWork:
    def __init__(self, app, engine: Engine, loop_reads=None):
        self.app = app
        self.engine = engine
        self.loop_reads = loop_reads

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        write = scope["method"] in WRITE_METHODS
        uow = UnitOfWorkState(self.engine, write, None if write else self.loop_reads)
        scope.setdefault("state", {})["uow"] = uow
        if not write:
            try:
                await self.app(scope, receive, send)
            finally:
                # No thread hop for requests that never touched the database, nor for those
                # whose endpoint thread released it already (`deps.OneThreadRouter`).
                if uow.opened:
                    await finish_in_thread(uow.finish, False)
            return

        key = _header(scope, b"idempotency-key")
        claim = None
        if key is not None:
            if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
                raise ApiError("VALIDATION_ERROR", "Idempotency-Key must be 1 to 255 "
                               "printable characters", {"field": "Idempotency-Key",
                                                        "reason": "invalid"})
            body_file, request_hash = await _spool_body(receive, scope)
            receive = _replay_body(body_file)
            claim = Claim(_idempotency_scope(scope), key, request_hash)
            uow.stores_response = True
            replay = await anyio.to_thread.run_sync(self._claim, claim)
            if replay is not None:
                for message in replay:
                    await send(message)
                return

        messages: list[dict] = []

        async def buffer(message):
            messages.append(message)

        try:
            await self.app(scope, receive, buffer)
        except BaseException:
            if uow.opened:
                await finish_in_thread(uow.finish, False)
            if claim is not None:
                await anyio.to_thread.run_sync(self._release, claim)
            raise
        status = messages[0]["status"] if messages else 500
        succeeded = 200 <= status < 300
        record = None
        if claim is not None and succeeded:
            record = _stored_response(messages)
        try:
            if uow.opened or record is not None:  # else the endpoint's thread finished it
                await finish_in_thread(
                    uow.finish, succeeded,
                    (lambda conn: _complete(conn, claim, record)) if record is not None
                    else None)
        except Exception:
            if claim is not None:
                await anyio.to_thread.run_sync(self._release, claim)
            raise
        if claim is not None and not succeeded:
            # Nothing of a failed request is kept, so a corrected retry with the key runs anew.
            await anyio.to_thread.run_sync(self._release, claim)
        for message in messages:
            await send(message)

    def _claim(self, claim: Claim):
        """Take the key, or answer with the stored response, a mismatch or a conflict."""
        now = utcnow()
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            row = conn.execute(select(idempotency_keys).where(
                idempotency_keys.c.scope == claim.scope,
                idempotency_keys.c.key == claim.key)).first()
            if row is not None and row.created_at < now - IDEMPOTENCY_TTL:
                conn.execute(delete(idempotency_keys).where(
                    idempotency_keys.c.scope == claim.scope,
                    idempotency_keys.c.key == claim.key))
                row = None
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(idempotency_keys).values(
                            scope=claim.scope, key=claim.key, request_hash=claim.request_hash,
                            state="running", created_at=now, locked_at=now))
                    return None
                except IntegrityError:
                    row = conn.execute(select(idempotency_keys).where(
                        idempotency_keys.c.scope == claim.scope,
                        idempotency_keys.c.key == claim.key)).first()
            if row.request_hash != claim.request_hash:
                raise ApiError("IDEMPOTENCY_BODY_MISMATCH", "This Idempotency-Key was used "
                               "with a different request", {"field": "Idempotency-Key",
                                                            "reason": "body_mismatch"})
            if row.state == "done":
                headers = [(k.encode("latin-1"), v.encode("latin-1"))
                           for k, v in row.response_headers]
                headers.append((b"idempotent-replayed", b"true"))
                return ({"type": "http.response.start", "status": row.response_status,
                         "headers": headers},
                        {"type": "http.response.body", "body": row.response_body})
            if row.locked_at < now - IDEMPOTENCY_STALE:
                conn.execute(update(idempotency_keys).where(
                    idempotency_keys.c.scope == claim.scope,
                    idempotency_keys.c.key == claim.key).values(locked_at=now))
                return None
            raise ApiError("CONFLICT", "A request with this Idempotency-Key is still in "
                           "progress", {"field": "Idempotency-Key", "reason": "in_flight"},
                           {"Retry-After": "1"})

    def _release(self, claim: Claim) -> None:
        try:
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                conn.execute(delete(idempotency_keys).where(
                    idempotency_keys.c.scope == claim.scope,
                    idempotency_keys.c.key == claim.key,
                    idempotency_keys.c.state == "running"))
        except Exception:  # the stale-claim takeover will free it later
            log.exception("could not release an idempotency claim")


class Claim:
    def __init__(self, scope: str, key: str, request_hash: str):
        self.scope, self.key, self.request_hash = scope, key, request_hash


def _complete(conn: Connection, claim: Claim, record: dict[str, Any]) -> None:
    conn.execute(update(idempotency_keys).where(
        idempotency_keys.c.scope == claim.scope, idempotency_keys.c.key == claim.key
    ).values(state="done", **record))


def _stored_response(messages: list[dict]) -> dict[str, Any]:
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in start["headers"]
               if k.lower() not in (b"x-request-id", b"set-cookie")]
    return {"response_status": start["status"], "response_headers": headers,
            "response_body": body}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _idempotency_scope(scope) -> str:
    """Keys are per credential and per route: the same key elsewhere is another request."""
    credential = (_header(scope, b"x-api-key") or _header(scope, b"authorization")
                  or _header(scope, b"cookie") or "")
    material = f"{credential}|{scope['method']}|{scope['path']}"
    return hashlib.sha256(material.encode()).hexdigest()


async def _spool_body(receive, scope) -> tuple[Any, str]:
    """Read the body into a temporary file (memory up to 1 MB) while hashing it with the
    query string and content type: any difference makes it another request."""
    digest = hashlib.sha256(scope.get("query_string", b"") + b"|"
                            + (_header(scope, b"content-type") or "").encode() + b"|")
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError("VALIDATION_ERROR", "The client went away mid-body",
                           {"reason": "disconnected"})
        chunk = message.get("body", b"")
        digest.update(chunk)
        spool.write(chunk)
        if not message.get("more_body"):
            break
    spool.seek(0)
    return spool, digest.hexdigest()


def _replay_body(spool, chunk_size: int = 256 * 1024):
    done = False

    async def receive():
        nonlocal done
        if done:
            return {"type": "http.disconnect"}
        chunk = spool.read(chunk_size)
        more = len(chunk) == chunk_size
        if not more:
            done = True
            spool.close()
        return {"type": "http.request", "body": chunk, "more_body": more}

    return receive


def json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
