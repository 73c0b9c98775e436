"""The request pipeline, as plain ASGI middleware (outermost first):

1. `RequestContext`: a request id on every response, security headers, and the last line of
   defence: any exception becomes the catalog's envelope (INTERNAL, or UNAVAILABLE when the
   database is unreachable), logged with the request id, never a stack trace to the client.
2. `BodyGuard`: the size cap per path, enforced from Content-Length and while streaming (before
   the whole body is read), and JSON content type on JSON endpoints.
3. `UnitOfWorkMiddleware`: the one place a request's database work is finished
   (`unit_of_work.py`). A read gives its connection back when its response starts; a write is
   committed once its response is known to be a success (status under 400) and before that
   response leaves, or rolled back. `Idempotency-Key` handling is here too: the record of a
   request is written in that same transaction (`idempotency.py`), so the effect and the
   record exist together or not at all.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import tempfile
from typing import Any

import anyio
from sqlalchemy import Engine

from redline.server import idempotency
from redline.server.db import is_nul_in_text, is_unavailable
from redline.server.http_errors import ApiError, error_response
from redline.server.kit.ids import new_id
from redline.server.kit.secrets import box_for
from redline.server.unit_of_work import WRITE_METHODS, Slots, UnitOfWork, WriterTurns

log = logging.getLogger("redline.server")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

# Sign-in ignores Idempotency-Key: a replay would hand the stored token to whoever holds the
# key, and signing in twice does no harm.
NO_IDEMPOTENCY = frozenset({"/api/auth/login"})


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


class UnitOfWorkMiddleware:
    """Gives each request its `UnitOfWork` and finishes it: the one commit point."""

    def __init__(self, app, engine: Engine, slots: Slots, turns: WriterTurns | None):
        self.app = app
        self.engine = engine
        self.slots = slots
        self.turns = turns

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        write = scope["method"] in WRITE_METHODS
        uow = UnitOfWork(self.engine, write, self.slots, self.turns)
        scope.setdefault("state", {})["uow"] = uow
        if write:
            await self._write(scope, receive, send, uow)
        else:
            await self._read(scope, receive, send, uow)

    async def _read(self, scope, receive, send, uow: UnitOfWork) -> None:
        async def send_after_finishing(message):
            if message["type"] == "http.response.start":
                await uow.finish(False)  # the response is made: give the connection back
            await send(message)

        try:
            await self.app(scope, receive, send_after_finishing)
        finally:
            await uow.finish(False)  # when no response started (an error), or a no-op

    async def _write(self, scope, receive, send, uow: UnitOfWork) -> None:
        key = (_header(scope, b"idempotency-key")
               if scope["path"].startswith("/api/") and scope["path"] not in NO_IDEMPOTENCY
               else None)
        claim = None
        if key is not None:
            idempotency.check_key(key)
            body_file, request_hash = await _spool_body(receive, scope)
            receive = _replay_body(body_file)
            credential = (_header(scope, b"x-api-key") or _header(scope, b"authorization")
                          or _header(scope, b"cookie") or "")
            claim = idempotency.Claim(
                idempotency.claim_scope(credential, scope["method"], scope["path"]), key,
                request_hash)
            # stored responses are sealed: they may hold a secret shown once
            box = box_for(scope["app"].state.settings.resolved_secret_key)
            stored = await uow.write_apart(lambda conn: idempotency.take(conn, claim, box))
            if stored is not None:
                for message in idempotency.replay_messages(stored):
                    await send(message)
                return

        messages: list[dict[str, Any]] = []

        async def buffer(message):
            messages.append(message)

        try:
            if claim is not None:
                # (a task, not a task group: the app's own exceptions stay unwrapped)
                renewer = asyncio.create_task(self._renew(claim))
                try:
                    await self.app(scope, receive, buffer)
                finally:
                    renewer.cancel()  # a renewal under way finishes harmlessly on its own
            else:
                await self.app(scope, receive, buffer)
            status = messages[0]["status"] if messages else 500
            succeeded = status < 400
            record = None
            before_commit = None
            if claim is not None and 200 <= status < 300:
                record = idempotency.stored_response(messages)
                before_commit = functools.partial(idempotency.complete, claim=claim,
                                                  response=record, box=box)
                await uow.open_write()  # the record is written even if nothing else was
            await uow.finish(succeeded, before_commit)
        except BaseException:
            await uow.finish(False)
            if claim is not None:
                await _release(uow, claim)
            raise
        if claim is not None and record is None:
            await _release(uow, claim)
        for message in messages:
            await send(message)


    async def _renew(self, claim: idempotency.Claim) -> None:
        """Renew the claim's lease while its request runs: in a unit of work of its own (the
        request's may hold its connection and, on SQLite, the writer turn meanwhile)."""
        while True:
            await anyio.sleep(idempotency.RENEW_EVERY)
            renewal = UnitOfWork(self.engine, True, self.slots, self.turns)
            try:
                await renewal.write_apart(lambda conn: idempotency.renew(conn, claim))
            except Exception:  # busy: the next renewal tries again
                log.warning("could not renew an idempotency claim", exc_info=True)


async def _release(uow: UnitOfWork, claim: idempotency.Claim) -> None:
    try:
        await uow.write_apart(lambda conn: idempotency.release(conn, claim))
    except Exception:  # the stale-claim takeover frees it later
        log.exception("could not release an idempotency claim")


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _spool_body(receive, scope) -> tuple[Any, str]:
    """Read the body into a temporary file (memory up to 1 MB) while hashing it with the
    query string and content type: any difference makes it another request."""
    digest = hashlib.sha256(scope.get("query_string", b"") + b"|"
                            + (_header(scope, b"content-type") or "").encode() + b"|")
    # Closed by the replay (`_replay_body`) once it has been read back.
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115
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
