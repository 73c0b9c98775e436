"""What every command shares: the common flags, credentials, the SDK client, confirmations.

Credentials, first found wins: `--url` / `REDLINE_URL` / the profile's URL; `REDLINE_API_KEY`,
`REDLINE_TOKEN`, then the profile's token or key. The project: `--project`, `REDLINE_PROJECT`,
the profile's default; with a project API key it is implied and may be left out.
"""

from __future__ import annotations

import functools
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import click

from redline.cli import output as out
from redline.cli.failures import ConfirmationRequired, UsageError
from redline.sdk.settings import (
    OUTPUT_CHOICES,
    ClientSettings,
    Connection,
    Profile,
    Store,
    profile_name,
    resolve_connection,
)


@dataclass
class Env:
    output: str = "text"
    profile_name: str | None = None
    url_flag: str | None = None
    project_flag: str | None = None
    _store: Store | None = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)

    # -- configuration ----------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.load()
        return self._store

    @property
    def profile(self) -> Profile:
        return self.store.get(self.active_profile_name) or Profile()

    @property
    def active_profile_name(self) -> str:
        return profile_name(self.store, self.profile_name)

    @property
    def connection(self) -> Connection:
        return resolve_connection(self.store, url=self.url_flag, profile=self.profile_name,
                                  project=self.project_flag)

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def project(self) -> str | None:
        return self.connection.project

    def client(self, *, anonymous: bool = False, printing: bool = False, **options: Any):
        """The SDK client for this command (no credentials when `anonymous`). `printing`: the
        command only prints what the calls answer, so in JSON mode they answer the server's
        JSON as sent (no models: pydantic is not even imported)."""
        from redline import __version__
        from redline.sdk import Client

        if printing and self.output == "json":
            options.setdefault("raw", True)
        settings = self.connection.client_options()
        if anonymous:
            settings.pop("api_key", None)
            settings.pop("token", None)
        client = Client(self.url, user_agent=f"redline-cli/{__version__}",
                        **{**settings, **options})
        self._client = client
        return client

    def team(self, client, team: str | None) -> str:
        """The team a command acts on: the flag, REDLINE_TEAM, the profile's, or the only one
        the user belongs to."""
        chosen = team or self.connection.team
        if chosen:
            return chosen
        teams = client.me().teams
        if len(teams) == 1:
            return teams[0].team_id
        names = ", ".join(f"{t.team_id} ({t.team_name})" for t in teams) or "none"
        raise UsageError("Name the team with --team (you belong to: " + names + ")",
                         details={"field": "--team", "reason": "required"})

    def project_for(self) -> str | None:
        """The project a project command acts on: the flag, REDLINE_PROJECT, the profile's
        default; with an API key, the key's (None: the server implies it); else the only
        project the user has, or a usage error that lists them and says how to pick one."""
        chosen = self.project
        if chosen or self.connection.api_key:
            return chosen
        client = self.client()  # models, whatever the output mode
        projects = []
        for team in client.me().teams:
            projects += [(p, team) for p in client.projects.iter(team.team_id, limit=500)]
        if len(projects) == 1:
            return projects[0][0].id
        listed = "; ".join(f"{p.id} ({p.name}, team {t.team_name})" for p, t in projects)
        raise UsageError(
            "Name the project with --project: " + (f"you have {len(projects)}: {listed}"
                                                   if projects else "you have none yet"),
            details={"field": "--project", "reason": "required",
                     "projects": [{"id": p.id, "name": p.name, "teamId": t.team_id}
                                  for p, t in projects]},
            next_action="Pass --project PROJECT_ID, set REDLINE_PROJECT, or save a default: "
            "redline login --default-project PROJECT_ID." if projects else
            "Create one: redline projects create NAME.")

    # -- output -----------------------------------------------------------------------------

    def emit(self, value: Any, *, columns: list[str] | None = None,
             fields: list[str] | None = None) -> None:
        """Print a result: JSON in JSON mode, else a table (`columns`) or fields."""
        if self.output == "json":
            out.print_json(value)
            return
        rows = getattr(value, "data", value)
        if columns is not None and isinstance(rows, list):
            out.print_table(rows, columns)
            return
        out.print_fields(value, fields)

    def note(self, message: str) -> None:
        out.note(message, self.output)

    # -- destructive commands --------------------------------------------------------------

    def confirm(self, yes: bool, what: str) -> None:
        """Ask before a destructive action on a terminal; refuse without one unless --yes."""
        if yes:
            return
        argv = [a for a in sys.argv[1:] if a not in ("--yes", "-y")]
        example = "redline " + shlex.join([*argv, "--yes"])
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise ConfirmationRequired(
                f"Refusing to {what} without confirmation: there is no terminal to ask on",
                details={"reason": "no_terminal"}, example=example)
        if not click.confirm(f"{what[0].upper()}{what[1:]}?", default=False, err=True):
            raise ConfirmationRequired(f"Not confirmed: did not {what}",
                                       details={"reason": "declined"}, example=example)


