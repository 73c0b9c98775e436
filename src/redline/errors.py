"""The one catalog of Redline's error codes, and the one function that builds the envelope.

Every surface derives its behaviour from `CATALOG`: the server picks the HTTP status and the
`retryable`/`nextAction` fields of the envelope, the SDK picks its exception class and retry
policy, the CLI picks its exit code, the MCP server its `[CODE]` text. Nothing else in the code
base may hold a list of statuses, exit codes or retry rules, and nothing else builds the
`{"error": {...}}` envelope: the server, the SDK and the CLI all call `envelope`.

Each entry says which side sends it (`side`): the server (it has an HTTP status), or the client
(the SDK for transport failures and verdicts, the CLI for what only a command line has:
confirmation, signals, commands not in this version).

This module is imported by clients too, so it depends on the standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


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

    def describe(self) -> str:
        """The policy in words, as the docs' tables print it."""
        if not self.max_retries:
            return "—"
        if self.honour_retry_after:
            return f"honour Retry-After, at most {self.max_retries}"
        if self.exponential:
            return f"backoff with jitter from {self.delay:g} s, at most {self.max_retries}"
        times = "once" if self.max_retries == 1 else f"{self.max_retries} times"
        return f"{times}, after {self.delay:g} s"


NO_RETRY = RetryPolicy()


Sender = Literal["server", "sdk", "cli"]


@dataclass(frozen=True)
class ErrorKind:
    code: str
    http_status: int | None  # None: a client-side code the server never sends
    exit_code: int
    retryable: bool
    retry: RetryPolicy
    next_action: str
    when: str
    #: who raises it: the server, the SDK (transport, verdicts) or the CLI alone
    sender: Sender = "server"

    @property
    def side(self) -> Literal["server", "client"]:
        """Which side of the wire sends it: `server`, or `client` (SDK or CLI)."""
        return "server" if self.sender == "server" else "client"


def _kind(code, status, exit_code, retryable, retry, next_action, when,
          sender: Sender = "server") -> ErrorKind:
    assert (status is None) == (sender != "server"), code
    return ErrorKind(code, status, exit_code, retryable, retry, next_action, when, sender)


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
    # Client side, raised by the SDK: the server never sends them.
    _kind("NETWORK_ERROR", None, 10, True, RetryPolicy(max_retries=4, delay=0.5, exponential=True),
          "Check that the server is up and REDLINE_URL is right, then retry.",
          "host unreachable, connection refused or reset", "sdk"),
    _kind("TIMEOUT", None, 7, True, NO_RETRY,
          "The request may have landed: verify (fetch or list) before retrying a write.",
          "no response in time", "sdk"),
    _kind("WAIT_TIMEOUT", None, 7, True, NO_RETRY,
          "The run goes on: re-poll the same id with `redline wait RUN_ID`; never re-trigger.",
          "a wait reached its ceiling", "sdk"),
    _kind("RUN_FAILED", None, 1, False, NO_RETRY,
          "Look at the run's failed tests: `redline runs get RUN_ID`.",
          "a run's verdict is not passed when the job was to get a verdict", "sdk"),
    # Client side, raised by an executed run's handle (`client.plans.command(...)`).
    _kind("COMMAND_EXIT", None, 1, False, NO_RETRY,
          "The command ran and exited non-zero: read its output with `redline runs log "
          "RUN_ID` and its failed tests with `redline runs get RUN_ID`.",
          "an executed run's command exited with a non-zero status", "sdk"),
    _kind("NOT_STARTED", None, 6, False, NO_RETRY,
          "Call start() (or run()) on the handle first.",
          "wait, signal or cancel on a command handle that was never started", "sdk"),
    _kind("ALREADY_STARTED", None, 6, False, NO_RETRY,
          "A handle is not reusable: make a new one with client.plans.command(...).",
          "start on a command handle that was started already", "sdk"),
    _kind("CONNECTION_CLOSED", None, 10, True, NO_RETRY,
          "The run goes on: read the log again from the offset in `details` "
          "(`redline runs log RUN_ID --follow --offset N`).",
          "a run's log stream dropped before the run ended", "sdk"),
    # Client side, raised by the CLI alone.
    _kind("CONFIRMATION_REQUIRED", None, 2, False, NO_RETRY,
          "Run it again with --yes to confirm (see `example`).",
          "a destructive command without --yes and without a terminal to confirm on", "cli"),
    _kind("NOT_IMPLEMENTED", None, 2, False, NO_RETRY,
          "Use the REST API or the SDK for this until the command exists.",
          "a command this version of the CLI does not have yet", "cli"),
    _kind("CANCELLED", None, 130, False, NO_RETRY,
          "Run the command again.",
          "interrupted: SIGINT (exit 130) or SIGTERM (exit 143)", "cli"),
]

