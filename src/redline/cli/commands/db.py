"""`db migrate|status|backup`: database maintenance on the server's host.

These act on the database directly (with the server's settings: REDLINE_DATABASE_URL,
REDLINE_DATA_DIR), so like `serve` they need the server installed; each imports it inside
the command.
"""

from __future__ import annotations

import click

from redline.cli import output as out
from redline.cli.commands.system import ServerNotInstalled
from redline.cli.context import Env, common_options
from redline.cli.failures import CliError


class DatabaseUnsupported(CliError):
    code = "UNSUPPORTED"
    next_action = "Back up PostgreSQL with pg_dump (or your provider's snapshots)."


def _maintenance():
    try:
        from redline.server import maintenance
    except ImportError as exc:
        raise ServerNotInstalled(f"The server is not installed here ({exc.name} is missing)",
                                 details={"missing": exc.name}) from exc
    return maintenance


def _database_options(fn):
    fn = click.option("--database-url", metavar="URL", help="The database (default: "
                      "REDLINE_DATABASE_URL, else SQLite in the data dir).")(fn)
    fn = click.option("--data-dir", metavar="DIR", help="The data dir (REDLINE_DATA_DIR; "
                      "default ./.redline).")(fn)
    return fn


def _print_status(env: Env, status: dict) -> None:
    if env.output == "json":
        env.emit(status)
        return
    out.print_fields(status, ["database", "dialect", "revision", "headRevision", "upToDate",
                              "previousRevision", "sizeBytes"])
    if status.get("rows"):
        click.echo("")
        out.print_table([{"table": t, "rows": n} for t, n in status["rows"].items()],
                        ["table", "rows"])


@click.group()
def db():
    """Database maintenance: migrate, status, backup (run on the server's host)."""


@db.command("migrate")
@common_options()
@_database_options
def db_migrate(env: Env, data_dir, database_url):
    """Upgrade the schema to this version's newest revision (`serve` does it too)."""
    maintenance = _maintenance()
    _print_status(env, maintenance.migrate(maintenance.settings_for(data_dir, database_url)))


@db.command("status")
@common_options()
@_database_options
def db_status(env: Env, data_dir, database_url):
    """The schema revision (and whether it is the newest), the size and each table's rows."""
    maintenance = _maintenance()
    _print_status(env, maintenance.status(maintenance.settings_for(data_dir, database_url)))


@db.command("backup")
@common_options()
@_database_options
@click.argument("destination", required=False, metavar="FILE")
def db_backup(env: Env, data_dir, database_url, destination):
    """Back up a SQLite data dir to FILE while the server runs (SQLite's online backup).

    FILE ending in .db or .sqlite: the database alone; any other name (default
    redline-backup-<time>.tar.gz): a .tar.gz of the data dir (the database, the secret key,
    local blobs). Restore: stop the server and unpack it as the data dir. PostgreSQL: use
    pg_dump.
    """
    maintenance = _maintenance()
    settings = maintenance.settings_for(data_dir, database_url)
    try:
        result = maintenance.backup(settings, destination or maintenance.default_backup_name())
    except maintenance.MaintenanceError as exc:
        raise DatabaseUnsupported(str(exc), details={"reason": "not_sqlite"}) from exc
    if env.output == "json":
        env.emit(result)
    else:
        click.echo(result["backup"])
        env.note(f"Backed up {result['database']} ({result['sizeBytes']} bytes, "
                 f"{result['files']} file(s))")
