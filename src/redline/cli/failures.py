"""The one place where a failure becomes an exit status and an error envelope.

Every exception a command lets escape, including click's usage errors and the signals, goes
through `failure_for`, and `render` prints the result: with `--output json`, the envelope as one
line of JSON on stderr with `exitCode` inside `error`; in text mode, `Error [CODE]: message`,
then `Next: ...` (and for AUTH_FORBIDDEN the required and granted scopes). Nothing goes to
stdout. Exit statuses come from the catalog (`redline.errors`); the CLI-only ones (not
implemented, usage, signals) are the catalog module's `EXIT_*` constants.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from redline.errors import CATALOG, EXIT_NOT_IMPLEMENTED, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE


class Terminated(BaseException):
    """Raised by the SIGTERM handler so a command unwinds (and cleans up) like on Ctrl-C."""


class CliError(Exception):
    """A failure the CLI itself detects, with its code, exit status and envelope fields."""

    code = "VALIDATION_ERROR"
    exit_code = EXIT_USAGE
    next_action = "Run the command with --help to see its flags."

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 next_action: str | None = None, example: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if next_action:
            self.next_action = next_action
        self.example = example


class UsageError(CliError):
    """Missing or contradictory flags the parser could not catch (exit 5)."""


class ConfirmationRequired(CliError):
    """A destructive command without a terminal to confirm on, and without --yes (exit 2)."""

    code = "CONFIRMATION_REQUIRED"
    exit_code = EXIT_NOT_IMPLEMENTED
    next_action = "Run it again with --yes to confirm (see `example`)."


class NotImplementedCommand(CliError):
    """A command this version of the CLI does not have yet (exit 2)."""

    code = "NOT_IMPLEMENTED"
    exit_code = EXIT_NOT_IMPLEMENTED
    next_action = "Use the REST API or the SDK for this until the command exists."


class VerdictNotPassed(CliError):
    """A command whose job was to get a verdict got one other than `passed` (exit 1)."""

    code = "RUN_FAILED"
    exit_code = 1
    next_action = "Look at the failed tests: `redline runs get RUN_ID`."


@dataclass
class Failure:
    exit_code: int
    envelope: dict[str, Any]

    @property
    def error(self) -> dict[str, Any]:
        return self.envelope["error"]


def _envelope(code: str, message: str, details: dict | None = None,
              next_action: str | None = None, retryable: bool | None = None,
              request_id: str | None = None, example: str | None = None) -> dict[str, Any]:
    kind = CATALOG.get(code)
    error: dict[str, Any] = {
        "code": code, "message": message, "details": details or {},
        "retryable": retryable if retryable is not None else (kind.retryable if kind else False),
        "nextAction": next_action or (kind.next_action if kind else "See the message."),
    }
    if request_id:
        error["requestId"] = request_id
    if example:
        error["example"] = example
    return {"error": error}


def failure_for(exc: BaseException, command: str | None = None) -> Failure:
    """Exit status and envelope for anything a command raised. `command` is the command path
    (`redline teams list`), used in the hints."""
    import click

    from redline.sdk.exceptions import RedlineError

    help_hint = f"Run `{command or 'redline'} --help` to see the flags."
    if isinstance(exc, RedlineError):
        envelope = exc.to_envelope()
        return Failure(exc.exit_code, envelope)
    if isinstance(exc, CliError):
        return Failure(exc.exit_code, _envelope(exc.code, exc.message, exc.details,
                                                exc.next_action, False, example=exc.example))
    if isinstance(exc, click.exceptions.UsageError):
        ctx_path = exc.ctx.command_path if exc.ctx is not None else command
        details: dict[str, Any] = {"reason": "usage"}
        if isinstance(exc, click.exceptions.BadParameter) and exc.param is not None:
            details["field"] = exc.param.opts[0] if exc.param.opts else exc.param.name
        return Failure(EXIT_USAGE, _envelope(
            "VALIDATION_ERROR", exc.format_message(), details,
            f"Run `{ctx_path or 'redline'} --help` to see the flags.", False))
    if isinstance(exc, (KeyboardInterrupt, click.exceptions.Abort)):
        return Failure(EXIT_SIGINT, _envelope("CANCELLED", "Interrupted (SIGINT)",
                                              {"signal": "SIGINT"}, "Run the command again.",
                                              False))
    if isinstance(exc, Terminated):
        return Failure(EXIT_SIGTERM, _envelope("CANCELLED", "Terminated (SIGTERM)",
                                               {"signal": "SIGTERM"}, "Run the command again.",
                                               False))
    if isinstance(exc, click.exceptions.FileError):
        return Failure(EXIT_USAGE, _envelope("VALIDATION_ERROR", exc.format_message(),
                                             {"field": exc.filename, "reason": "file"},
                                             help_hint, False))
    return Failure(1, _envelope("INTERNAL", f"Unexpected error in the CLI: "
                                f"{type(exc).__name__}: {exc}", {},
                                "Report this with the command you ran.", False))


def render(failure: Failure, output: str, stream=None) -> None:
    """Print a failure on stderr: one JSON line, or the text lines."""
    stream = stream or sys.stderr
    if output == "json":
        envelope = {"error": {**failure.error, "exitCode": failure.exit_code}}
        stream.write(json.dumps(envelope, separators=(",", ":"), default=str) + "\n")
    else:
        error = failure.error
        lines = [f"Error [{error['code']}]: {error['message']}"]
        if error.get("code") == "AUTH_FORBIDDEN":
            details = error.get("details") or {}
            lines.append("required: " + ", ".join(map(str, details.get("required") or [])))
            lines.append("granted: " + ", ".join(map(str, details.get("granted") or [])))
        elif error.get("code") == "VALIDATION_ERROR":
            for item in (error.get("details") or {}).get("errors") or []:
                if isinstance(item, dict) and item.get("message") != error["message"]:
                    lines.append(f"  {item.get('field')}: {item.get('message')}")
        if error.get("example"):
            lines.append(f"Example: {error['example']}")
        lines.append(f"Next: {error.get('nextAction')}")
        if error.get("requestId"):
            lines.append(f"Request id: {error['requestId']}")
        stream.write("\n".join(lines) + "\n")
    stream.flush()
