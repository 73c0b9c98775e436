"""The one place where a failure becomes an exit status and an error envelope.

Every exception a command lets escape, including click's usage errors and the signals, goes
through `failure_for`, and `render` prints the result: with `--output json`, the envelope as one
line of JSON on stderr with `exitCode` inside `error`; in text mode, `Error [CODE]: message`,
then `Next: ...` (and for AUTH_FORBIDDEN the required and granted scopes). Nothing goes to
stdout. Exit statuses come from the catalog (`redline.errors`): the CLI's own codes
(CONFIRMATION_REQUIRED, NOT_IMPLEMENTED, CANCELLED, RUN_FAILED) are entries of it too, and the
envelope is the catalog module's `envelope`, the one the server and the SDK build theirs with.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from redline import errors
from redline.errors import CATALOG, EXIT_SIGTERM


class Terminated(BaseException):
    """Raised by the SIGTERM handler so a command unwinds (and cleans up) like on Ctrl-C."""


class CliError(Exception):
    """A failure the CLI itself detects, with its code, exit status and envelope fields."""

    code = "VALIDATION_ERROR"
    next_action = "Run the command with --help to see its flags."

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 next_action: str | None = None, example: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if next_action:
            self.next_action = next_action
        self.example = example

    @property
    def exit_code(self) -> int:
        """The catalog's exit status for this failure's code."""
        return CATALOG[self.code].exit_code


class UsageError(CliError):
    """Missing or contradictory flags the parser could not catch (exit 5)."""


class ConfirmationRequired(CliError):
    """A destructive command without a terminal to confirm on, and without --yes (exit 2)."""

    code = "CONFIRMATION_REQUIRED"
    next_action = CATALOG[code].next_action


class NotImplementedCommand(CliError):
    """A command this version of the CLI does not have yet (exit 2)."""

    code = "NOT_IMPLEMENTED"
    next_action = CATALOG[code].next_action


class VerdictNotPassed(CliError):
    """A command whose job was to get a verdict got one other than `passed` (exit 1)."""

    code = "RUN_FAILED"
    next_action = CATALOG[code].next_action


@dataclass
class Failure:
    """An exit status and the envelope to print (with `exitCode` inside `error`)."""

    exit_code: int
    envelope: dict[str, Any]

    @property
    def error(self) -> dict[str, Any]:
        return self.envelope["error"]


def _failure(code: str, message: str, details: dict | None = None,
             next_action: str | None = None, *, exit_code: int | None = None,
             example: str | None = None) -> Failure:
    """A failure the CLI detected itself: never retryable (a command does not retry itself)."""
    exit_code = CATALOG[code].exit_code if exit_code is None else exit_code
    return Failure(exit_code, errors.envelope(code, message, details, retryable=False,
                                              next_action=next_action,
                                              extra={"example": example},
                                              exit_code=exit_code))


def failure_for(exc: BaseException, command: str | None = None) -> Failure:
    """Exit status and envelope for anything a command raised. `command` is the command path
    (`redline teams list`), used in the hints."""
    import click

    from redline.sdk.exceptions import RedlineError

    help_hint = f"Run `{command or 'redline'} --help` to see the flags."
    if isinstance(exc, RedlineError):
        return Failure(exc.exit_code, exc.to_envelope(with_exit_code=True))
    if isinstance(exc, CliError):
        return _failure(exc.code, exc.message, exc.details, exc.next_action,
                        exit_code=exc.exit_code, example=exc.example)
    if isinstance(exc, click.exceptions.UsageError):
        ctx_path = exc.ctx.command_path if exc.ctx is not None else command
        details: dict[str, Any] = {"reason": "usage"}
        if isinstance(exc, click.exceptions.BadParameter) and exc.param is not None:
            details["field"] = exc.param.opts[0] if exc.param.opts else exc.param.name
        return _failure("VALIDATION_ERROR", exc.format_message(), details,
                        f"Run `{ctx_path or 'redline'} --help` to see the flags.")
    if isinstance(exc, (KeyboardInterrupt, click.exceptions.Abort)):
        return _failure("CANCELLED", "Interrupted (SIGINT)", {"signal": "SIGINT"})
    if isinstance(exc, Terminated):
        return _failure("CANCELLED", "Terminated (SIGTERM)", {"signal": "SIGTERM"},
                        exit_code=EXIT_SIGTERM)
    if isinstance(exc, click.exceptions.FileError):
        return _failure("VALIDATION_ERROR", exc.format_message(),
                        {"field": exc.filename, "reason": "file"}, help_hint)
    return _failure("INTERNAL", f"Unexpected error in the CLI: {type(exc).__name__}: {exc}", {},
                    "Report this with the command you ran.")


def render(failure: Failure, output: str, stream=None) -> None:
    """Print a failure on stderr: one JSON line, or the text lines."""
    stream = stream or sys.stderr
    if output == "json":
        stream.write(json.dumps(failure.envelope, separators=(",", ":"), default=str) + "\n")
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
