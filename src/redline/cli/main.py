"""The `redline` command: entry point, lazy command loading, the failure gate, signals.

`redline --version` answers before anything heavy is imported; other commands import click,
then only the module of the command asked for, and the SDK when it talks to the server.
Every failure leaves through `failures.failure_for` (the one mapping to exit codes).
"""

from __future__ import annotations

import sys

from redline import __version__

# name -> (module:attribute under redline.cli.commands, one-line help). The help lives here so
# that `redline --help` imports no command module.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("account:init", "Set up a new server: owner, team, project, CI key."),
    "login": ("account:login", "Sign in and save the token in a profile."),
    "logout": ("account:logout", "Sign out and forget the saved token."),
    "whoami": ("account:whoami", "Show who the credentials are."),
    "health": ("account:health", "Check that the server and its database answer."),
    "teams": ("teams:teams", "List, create, rename and delete teams."),
    "members": ("teams:members", "List, invite and remove team members."),
    "invitations": ("teams:invitations", "List, revoke and accept invitations."),
    "projects": ("projects:projects", "List, create, rename and delete projects."),
    "settings": ("projects:settings", "Show or change project settings."),
    "keys": ("projects:keys", "Manage a project's API keys."),
    # `executions` adds cancel, signal and log to the `runs` group of runs.py
    "runs": ("executions:runs", "List, show, compare, cancel and delete runs; a run's log."),
    "upload": ("runs:upload", "Import test reports as a run (CI)."),
    "wait": ("runs:wait", "Wait for a run's verdict."),
    "exec": ("runs:exec_", "Run a test command, import its reports, exit by the verdict."),
    "summary": ("runs:summary", "A run's summary for a pull request."),
    "tests": ("results:tests", "Show test results, steps and history."),
    "suites": ("results:suites", "A run's suite tree."),
    "cases": ("results:cases", "Test cases: statistics, flakiness evidence, quarantine."),
    "flakiness": ("results:flakiness", "Flaky tests by score."),
    "quarantine": ("results:quarantine", "Quarantine a flaky test."),
    "unquarantine": ("results:unquarantine", "Take a test out of quarantine."),
    "errors": ("results:errors", "Failures grouped by their error."),
    "trends": ("results:trends", "Pass rate, counts and duration over time."),
    "plans": ("executions:plans", "List, show, create, edit and delete plans (executed runs)."),
    "run": ("executions:run", "Run a plan on Redline's runners; --wait, --follow its log."),
    "usage": ("executions:usage", "A team's executed-run time this month and its budget."),
    "mcp": ("system:mcp", "Run the MCP server on stdio (for AI agents)."),
    "serve": ("system:serve", "Run the Redline server (API + dashboard)."),
    "demo": ("demo:demo", "Fill the server with a sample project (dashboard tour)."),
    "worker": ("system:worker", "Run background workers (webhooks, blob deletion)."),
    "runner": ("runner:runner", "Run a runner: execute plans' runs for a server."),
    "db": ("db:db", "Database maintenance: migrate, status, backup."),
    "webhooks": ("webhooks:webhooks", "Manage webhooks and their deliveries."),
    "artifacts": ("artifacts:artifacts", "Upload, list, download and delete artifacts."),
}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (the console script passes it to sys.exit)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        sys.stdout.write(f"redline {__version__}\n")
        return 0
    # httpx imports its own command line (rich, pygments) unless that import fails; the CLI
    # never uses it, and skipping it is a third of httpx's import time.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from redline.cli.app import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
