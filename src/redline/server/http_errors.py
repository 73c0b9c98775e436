"""Turning every failure into the catalog's envelope.

Services raise `ApiError` (or its helpers); the framework's own errors (unknown path, wrong
method, validation) are translated here; anything else becomes INTERNAL, logged with its
request id and never with a stack trace in the response.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from redline import errors
from redline.errors import CATALOG

log = logging.getLogger("redline.server")


class ApiError(Exception):
    """An expected failure: a catalog code, a message for people, details for programs."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        assert code in CATALOG and CATALOG[code].http_status, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return CATALOG[self.code].http_status  # type: ignore[return-value]


def not_found(what: str, ident: str | None = None) -> ApiError:
    """The same answer whether the id is missing or another tenant's: never reveal which."""
    message = f"{what} not found" if ident is None else f"{what} '{ident}' not found"
    return ApiError("NOT_FOUND", message, {"resource": what.lower().replace(" ", "_")})


def validation_error(field: str, reason: str, message: str) -> ApiError:
    return ApiError("VALIDATION_ERROR", message,
                    {"field": field, "reason": reason,
                     "errors": [{"field": field, "reason": reason, "message": message}]})


def request_id_of(scope_or_request) -> str | None:
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return scope.get("state", {}).get("request_id")


def error_response(code: str, message: str, details: dict[str, Any] | None = None,
                   request_id: str | None = None,
                   headers: dict[str, str] | None = None,
                   status_override: int | None = None) -> Response:
    kind = CATALOG[code]
    all_headers = dict(headers or {})
    if code in ("RATE_LIMITED", "UNAVAILABLE") and "Retry-After" not in all_headers:
        all_headers["Retry-After"] = "1" if code == "UNAVAILABLE" else "60"
    # The one envelope builder the SDK and the CLI use too.
    body = json.dumps(errors.envelope(code, message, details, request_id),
                      separators=(",", ":"))
    status = status_override or kind.http_status
    assert status is not None, f"{code} is a client-side code: the server never sends it"
    return Response(body, status_code=status, headers=all_headers,
                    media_type="application/json")


def _field_name(loc: tuple) -> str:
    # ('body', 'projectId') -> 'projectId'; ('query', 'limit') -> 'limit'
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or (str(loc[0]) if loc else "body")


_REASONS = {"missing": "required", "extra_forbidden": "unknown_field", "json_invalid":
            "malformed_json", "literal_error": "invalid_choice", "enum": "invalid_choice"}


def validation_details(errors: list[dict]) -> tuple[str, dict]:
    items = []
    for err in errors:
        field = _field_name(tuple(err.get("loc", ())))
        if err.get("type") == "json_invalid":
            field = "body"  # the location is a character offset, not a field
        reason = _REASONS.get(err.get("type", ""), err.get("type", "invalid"))
        message = err.get("msg", "invalid value")
        if reason == "required":
            message = f"Field '{field}' is required"
        elif reason == "malformed_json":
            message = f"Malformed JSON body: {err.get('ctx', {}).get('error', 'invalid JSON')}"
        elif reason == "unknown_field":
            message = f"Field '{field}' is not accepted here"
        else:
            message = f"Field '{field}': {message}"
        items.append({"field": field, "reason": reason, "message": message})
    first = items[0] if items else {"field": "body", "reason": "invalid", "message": "Invalid"}
    return first["message"], {"field": first["field"], "reason": first["reason"],
                              "errors": items}


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method any route offers on this path (the framework names only one route's)."""
    import re

    from fastapi import routing
    from starlette.routing import compile_path

    table = getattr(app.state, "method_table", None)
    if table is None:
        table = []
        for context in routing.iter_route_contexts(app.routes):
            if context.methods and context.path is not None:
                regex, _, _ = compile_path(context.path)
                table.append((regex, set(context.methods), "{" not in context.path))
        app.state.method_table = table
    # A literal path (/api/runs/import) outranks a pattern that also matches (/api/runs/{id}).
    literal: set[str] = set()
    patterned: set[str] = set()
    for regex, route_methods, static in table:
        if re.match(regex, path):
            (literal if static else patterned).update(route_methods)
    return sorted(literal or patterned)


def install_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError):
        return error_response(exc.code, exc.message, exc.details, request_id_of(request),
                              exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        message, details = validation_details(list(exc.errors()))
        return error_response("VALIDATION_ERROR", message, details, request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_exception(request: Request, exc: StarletteHTTPException):
        rid = request_id_of(request)
        over_cap = request.scope.get("state", {}).get("body_over_cap")
        if over_cap is not None:
            return error_response("PAYLOAD_TOO_LARGE", f"The body is over the {over_cap}-byte "
                                  "cap of this endpoint", {"limit": over_cap}, rid)
        if exc.status_code == 404:
            return error_response("NOT_FOUND", f"No endpoint at {request.url.path}",
                                  {"path": request.url.path}, rid)
        if exc.status_code == 405:
            # HTTP keeps 405 (with Allow) as RFC 9110 wants; the code stays the catalog's
            # VALIDATION_ERROR so clients branch on it like any other bad request.
            allow = ", ".join(allowed_methods(request.app, request.url.path))
            return error_response(
                "VALIDATION_ERROR", f"Method {request.method} is not allowed on this path",
                {"field": "method", "reason": "method_not_allowed", "allowed": allow},
                rid, {"Allow": allow} if allow else None, status_override=405)
        if exc.status_code == 413:
            return error_response("PAYLOAD_TOO_LARGE", str(exc.detail), {}, rid)
        return error_response("VALIDATION_ERROR", str(exc.detail),
                              {"reason": "bad_request"}, rid)
