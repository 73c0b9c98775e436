"""`projects`, `settings`, `keys`."""

from __future__ import annotations

import click

from redline.cli.commands.teams import team_option
from redline.cli.context import (
    Env,
    common_options,
    idempotency_option,
    pagination_options,
    yes_option,
)
from redline.cli.failures import UsageError

PROJECT_COLUMNS = ["id", "name", "teamId", "createdAt"]
KEY_COLUMNS = ["id", "name", "maskedKey", "isActive", "scopes", "expiresAt", "lastUsedAt"]
SCOPES = ["runs:read", "runs:write", "artifacts:read", "artifacts:write", "flakiness:write",
          "executions:write", "project:admin"]


@click.group()
def projects():
    """List, create, rename and delete projects."""


@projects.command("list")
@common_options()
@team_option
@pagination_options
def projects_list(env: Env, team, limit, cursor):
    """A team's projects."""
    client = env.client()
    env.emit(client.projects.list(env.team(client, team), limit=limit, cursor=cursor),
             columns=PROJECT_COLUMNS)


@projects.command("create")
@common_options()
@team_option
@idempotency_option
@click.argument("name")
def projects_create(env: Env, team, name, idempotency_key):
    """Create a project in a team (admins and owners)."""
    client = env.client()
    env.emit(client.projects.create(name, env.team(client, team),
                                    idempotency_key=idempotency_key))


@projects.command("get")
@common_options()
@click.argument("project_id", required=False)
def projects_get(env: Env, project_id):
    """Show a project (default: the implied one)."""
    env.emit(env.client(printing=True).projects.get(project_id or env.project))


@projects.command("rename")
@common_options()
@click.argument("project_id")
@click.argument("name")
def projects_rename(env: Env, project_id, name):
    """Rename a project."""
    env.emit(env.client(printing=True).projects.rename(project_id, name))


@projects.command("delete")
@common_options()
@yes_option
@click.argument("project_id")
def projects_delete(env: Env, project_id, yes):
    """Delete a project and all its runs, tests, artifacts, keys and webhooks (owners)."""
    env.confirm(yes, f"delete project {project_id} with all its data")
    env.emit(env.client(printing=True).projects.delete(project_id))


@click.group()
def settings():
    """Show or change a project's settings."""


@settings.command("get")
@common_options(project=True)
def settings_get(env: Env):
    """The project's settings (retention, flakiness threshold, auto-quarantine)."""
    result = env.client().projects.get_settings(env.project)
    if env.output == "json":
        env.emit({**result.to_json(), "etag": result.etag})
    else:
        env.emit(result)
        if result.etag:
            click.echo(f"etag: {result.etag}")


@settings.command("set")
@common_options(project=True)
@click.option("--retention-days", type=click.IntRange(1, 3650),
              help="Days to keep runs and results.")
@click.option("--flakiness-threshold", type=click.FloatRange(0, 1),
              help="Score at or above which auto-quarantine applies.")
@click.option("--auto-quarantine/--no-auto-quarantine", default=None,
              help="Quarantine flaky tests automatically.")
@click.option("--if-match", metavar="ETAG", help="Only if the settings are still this "
              "version (the etag from `settings get`); else PRECONDITION_FAILED (exit 6).")
def settings_set(env: Env, retention_days, flakiness_threshold, auto_quarantine, if_match):
    """Change the settings given; the others stay. Needs project:admin."""
    if retention_days is None and flakiness_threshold is None and auto_quarantine is None:
        raise UsageError("Give at least one setting to change",
                         details={"field": "--retention-days", "reason": "required"})
    result = env.client().projects.update_settings(
        env.project, data_retention_days=retention_days,
        flakiness_threshold=flakiness_threshold, auto_quarantine_enabled=auto_quarantine,
        if_match=if_match)
    if env.output == "json":
        env.emit({**result.to_json(), "etag": result.etag})
    else:
        env.emit(result)


@click.group()
def keys():
    """Manage a project's API keys (needs project:admin)."""


@keys.command("list")
@common_options(project=True)
@pagination_options
def keys_list(env: Env, limit, cursor):
    """The project's keys (masked)."""
    env.emit(env.client(printing=True).api_keys.list(env.project, limit=limit, cursor=cursor),
             columns=KEY_COLUMNS)


@keys.command("create")
@common_options(project=True)
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              help="A scope (repeat for several; default: what a CI job needs).")
@click.option("--expires-at", metavar="TIME", help="ISO 8601 time the key stops working.")
@idempotency_option
def keys_create(env: Env, name, scopes, expires_at, idempotency_key):
    """Create a key; its whole value is shown only now."""
    result = env.client().api_keys.create(name, env.project, scopes=list(scopes) or None,
                                          expires_at=expires_at,
                                          idempotency_key=idempotency_key)
    env.emit(result)
    env.note("The key is shown only now: store it in your CI secrets.")


@keys.command("deactivate")
@common_options()
@click.argument("key_id")
def keys_deactivate(env: Env, key_id):
    """Stop a key from working (it can be activated again)."""
    env.emit(env.client(printing=True).api_keys.deactivate(key_id))


@keys.command("activate")
@common_options()
@click.argument("key_id")
def keys_activate(env: Env, key_id):
    """Let a deactivated key work again."""
    env.emit(env.client(printing=True).api_keys.activate(key_id))


@keys.command("delete")
@common_options()
@yes_option
@click.argument("key_id")
def keys_delete(env: Env, key_id, yes):
    """Delete a key for good."""
    env.confirm(yes, f"delete API key {key_id}")
    env.emit(env.client(printing=True).api_keys.delete(key_id))
