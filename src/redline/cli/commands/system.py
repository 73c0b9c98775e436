"""`serve`, `mcp`, `worker`: the commands that run a process of Redline."""

from __future__ import annotations

import click

from redline.cli.failures import CliError, Terminated, UsageError
from redline.errors import EXIT_SIGINT, EXIT_SIGTERM


class ServerNotInstalled(CliError):
    code = "UNSUPPORTED"
    next_action = "Install the server: pip install 'redline[server]'."


class DatabaseUnavailable(CliError):
    code = "UNAVAILABLE"
    next_action = ("Check that the database at that URL is running and reachable from here "
                   "(REDLINE_DATABASE_URL), then start again.")


def _unreachable(exc) -> DatabaseUnavailable:
    return DatabaseUnavailable(str(exc), details={"dependency": "database", "url": exc.url,
                                                  "reason": exc.reason})


class ServeCommand(click.Command):
    """Lists the server's settings (REDLINE_* variables) in its help, from their one
    definition."""

    def format_epilog(self, ctx, formatter):
        try:
            from redline.server.config import Settings
        except ImportError:
            return
        rows = []
        for name, info in Settings.model_fields.items():
            default = info.default if info.default is not None else ""
            rows.append((f"REDLINE_{name.upper()}",
                         f"{info.description or ''} [default: {default}]".replace(
                             " [default: ]", "")))
        with formatter.section("Settings (environment)"):
            formatter.write_dl(rows)


@click.command(cls=ServeCommand)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="Port to listen on.")
@click.option("--data-dir", metavar="DIR", help="Folder for SQLite, local blobs and the "
              "secret key (REDLINE_DATA_DIR; default ./.redline).")
@click.option("--no-worker", is_flag=True, help="Serve only; run workers elsewhere.")
@click.option("--no-runner", is_flag=True, help="No embedded runner: executed runs wait for "
              "`redline runner` processes.")
@click.option("--user-content-port", type=click.IntRange(1, 65535), metavar="PORT",
              help="Port of the second listener, which serves only HTML reports and the "
              "trace viewer from an origin apart from the dashboard's "
              "(REDLINE_USER_CONTENT_PORT; default: --port + 1). Users reach it at "
              "REDLINE_USER_CONTENT_URL if set.")
def serve(host, port, data_dir, no_worker, no_runner, user_content_port):
    """Run the Redline server (API + dashboard), migrating the database first.

    A second listener (--user-content-port) serves user content, HTML reports and
    Playwright's trace viewer, on an origin of its own where no session is ever valid."""
    try:
        from redline.server.run import DatabaseUnreachable, UserContentProblem
        from redline.server.run import serve as run_server
    except ImportError as exc:
        raise ServerNotInstalled(f"The server is not installed here ({exc.name} is missing)",
                                 details={"missing": exc.name}) from exc
    try:
        run_server(host=host, port=port, data_dir=data_dir, no_worker=no_worker,
                   no_runner=no_runner, user_content_port=user_content_port)
    except DatabaseUnreachable as exc:
        raise _unreachable(exc) from None
    except UserContentProblem as exc:
        raise UsageError(str(exc), details={"field": "user-content-port"},
                         next_action="Run `redline serve --help` to see the flags and "
                         "settings.") from None
    except KeyboardInterrupt:
        raise SystemExit(EXIT_SIGINT) from None  # stopped as asked: no error envelope
    except Terminated:
        raise SystemExit(EXIT_SIGTERM) from None
    return 0


@click.command()
@click.option("--url", metavar="URL", help="Server URL (default: REDLINE_URL or the profile).")
@click.option("--profile", metavar="NAME", help="Saved sign-in to use.")
@click.option("--project", "-p", metavar="PROJECT_ID", help="Default project for the tools.")
def mcp(url, profile, project):
    """Run the MCP server on stdio, for AI agents (Claude, Cursor, ...).

    It uses the same credentials as the CLI: REDLINE_API_KEY (a project key), REDLINE_TOKEN,
    or a profile saved by `redline login`.
    """
    try:
        from redline.mcp.server import run
    except ImportError as exc:
        raise ServerNotInstalled(f"The MCP server needs the `mcp` package ({exc.name} is "
                                 "missing)", details={"missing": exc.name},
                                 next_action="Install it: pip install 'redline[mcp]'.") from exc
    run(url=url, profile=profile, project=project)
    return 0


@click.command()
@click.option("--processes", "-n", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes to run on this host.")
@click.option("--data-dir", metavar="DIR", help="Data directory (REDLINE_DATA_DIR).")
def worker(processes, data_dir):
    """Run background workers (webhook deliveries, blob deletion, ...) in the foreground.

    Any number of workers on any hosts may share one database: each job is claimed by one
    worker at a time. SIGTERM or Ctrl-C: no new jobs are taken and the one in hand finishes;
    a second signal exits at once (its lease lets another worker take it again).
    """
    try:
        from redline.server.run import DatabaseUnreachable
        from redline.server.run import worker as run_worker
    except ImportError as exc:
        raise ServerNotInstalled(f"The server is not installed here ({exc.name} is missing)",
                                 details={"missing": exc.name}) from exc
    try:
        run_worker(processes=processes, data_dir=data_dir)
    except DatabaseUnreachable as exc:
        raise _unreachable(exc) from None
    return 0
