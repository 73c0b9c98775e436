"""The one catalog of Redline's error codes.

Every surface derives its behaviour from `CATALOG`: the server picks the HTTP status and the
`retryable`/`nextAction` fields of the envelope, the SDK picks its exception class and retry
policy, the CLI picks its exit code, the MCP server its `[CODE]` text. Nothing else in the code
base may hold a list of statuses, exit codes or retry rules.

This module is imported by clients too, so it depends on the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """How a client may retry a failed call (values, not sleeps: the caller decides to wait)."""

    max_retries: int = 0
    #: fixed delay before a retry, in seconds (CONFLICT waits 1 s)
    delay: float = 0.0
    #: exponential backoff with full jitter from `delay`, doubling each time
    exponential: bool = False
    #: wait what the server's Retry-After says
    honour_retry_after: bool = False


NO_RETRY = RetryPolicy()


@dataclass(frozen=True)
class ErrorKind:
    code: str
    http_status: int | None  # None: a client-side code the server never sends
    exit_code: int
    retryable: bool
    retry: RetryPolicy
    next_action: str
    when: str


def _kind(code, status, exit_code, retryable, retry, next_action, when) -> ErrorKind:
    return ErrorKind(code, status, exit_code, retryable, retry, next_action, when)


_KINDS = [
    _kind("AUTH_REQUIRED", 401, 3, False, NO_RETRY,
          "Send credentials: an X-API-Key header, or sign in with `redline login`.",
          "no credentials sent"),
    _kind("AUTH_INVALID", 401, 3, False, NO_RETRY,
          "Check the key or sign in again: it is unknown, revoked, deactivated or expired.",
          "key or session unparseable, unknown, revoked, deactivated or expired"),
    _kind("AUTH_FORBIDDEN", 403, 3, False, NO_RETRY,
          "Use credentials with the required scope or role, or ask a team admin to grant it.",
          "authenticated, but a scope or role is missing"),
    _kind("NOT_FOUND", 404, 4, False, NO_RETRY,
          "Check the id: list the resources to see which exist for your credentials.",
          "id does not exist or belongs to another tenant"),
    _kind("VALIDATION_ERROR", 400, 5, False, NO_RETRY,
          "Fix the listed field and send the request again.",
          "bad field, enum value, cursor, query parameter, malformed JSON"),
    _kind("PAYLOAD_TOO_LARGE", 413, 5, False, NO_RETRY,
          "Send a smaller body: split the batch or the report, or compress the artifact.",
          "body or upload over its cap"),
    _kind("CONFLICT", 409, 6, True, RetryPolicy(max_retries=1, delay=1.0),
          "Wait a second and retry once; the same request is still in progress.",
          "the same idempotency key or a run of that plan is still in flight"),
    _kind("PRECONDITION_FAILED", 412, 6, False, NO_RETRY,
          "Fetch the resource again, reapply your change to the new version, then retry.",
          "codeVersion / If-Match older than the stored one"),
    _kind("IDEMPOTENCY_BODY_MISMATCH", 409, 6, False, NO_RETRY,
          "Use a new Idempotency-Key for a different request.",
          "an idempotency key reused with a different request"),
    _kind("RATE_LIMITED", 429, 11, True, RetryPolicy(max_retries=3, honour_retry_after=True),
          "Wait for the Retry-After seconds, then retry.",
          "per-key, per-endpoint-group limit hit"),
    _kind("INSUFFICIENT_CREDITS", 402, 12, False, NO_RETRY,
          "The team's execution budget is spent: raise it in the team settings.",
          "a team's execution budget is spent"),
    _kind("UNSUPPORTED", 501, 7, False, NO_RETRY,
          "This feature is not enabled on this server or not in this version.",
          "the feature is not enabled or not on this server's version"),
    _kind("INTERNAL", 500, 1, True, RetryPolicy(max_retries=1, delay=1.0),
          "Retry once; if it fails again, report the requestId to the server's operator.",
          "unhandled server error"),
    _kind("UNAVAILABLE", 503, 10, True, RetryPolicy(max_retries=4, delay=0.5, exponential=True),
          "Retry with exponential backoff; the database or blob store is unreachable.",
          "database or blob store unreachable, shutting down"),
    # Client-side codes: the server never sends them.
    _kind("NETWORK_ERROR", None, 10, True, RetryPolicy(max_retries=4, delay=0.5, exponential=True),
          "Check that the server is up and REDLINE_URL is right, then retry.",
          "host unreachable, connection refused or reset"),
    _kind("TIMEOUT", None, 7, True, NO_RETRY,
          "The request may have landed: verify (fetch or list) before retrying a write.",
          "no response in time"),
    _kind("WAIT_TIMEOUT", None, 7, True, NO_RETRY,
          "The run goes on: re-poll the same id with `redline wait RUN_ID`; never re-trigger.",
          "a wait reached its ceiling"),
]

CATALOG: dict[str, ErrorKind] = {kind.code: kind for kind in _KINDS}

SERVER_CODES = [k.code for k in _KINDS if k.http_status is not None]
CLIENT_CODES = [k.code for k in _KINDS if k.http_status is None]

#: CLI-only exit statuses that are not error codes
EXIT_OK = 0
EXIT_VERDICT_NOT_PASSED = 1
EXIT_NOT_IMPLEMENTED = 2
EXIT_USAGE = 5  # flag-parse errors and a bad --output value
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def kind_for_status(status: int) -> ErrorKind:
    """The catalog entry for an HTTP status when a body has no code (a proxy's 502, say)."""
    for kind in _KINDS:
        if kind.http_status == status:
            return kind
    if status >= 500:
        return CATALOG["UNAVAILABLE"] if status in (502, 504) else CATALOG["INTERNAL"]
    return CATALOG["VALIDATION_ERROR"]


def envelope(code: str, message: str, details: dict[str, Any] | None = None,
             request_id: str | None = None) -> dict[str, Any]:
    """The error body every surface prints: `{"error": {code, message, details, ...}}`."""
    kind = CATALOG.get(code)
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "details": details or {},
        "retryable": kind.retryable if kind else False,
        "nextAction": kind.next_action if kind else "See the message.",
    }
    if request_id:
        body["requestId"] = request_id
    return {"error": body}