def _output_default() -> str:
    return ClientSettings.from_env().output or "text"


def common_options(*, project: bool = False):
    """`--output`, `--profile`, `--url` (and `--project`) on a command; passes `env` first."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, output, profile, url, **kwargs):
            project_flag = kwargs.pop("project") if project else None
            env = Env(output=output or _output_default(), profile_name=profile, url_flag=url,
                      project_flag=project_flag)
            ctx = click.get_current_context()
            ctx.meta["redline.env"] = env
            return fn(env, *args, **kwargs)

        wrapped = wrapper
        if project:
            wrapped = click.option("--project", "-p", metavar="PROJECT_ID",
                                   help="The project (implied by a project API key; else "
                                   "REDLINE_PROJECT or the profile's default).")(wrapped)
        wrapped = click.option("--url", metavar="URL", help="Server URL (default: "
                               "REDLINE_URL, the profile's, http://127.0.0.1:8000).")(wrapped)
        wrapped = click.option("--profile", metavar="NAME", help="Saved sign-in to use "
                               "(default: REDLINE_PROFILE or the current one).")(wrapped)
        wrapped = click.option("--output", "-o", type=click.Choice(OUTPUT_CHOICES),
                               default=None, help="text (default; tables) or json "
                               "(stdout; errors as one JSON line on stderr).")(wrapped)
        return wrapped

    return decorate


def yes_option(fn):
    return click.option("--yes", "-y", is_flag=True,
                        help="Do it without asking (needed without a terminal).")(fn)


def pagination_options(fn):
    fn = click.option("--cursor", metavar="CURSOR", help="Continue after a page "
                      "(nextCursor of the previous one).")(fn)
    fn = click.option("--limit", type=click.IntRange(1, 500), default=None,
                      help="Page size (default 50, at most 500).")(fn)
    return fn


def idempotency_option(fn):
    return click.option("--idempotency-key", metavar="KEY",
                        help="Send this Idempotency-Key (reuse it to retry the same request "
                        "safely; the SDK makes one per call otherwise).")(fn)


class When(click.ParamType):
    """A moment: ISO 8601 (`2026-12-01`, `2026-12-01T10:00:00Z`) or a duration from now
    (`30m`, `12h`, `7d`, `2w`), ahead for `future=True` (an expiry), else back (a `since`).
    The value is an aware UTC datetime."""

    name = "WHEN"
    UNITS: ClassVar[dict[str, int]] = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

    def __init__(self, future: bool):
        self.future = future

    def convert(self, value, param, ctx):
        from datetime import UTC, datetime, timedelta

        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if len(text) > 1 and text[:-1].isdigit() and text[-1].lower() in self.UNITS:
            delta = timedelta(seconds=int(text[:-1]) * self.UNITS[text[-1].lower()])
            now = datetime.now(UTC)
            return now + delta if self.future else now - delta
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is neither a time (2026-12-01, 2026-12-01T10:00:00Z) nor a "
                      "duration (30m, 12h, 7d, 2w)", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
