"""The click root of `redline` and the gate every command's outcome passes through."""

from __future__ import annotations

import difflib
import importlib
import os
import signal
import sys

import click

from redline import __version__
from redline.cli import failures
from redline.cli.main import COMMANDS
from redline.errors import CATALOG, EXIT_OK, EXIT_SIGTERM
from redline.sdk.settings import VARIABLES, ClientSettings

ROOT_EPILOG = "\n".join([
    "\b", "Environment:",
    *(f"  {name:<20} {meaning}" for name, meaning in VARIABLES.items()),
    ("  The server's own settings (REDLINE_DATA_DIR, REDLINE_DATABASE_URL, ...): "
     "redline serve --help"), ""])


def _exit_codes_epilog() -> str:
    """The exit-code table, from the catalog plus the CLI-only statuses."""
    by_exit: dict[int, list[str]] = {EXIT_OK: ["success"]}
    for code, kind in CATALOG.items():
        by_exit.setdefault(kind.exit_code, []).append(code)
    by_exit[CATALOG["VALIDATION_ERROR"].exit_code] += ["flag-parse errors",
                                                       "a bad --output value"]
    by_exit[CATALOG["CANCELLED"].exit_code].append("(SIGINT)")
    by_exit[EXIT_SIGTERM] = ["CANCELLED (SIGTERM)"]
    lines = ["\b", "Exit codes:"]
    lines += [f"  {status:<4} " + ", ".join(by_exit[status]) for status in sorted(by_exit)]
    return "\n".join(lines)


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, cmd_name):
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module, attribute = spec[0].split(":")
        return getattr(importlib.import_module(f"redline.cli.commands.{module}"), attribute)

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and not name.startswith("-") and name not in COMMANDS:
            close = difflib.get_close_matches(name, list(COMMANDS), n=2, cutoff=0.6)
            if close:
                ctx.fail(f"No such command '{name}'. Did you mean "
                         + " or ".join(f"'{c}'" for c in close) + "?")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100},
             epilog=ROOT_EPILOG + "\n" + _exit_codes_epilog())
@click.version_option(__version__, "--version", "-V", prog_name="redline",
                      message="%(prog)s %(version)s")
def root():
    """Redline: test results, flakiness and quarantine for CI.

    Every command takes --output text|json. With json, results go to stdout and a failure is
    one JSON line on stderr ({"error": {code, message, details, nextAction, exitCode, ...}}).
    """


def sniff_output(args: list[str]) -> str:
    """The output mode, read before parsing so that parse errors honour `--output json`."""
    mode = ClientSettings.from_env().output or "text"
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("--output", "-o") and i + 1 < len(args):
            mode = args[i + 1]
        elif arg.startswith("--output="):
            mode = arg.split("=", 1)[1]
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            mode = arg[2:]
    return mode if mode in ("text", "json") else "text"


def _on_sigterm(signum, frame):
    raise failures.Terminated()


def run(args: list[str]) -> int:
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    output = sniff_output(args)
    command_path = "redline"
    try:
        try:
            with root.make_context("redline", list(args)) as ctx:
                command_path = " ".join(["redline", *[a for a in args if not a.startswith("-")][:2]])
                result = root.invoke(ctx)
        finally:
            signal.signal(signal.SIGTERM, previous)
    except click.exceptions.NoArgsIsHelpError as exc:
        sys.stdout.write(exc.ctx.get_help() + "\n")
        return EXIT_OK
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except BaseException as exc:  # noqa: BLE001 - the gate: every failure -> (exit, envelope)
        if isinstance(exc, SystemExit):
            return exc.code if isinstance(exc.code, int) else CATALOG["INTERNAL"].exit_code
        failure = failures.failure_for(exc, command_path)
        failures.render(failure, output)
        return failure.exit_code
    return result if isinstance(result, int) else EXIT_OK


def _silence_stdout() -> None:
    # The reader went away (`| head`): drop what is left instead of a second BrokenPipeError.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
