"""`webhooks`: list, create, update, delete, deliveries, redeliver, ping."""

from __future__ import annotations

import click

from redline.cli.context import Env, common_options, pagination_options, yes_option
from redline.cli.failures import UsageError

WEBHOOK_COLUMNS = ["id", "url", "events", "isActive", "createdAt"]
WEBHOOK_FIELDS = ["id", "projectId", "url", "events", "headers", "isActive",
                  "disabledReason", "secret", "createdAt", "updatedAt"]
DELIVERY_COLUMNS = ["id", "event", "status", "attempts", "responseCode", "latencyMs",
                    "createdAt"]
EVENTS = ["run.completed", "run.failed", "test.flaky", "test.quarantined", "run.queued",
          "run.started"]


def _headers(pairs: tuple[str, ...]) -> dict[str, str] | None:
    if not pairs:
        return None
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {pair!r} is not NAME:VALUE",
                             details={"field": "--header", "reason": "format"})
        headers[name.strip()] = value.strip()
    return headers


def _events(values: tuple[str, ...]) -> list[str]:
    events: list[str] = []
    for value in values:
        events += [e.strip() for e in value.split(",") if e.strip()]
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise UsageError(f"Unknown event {unknown[0]!r} (events: {', '.join(EVENTS)})",
                         details={"field": "--event", "reason": "invalid"})
    return events


def _event_option(required: bool):
    return click.option("--event", "-e", "events", multiple=True, required=required,
                        metavar="EVENT", help="An event to send (repeatable, or comma-"
                        "separated): " + ", ".join(EVENTS) + ".")


header_option = click.option("--header", "headers", multiple=True, metavar="NAME:VALUE",
                             help="A header sent with each delivery (repeatable).")


@click.group()
def webhooks():
    """Manage a project's webhooks and their deliveries (admins)."""


@webhooks.command("list")
@common_options(project=True)
@pagination_options
def webhooks_list(env: Env, limit, cursor):
    """The project's webhooks."""
    env.emit(env.client(printing=True).webhooks.list(env.project, limit=limit, cursor=cursor),
             columns=WEBHOOK_COLUMNS)


@webhooks.command("get")
@common_options()
@click.argument("webhook_id")
def webhooks_get(env: Env, webhook_id):
    """Show a webhook."""
    env.emit(env.client(printing=True).webhooks.get(webhook_id), fields=WEBHOOK_FIELDS)


@webhooks.command("create")
@common_options(project=True)
@click.argument("hook_url", metavar="URL")
@_event_option(required=True)
@header_option
@click.option("--secret", metavar="SECRET", help="Signing secret (whsec_...; default: one "
              "is generated and shown once).")
def webhooks_create(env: Env, hook_url, events, headers, secret):
    """Send the project's EVENTs to URL (signed as Standard Webhooks; the secret is shown
    once)."""
    hook = env.client(printing=True).webhooks.create(hook_url, _events(events), env.project,
                                                      headers=_headers(headers),
                                                      secret=secret)
    env.emit(hook, fields=WEBHOOK_FIELDS)
    env.note("Keep the secret: it is not shown again (it verifies each delivery's "
             "signature).")


@webhooks.command("update")
@common_options()
@click.argument("webhook_id")
@click.option("--url", "new_url", metavar="URL", help="A new URL.")
@_event_option(required=False)
@header_option
@click.option("--secret", metavar="SECRET", help="A new signing secret (whsec_...).")
@click.option("--active/--inactive", "is_active", default=None,
              help="Turn deliveries on or off.")
def webhooks_update(env: Env, webhook_id, new_url, events, headers, secret, is_active):
    """Change a webhook's URL, events, headers, secret or state."""
    if not (new_url or events or headers or secret or is_active is not None):
        raise UsageError("Nothing to change: give --url, --event, --header, --secret, "
                         "--active or --inactive", details={"reason": "no_change"})
    env.emit(env.client(printing=True).webhooks.update(
        webhook_id, url=new_url, events=_events(events) if events else None,
        headers=_headers(headers), secret=secret, is_active=is_active))


@webhooks.command("delete")
@common_options()
@yes_option
@click.argument("webhook_id")
def webhooks_delete(env: Env, webhook_id, yes):
    """Delete a webhook (its pending deliveries are not sent)."""
    env.confirm(yes, f"delete webhook {webhook_id}")
    env.emit(env.client(printing=True).webhooks.delete(webhook_id))


@webhooks.command("deliveries")
@common_options()
@click.argument("webhook_id")
@pagination_options
def webhooks_deliveries(env: Env, webhook_id, limit, cursor):
    """A webhook's deliveries, newest first (status, attempts, the receiver's answer)."""
    env.emit(env.client(printing=True).webhooks.deliveries(webhook_id, limit=limit,
                                                           cursor=cursor),
             columns=DELIVERY_COLUMNS)


@webhooks.command("redeliver")
@common_options()
@click.argument("webhook_id")
@click.argument("delivery_id")
def webhooks_redeliver(env: Env, webhook_id, delivery_id):
    """Send a delivery again (same webhook-id: a receiver that has it can drop it)."""
    env.emit(env.client(printing=True).webhooks.redeliver(webhook_id, delivery_id),
             fields=DELIVERY_COLUMNS)


@webhooks.command("ping")
@common_options()
@click.argument("webhook_id")
def webhooks_ping(env: Env, webhook_id):
    """Send a test event to the webhook's URL."""
    env.emit(env.client(printing=True).webhooks.ping(webhook_id), fields=DELIVERY_COLUMNS)
