"""The exceptions the SDK raises, one tree for every surface built on it.

```
RedlineError                         anything the SDK raises; has .code and .exit_code
├── APIError                         the server answered with an error envelope
│   ├── AuthRequiredError            AUTH_REQUIRED              (401)
│   ├── AuthInvalidError             AUTH_INVALID               (401)
│   ├── AuthForbiddenError           AUTH_FORBIDDEN             (403) .required_scopes, .granted_scopes
│   ├── NotFoundError                NOT_FOUND                  (404)
│   ├── ValidationError              VALIDATION_ERROR           (400)
│   ├── PayloadTooLargeError         PAYLOAD_TOO_LARGE          (413)
│   ├── ConflictError                CONFLICT                   (409)
│   ├── PreconditionFailedError      PRECONDITION_FAILED        (412)
│   ├── IdempotencyMismatchError     IDEMPOTENCY_BODY_MISMATCH  (409)
│   ├── RateLimitedError             RATE_LIMITED               (429)
│   ├── InsufficientCreditsError     INSUFFICIENT_CREDITS       (402)
│   ├── UnsupportedError             UNSUPPORTED                (501)
│   ├── InternalServerError          INTERNAL                   (500)
│   └── UnavailableError             UNAVAILABLE                (503)
├── TransportError                   no usable HTTP answer
│   ├── NetworkError                 NETWORK_ERROR   host unreachable, connection refused or reset
│   └── TimeoutError                 TIMEOUT         no answer in time (a write may have landed)
├── WaitTimeoutError                 WAIT_TIMEOUT    a wait reached its ceiling; the run goes on
├── RunFailedError                   RUN_FAILED      a run's verdict is not `passed`
│   └── CommandExitError             COMMAND_EXIT    an executed run's command exited non-zero
├── NotStartedError                  NOT_STARTED     wait/signal/cancel on a handle never started
├── AlreadyStartedError              ALREADY_STARTED start on a handle started already
└── ConnectionClosedError            CONNECTION_CLOSED  a log stream dropped before the run ended
```

An executed run's handle (`client.plans.command(...)`) fails like Go's `exec.Cmd`:
`CommandExitError` when the command ran and exited non-zero (its `exit_code` is the
command's own status, and `run` the finished run), `RunFailedError` for another verdict than
`passed` when asked to raise (a `blocked` or `cancelled` run), `WaitTimeoutError` at the
wait's ceiling (re-poll the same id, never re-trigger), `NotStartedError` and
`AlreadyStartedError` for a handle used out of order, `ConnectionClosedError` when the log
stream drops for good (its `offset` says where to resume).

The class of an `APIError` is chosen by the body's `code`; a body without one (a proxy's 502
page) falls back to the catalog entry for its status class; a code this SDK does not know (a
newer server) is a plain `APIError` carrying that code. `exit_code` comes from the catalog in
`redline.errors`, which is how the CLI picks its exit status.

`TimeoutError` is the SDK's own class and subclasses neither the builtin nor httpx's: import
the module (`from redline.sdk import exceptions`) or alias it if you also use the builtin.
"""

from __future__ import annotations

from typing import Any

from redline import errors
from redline.errors import CATALOG, kind_for_status

__all__ = [
    "API_ERRORS",
    "APIError",
    "AlreadyStartedError",
    "AuthForbiddenError",
    "AuthInvalidError",
    "AuthRequiredError",
    "CommandExitError",
    "ConflictError",
    "ConnectionClosedError",
    "IdempotencyMismatchError",
    "InsufficientCreditsError",
    "InternalServerError",
    "NetworkError",
    "NotFoundError",
    "NotStartedError",
    "PayloadTooLargeError",
    "PreconditionFailedError",
    "RateLimitedError",
    "RedlineError",
    "RunFailedError",
    "TimeoutError",
    "TransportError",
    "UnavailableError",
    "UnsupportedError",
    "ValidationError",
    "WaitTimeoutError",
    "error_from_response",
]