CATALOG: dict[str, ErrorKind] = {kind.code: kind for kind in _KINDS}

SERVER_CODES = [k.code for k in _KINDS if k.side == "server"]
CLIENT_CODES = [k.code for k in _KINDS if k.side == "client"]
#: the client codes the SDK raises (each has its exception class)
SDK_CODES = [k.code for k in _KINDS if k.sender == "sdk"]
#: the client codes only the CLI raises
CLI_CODES = [k.code for k in _KINDS if k.sender == "cli"]

#: exit statuses, named; all but success and SIGTERM are a catalog entry's
EXIT_OK = 0
EXIT_VERDICT_NOT_PASSED = CATALOG["RUN_FAILED"].exit_code
EXIT_NOT_IMPLEMENTED = CATALOG["NOT_IMPLEMENTED"].exit_code
EXIT_USAGE = CATALOG["VALIDATION_ERROR"].exit_code  # flag-parse errors, a bad --output value
EXIT_SIGINT = CATALOG["CANCELLED"].exit_code
EXIT_SIGTERM = 143  # CANCELLED by SIGTERM: 128 + the signal's number, like SIGINT's 130


def kind_for_status(status: int) -> ErrorKind:
    """The catalog entry for an HTTP status when a body has no code (a proxy's 502, say)."""
    for kind in _KINDS:
        if kind.http_status == status:
            return kind
    if status >= 500:
        return CATALOG["UNAVAILABLE"] if status in (502, 504) else CATALOG["INTERNAL"]
    return CATALOG["VALIDATION_ERROR"]


def envelope(code: str, message: str, details: Mapping[str, Any] | None = None,
             request_id: str | None = None, *, retryable: bool | None = None,
             next_action: str | None = None, extra: Mapping[str, Any] | None = None,
             exit_code: int | None = None) -> dict[str, Any]:
    """The error body every surface prints: `{"error": {code, message, details, retryable,
    nextAction, requestId}}`, built here alone (the server's responses, the SDK's
    `to_envelope`, the CLI's stderr line and the MCP server's structured content).

    `retryable` and `next_action` default to the catalog's (a code it does not know, from a
    newer server, is not retryable); `extra` adds surface-specific fields (the CLI's
    `example`); `exit_code`, given by the CLI, becomes `exitCode`.
    """
    kind = CATALOG.get(code)
    if retryable is None:
        retryable = kind.retryable if kind else False
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "details": dict(details or {}),
        "retryable": retryable,
        "nextAction": next_action or (kind.next_action if kind else "See the message."),
    }
    if request_id:
        body["requestId"] = request_id
    if extra:
        body.update({key: value for key, value in extra.items() if value is not None})
    if exit_code is not None:
        body["exitCode"] = exit_code
    return {"error": body}


def markdown_table() -> str:
    """The code table of docs/cli.md, from the catalog (`python -m redline.errors`)."""
    lines = ["| code | sent by | HTTP | exit | retryable | automatic retries | next action |",
             "|---|---|---|---|---|---|---|"]
    for kind in _KINDS:
        lines.append(f"| `{kind.code}` | {kind.sender} | {kind.http_status or '—'} | "
                     f"{kind.exit_code} | {'yes' if kind.retryable else 'no'} | "
                     f"{kind.retry.describe()} | {kind.next_action} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
