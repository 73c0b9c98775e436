"""`demo`: fill the server's database with a sample project (runs on the server's machine)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from redline.cli.commands.system import ServerNotInstalled


@click.command()
@click.option("--data-dir", metavar="DIR", help="The server's data folder (REDLINE_DATA_DIR; "
              "default ./.redline). REDLINE_DATABASE_URL is honoured too.")
@click.option("--email", default="demo@example.com", show_default=True, metavar="EMAIL",
              help="The demo user's sign-in (created, or reused with its password).")
@click.option("--password", default="redline-demo", show_default=True, metavar="PASSWORD",
              envvar="REDLINE_DEMO_PASSWORD", help="The demo user's password.")
@click.option("--days", default=21, show_default=True, type=click.IntRange(1, 365),
              help="How many days of runs to make.")
def demo(data_dir, email, password, days):
    """Fill the server's database with a realistic sample team: a Playwright project with
    several branches and weeks of runs (flaky, broken and quarantined tests, a run in
    progress) and a pytest project, built from reports real test runners wrote.

    Run it beside `redline serve` (same data folder or REDLINE_DATABASE_URL), then sign in to
    the dashboard with the printed email and password.
    """
    try:
        from redline.server.config import Settings
        from redline.server.demo import fill_demo
    except ImportError as exc:
        raise ServerNotInstalled(f"The server is not installed here ({exc.name} is missing)",
                                 details={"missing": exc.name}) from exc
    if data_dir is not None:
        os.environ["REDLINE_DATA_DIR"] = str(Path(data_dir))
    settings = Settings()
    made = fill_demo(settings.resolved_database_url, email=email, password=password, days=days,
                     log=lambda message: click.echo(message, err=True), settings=settings)
    click.echo(f"Demo ready: {made['runs']} runs, {made['results']} results and "
               f"{made.get('screenshots', 0)} screenshots in 2 projects.")
    click.echo(f"Sign in at {settings.resolved_public_url}/login as {email} / {password}")
    return 0