class RedlineError(Exception):
    """Base of everything the SDK raises."""

    #: the stable code to branch on (a catalog code)
    code: str = "INTERNAL"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    @property
    def exit_code(self) -> int:
        """The CLI exit status for this failure (the catalog's); `CommandExitError`'s is the
        command's own status instead (`cli_exit_code` is the CLI's for every class)."""
        return self.cli_exit_code

    @property
    def cli_exit_code(self) -> int:
        """The status the `redline` CLI exits with for this failure (the catalog's)."""
        kind = CATALOG.get(self.code)
        return kind.exit_code if kind else CATALOG["INTERNAL"].exit_code

    @property
    def retryable(self) -> bool:
        kind = CATALOG.get(self.code)
        return kind.retryable if kind else False

    @property
    def is_retryable(self) -> bool:
        return self.retryable

    @property
    def next_action(self) -> str:
        kind = CATALOG.get(self.code)
        return kind.next_action if kind else "See the message."

    #: the server's request id, when the server answered
    request_id: str | None = None

    def to_envelope(self, *, with_exit_code: bool = False) -> dict[str, Any]:
        """The error envelope (`{"error": {code, message, details, retryable, nextAction,
        requestId}}`), built by `redline.errors.envelope` like the server's; `exitCode` too
        when asked (the CLI's form)."""
        return errors.envelope(self.code, self.message, self.details, self.request_id,
                               retryable=self.retryable, next_action=self.next_action,
                               exit_code=self.cli_exit_code if with_exit_code else None)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class APIError(RedlineError):
    """The server answered with an error envelope (or a non-2xx status without one)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: dict[str, Any] | None = None, request_id: str | None = None,
                 retryable: bool | None = None, next_action: str | None = None,
                 retry_after: float | None = None, body: Any = None):
        super().__init__(message, details=details)
        if code is not None:
            self.code = code
        self.status = status
        self.request_id = request_id
        self._retryable = retryable
        self._next_action = next_action
        #: seconds to wait before retrying: the body's details.retryAfter, else Retry-After
        self.retry_after = retry_after
        #: the decoded response body, as sent
        self.body = body

    @property
    def cli_exit_code(self) -> int:
        kind = CATALOG.get(self.code)
        if kind is not None:
            return kind.exit_code
        return (kind_for_status(self.status) if self.status else CATALOG["INTERNAL"]).exit_code

    @property
    def retryable(self) -> bool:
        if self._retryable is not None:
            return self._retryable
        return super().retryable

    @property
    def next_action(self) -> str:
        return self._next_action or super().next_action

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, "
                f"message={self.message!r}, request_id={self.request_id!r})")


class AuthRequiredError(APIError):
    code = "AUTH_REQUIRED"


class AuthInvalidError(APIError):
    code = "AUTH_INVALID"


class AuthForbiddenError(APIError):
    code = "AUTH_FORBIDDEN"

    @property
    def required_scopes(self) -> list[str]:
        return list(self.details.get("required") or [])

    @property
    def granted_scopes(self) -> list[str]:
        return list(self.details.get("granted") or [])


class NotFoundError(APIError):
    code = "NOT_FOUND"


class ValidationError(APIError):
    code = "VALIDATION_ERROR"

    @property
    def field(self) -> str | None:
        return self.details.get("field")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.details.get("errors") or [])


class PayloadTooLargeError(APIError):
    code = "PAYLOAD_TOO_LARGE"


class ConflictError(APIError):
    code = "CONFLICT"


class PreconditionFailedError(APIError):
    code = "PRECONDITION_FAILED"


class IdempotencyMismatchError(APIError):
    code = "IDEMPOTENCY_BODY_MISMATCH"


class RateLimitedError(APIError):
    code = "RATE_LIMITED"


class InsufficientCreditsError(APIError):
    code = "INSUFFICIENT_CREDITS"


class UnsupportedError(APIError):
    code = "UNSUPPORTED"


class InternalServerError(APIError):
    code = "INTERNAL"


class UnavailableError(APIError):
    code = "UNAVAILABLE"


#: the exception class for each code the server sends
API_ERRORS: dict[str, type[APIError]] = {cls.code: cls for cls in (
    AuthRequiredError, AuthInvalidError, AuthForbiddenError, NotFoundError, ValidationError,
    PayloadTooLargeError, ConflictError, PreconditionFailedError, IdempotencyMismatchError,
    RateLimitedError, InsufficientCreditsError, UnsupportedError, InternalServerError,
    UnavailableError)}


class TransportError(RedlineError):
    """No usable HTTP answer arrived."""

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.method = method
        self.url = url


class NetworkError(TransportError):
    """The server could not be reached (refused, reset, DNS): retryable with backoff."""

    code = "NETWORK_ERROR"


class TimeoutError(TransportError):
    """No answer in time. For a write the request may have landed: verify before retrying."""

    code = "TIMEOUT"

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None,
                 details: dict[str, Any] | None = None, write: bool = False):
        super().__init__(message, method=method, url=url, details=details)
        #: True when the request was a write (it may have taken effect)
        self.write = write


class WaitTimeoutError(RedlineError):
    """A wait (`runs.wait`, a handle's `wait`) reached its ceiling; the run goes on. Re-poll
    the same id (`redline wait RUN_ID`), never trigger it again."""

    code = "WAIT_TIMEOUT"

    def __init__(self, message: str, *, run_id: str, last_status: str | None = None,
                 waited: float | None = None, run: Any = None):
        super().__init__(message, details={"runId": run_id, "lastStatus": last_status,
                                           "waitedSeconds": waited})
        self.run_id = run_id
        self.last_status = last_status
        self.run = run


class RunFailedError(RedlineError):
    """A run finished with a verdict other than `passed` (raised when asked to)."""

    code = "RUN_FAILED"

    def __init__(self, message: str, *, run: Any, status: str | None = None):
        run_id = getattr(run, "id", None)
        super().__init__(message, details={"runId": run_id, "status": status})
        self.run = run
        self.status = status


def _retry_after(details: dict[str, Any], header: str | None) -> float | None:
    """The body's `details.retryAfter` first, then the `Retry-After` header (seconds)."""
    for value in (details.get("retryAfter"), header):
        if value is None:
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue  # an HTTP-date: rare enough here to treat as absent
        if seconds >= 0:
            return seconds
    return None


def error_from_response(status: int, body: Any, headers: Any = None) -> APIError:
    """The most specific `APIError` for an error response (status, decoded JSON body or None,
    and the headers mapping)."""
    headers = headers or {}
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message: str | None
    if code is None:
        kind = kind_for_status(status)
        code, message = kind.code, f"HTTP {status} from the server (no error envelope)"
    else:
        message = error.get("message")
    details = error["details"] if isinstance(error.get("details"), dict) else {}
    request_id = error.get("requestId") or headers.get("x-request-id")
    cls = API_ERRORS.get(code, APIError)
    retryable = error.get("retryable") if isinstance(error.get("retryable"), bool) else None
    return cls(str(message or code), code=code, status=status, details=details,
               request_id=request_id, retryable=retryable, next_action=error.get("nextAction"),
               retry_after=_retry_after(details, headers.get("retry-after")), body=body)


class CommandExitError(RunFailedError):
    """An executed run's command ran and exited with a non-zero status (like Go's
    `exec.ExitError`). `exit_code` is the command's own status (negative: killed by that
    signal, as Python's `returncode`); `run` is the finished run. It is a `RunFailedError`, so
    `except RunFailedError` catches every run that did not pass."""

    code = "COMMAND_EXIT"

    def __init__(self, message: str, *, run: Any, exit_code: int):
        super().__init__(message, run=run, status=getattr(run, "status", None))
        self.details["exitCode"] = exit_code
        self._exit_code = exit_code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """The command's exit status (the CLI itself exits 1: `cli_exit_code`)."""
        return self._exit_code


class NotStartedError(RedlineError):
    """`wait`, `signal` or `cancel` on a command handle before `start` (or `run`)."""

    code = "NOT_STARTED"


class AlreadyStartedError(RedlineError):
    """`start` on a command handle that was started already: a handle is not reusable."""

    code = "ALREADY_STARTED"

    def __init__(self, message: str, *, run_id: str | None):
        super().__init__(message, details={"runId": run_id})
        self.run_id = run_id


class ConnectionClosedError(RedlineError):
    """A run's log stream dropped (retries spent) before the run ended. The run goes on:
    read again from `offset`."""

    code = "CONNECTION_CLOSED"

    def __init__(self, message: str, *, run_id: str, offset: int):
        super().__init__(message, details={"runId": run_id, "offset": offset})
        self.run_id = run_id
        self.offset = offset
