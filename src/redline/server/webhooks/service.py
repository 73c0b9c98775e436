"""Webhooks: CRUD, the events that queue deliveries, and delivering them.

An event writes one delivery row per subscribed webhook and one outbox job for each, in the
transaction of the change that caused it: a run that completes commits its `run.completed`
deliveries with it, or neither exists. The job delivers (tasks.py); the delivery row records
every attempt (status, attempts, response code, latency, error).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from redline.run_display import run_label_of
from redline.server.auth import Principal, require_in_project, require_project
from redline.server.db import WRITE
from redline.server.http_errors import not_found, validation_error
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_id
from redline.server.kit.secrets import box_for
from redline.server.results import service as results
from redline.server.runs.scope import resolve_project
from redline.server.tables import webhook_deliveries, webhooks
from redline.server.webhooks import delivery
from redline.server.worker import outbox
from redline.server.worker.runner import Permanent, RetryLater

DELIVERY_ATTEMPTS = 10  # with the outbox's backoff: retries over about a day
#: failing tests a run event names at most (`failingTestsOmitted` counts the others): a
#: receiver posts them to a chat, where a run with 5,000 failures must stay one message
FAILING_TESTS_IN_PAYLOAD = 20


def webhook_json(row) -> dict:
    return {"id": row.id, "projectId": row.project_id, "url": row.url,
            "events": list(row.events), "headers": dict(row.headers or {}),
            "isActive": row.is_active, "disabledReason": row.disabled_reason,
            "createdAt": iso(row.created_at), "updatedAt": iso(row.updated_at)}


def delivery_json(row) -> dict:
    return {"id": row.id, "webhookId": row.webhook_id, "event": row.event,
            "status": row.status, "attempts": row.attempts, "responseCode": row.response_code,
            "latencyMs": row.latency_ms, "lastError": row.last_error, "payload": row.payload,
            "createdAt": iso(row.created_at), "updatedAt": iso(row.updated_at)}


def run_event_data(conn: Connection, run, verdict: str | None,
                   quarantined_failures: int) -> dict:
    """The `data` of a `run.completed` / `run.failed` event: the run's counts and verdict,
    what a person calls it (`title`: `run_display.run_label`, never the bare id) and its
    first failing tests by name. The run's dashboard `url` is added when it is delivered
    (`deliver`: the server's public address is known there)."""
    failing, failed_total = results.failed_tests(conn, run.project_id, run.id,
                                                 FAILING_TESTS_IN_PAYLOAD)
    return {"runId": run.id, "projectId": run.project_id,
            "title": run_label_of(run),
            "runTitle": run.run_title, "status": run.status, "verdict": verdict,
            "branch": run.branch, "commitSha": run.commit_sha, "ciBuildId": run.ci_build_id,
            "ciBuildUrl": run.ci_build_url, "totalTests": run.total_tests,
            "passedTests": run.passed_tests, "failedTests": run.failed_tests,
            "skippedTests": run.skipped_tests, "flakyTests": run.flaky_tests,
            "quarantinedFailures": quarantined_failures, "failingTests": failing,
            "failingTestsOmitted": max(failed_total - len(failing), 0)}


def with_links(payload: dict, public_url: str) -> dict:
    """`payload` with its dashboard link in `data.url`: the run's page for a run event, the
    test's page for a test event (`public_url`: `Settings.resolved_public_url`)."""
    data = payload.get("data") or {}
    if "url" in data:
        return payload
    event = str(payload.get("type") or "")
    if event.startswith("run.") and data.get("runId"):
        link = f"{public_url}/runs/{data['runId']}"
    elif event.startswith("test.") and data.get("testCaseId"):
        link = f"{public_url}/cases/{data['testCaseId']}"
    else:
        return payload
    return {**payload, "data": {**data, "url": link}}


def _check_url(url: str, settings) -> None:
    try:
        delivery.resolve_destination(url, delivery.parse_networks(settings.webhook_allow_nets))
    except delivery.BlockedDestination as exc:
        raise validation_error("url", "blocked_destination", f"Webhook URL refused: {exc}")


def _check_secret(secret: str) -> None:
    import base64
    import binascii

    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):  # ValueError: not ASCII
        key = b""
    if not 24 <= len(key) <= 64:
        raise validation_error("secret", "invalid", "secret must be whsec_ + base64 of 24 to "
                               "64 bytes")


def _load(conn: Connection, principal: Principal, webhook_id: str):
    row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).first()
    return require_in_project(conn, principal, row, "project:admin", "Webhook", webhook_id)


def create(conn: Connection, principal: Principal, project_id: str | None, url: str,
           events: Iterable[str], headers: dict, secret: str | None, settings) -> dict:
    project_id = resolve_project(principal, project_id)
    require_project(conn, principal, project_id, "project:admin")
    _check_url(url, settings)
    if secret is not None:
        _check_secret(secret)
    secret = secret or delivery.new_secret()
    now = utcnow()
    webhook_id = new_id("wh")
    conn.execute(insert(webhooks).values(
        id=webhook_id, project_id=project_id, url=url, events=sorted(set(events)),
        headers=headers, secret=box_for(settings.resolved_secret_key).seal(secret),
        is_active=True, created_at=now, updated_at=now))
    row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).one()
    return {**webhook_json(row), "secret": secret}


def list_webhooks(conn: Connection, principal: Principal, project_id: str | None, page) -> dict:
    project_id = resolve_project(principal, project_id)
    require_project(conn, principal, project_id, "project:admin")
    where = webhooks.c.project_id == project_id
    total = conn.execute(select(func.count()).select_from(webhooks).where(where)).scalar_one()
    rows = conn.execute(select(webhooks).where(where).order_by(webhooks.c.id)
                        .limit(page.limit).offset(page.offset)).all()
    return page.page([webhook_json(r) for r in rows], total)


def get(conn: Connection, principal: Principal, webhook_id: str) -> dict:
    return webhook_json(_load(conn, principal, webhook_id))


def update_webhook(conn: Connection, principal: Principal, webhook_id: str, changes: dict,
                   settings) -> dict:
    _load(conn, principal, webhook_id)
    values = {k: v for k, v in changes.items() if v is not None}
    if "url" in values:
        _check_url(values["url"], settings)
    if "secret" in values:
        _check_secret(values["secret"])
        # kept sealed: it must be read back to sign deliveries, never from a dump
        values["secret"] = box_for(settings.resolved_secret_key).seal(values["secret"])
    if "events" in values:
        values["events"] = sorted(set(values["events"]))
    if values.get("is_active"):
        values["disabled_reason"] = None
    now = utcnow()
    conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(
        updated_at=now, **values))
    row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).one()
    return {"id": row.id, "url": row.url, "events": list(row.events),
            "isActive": row.is_active, "updatedAt": iso(row.updated_at)}


def delete_webhook(conn: Connection, principal: Principal, webhook_id: str) -> None:
    _load(conn, principal, webhook_id)
    conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))


def deliveries(conn: Connection, principal: Principal, webhook_id: str, page) -> dict:
    _load(conn, principal, webhook_id)
    where = webhook_deliveries.c.webhook_id == webhook_id
    total = conn.execute(select(func.count()).select_from(webhook_deliveries)
                         .where(where)).scalar_one()
    rows = conn.execute(select(webhook_deliveries).where(where)
                        .order_by(webhook_deliveries.c.id.desc())
                        .limit(page.limit).offset(page.offset)).all()
    return page.page([delivery_json(r) for r in rows], total)


def redeliver(conn: Connection, principal: Principal, webhook_id: str, delivery_id: str) -> dict:
    """Send a delivery again, with the same id (receivers deduplicate on `webhook-id`)."""
    _load(conn, principal, webhook_id)
    row = conn.execute(select(webhook_deliveries).where(
        webhook_deliveries.c.id == delivery_id,
        webhook_deliveries.c.webhook_id == webhook_id)).first()
    if row is None:
        raise not_found("Delivery", delivery_id)
    conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
                 .values(status="pending", updated_at=utcnow()))
    outbox.enqueue(conn, "webhooks.deliver", {"deliveryId": delivery_id},
                   max_attempts=DELIVERY_ATTEMPTS)
    return delivery_json(conn.execute(select(webhook_deliveries).where(
        webhook_deliveries.c.id == delivery_id)).one())


def ping(conn: Connection, principal: Principal, webhook_id: str) -> dict:
    row = _load(conn, principal, webhook_id)
    delivery_id = _queue(conn, row, "ping", {"webhookId": row.id})
    return delivery_json(conn.execute(select(webhook_deliveries).where(
        webhook_deliveries.c.id == delivery_id)).one())


def _queue(conn: Connection, webhook, event: str, data: dict) -> str:
    now = utcnow()
    delivery_id = new_id("whd")
    payload = {"type": event, "timestamp": iso(now), "data": data}
    conn.execute(insert(webhook_deliveries).values(
        id=delivery_id, webhook_id=webhook.id, project_id=webhook.project_id, event=event,
        payload=payload, status="pending", attempts=0, created_at=now, updated_at=now))
    outbox.enqueue(conn, "webhooks.deliver", {"deliveryId": delivery_id},
                   max_attempts=DELIVERY_ATTEMPTS)
    return delivery_id


def active_webhooks(conn: Connection, project_id: str) -> Sequence:
    """The project's active webhooks, for a caller that emits several events at once."""
    return conn.execute(select(webhooks).where(
        webhooks.c.project_id == project_id, webhooks.c.is_active.is_(True))).all()


def emit(conn: Connection, project_id: str, event: str, data: dict,
         active: Sequence | None = None) -> int:
    """Queue `event` for every active webhook of the project subscribed to it, in the
    caller's transaction (`active`: the project's `active_webhooks`, when the caller has
    them). Returns how many deliveries were queued."""
    return emit_each(conn, project_id, event, [data], active)


def emit_each(conn: Connection, project_id: str, event: str, payloads: Iterable[dict],
              active: Sequence | None = None) -> int:
    """`emit` of one event per payload, the subscribers read once. `payloads` is not
    consumed when no webhook subscribes (a lazy one then costs nothing)."""
    if active is None:
        active = active_webhooks(conn, project_id)
    subscribed = [row for row in active if event in row.events]
    if not subscribed:
        return 0
    queued = 0
    for data in payloads:
        for webhook in subscribed:
            _queue(conn, webhook, event, data)
            queued += 1
    return queued


def deliver(engine: Engine, settings, delivery_id: str, last_attempt: bool) -> None:
    """One attempt of one delivery (the outbox job's body). Records the attempt, then raises
    to have the job retried when it failed."""
    with engine.connect() as conn:
        row = conn.execute(select(webhook_deliveries, webhooks.c.url, webhooks.c.secret,
                                  webhooks.c.headers, webhooks.c.is_active)
                           .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
                           .where(webhook_deliveries.c.id == delivery_id)).first()
    if row is None:
        return  # the webhook was deleted: nothing to send
    if row.status == "succeeded":
        return  # a retry of a job whose delivery already landed (idempotent)
    if not row.is_active:
        _record(engine, delivery_id, "failed", None, None, "the webhook is disabled")
        return
    payload = with_links(row.payload, settings.resolved_public_url)
    body = json.dumps({"id": delivery_id, **payload}, separators=(",", ":")).encode()
    allowed = delivery.parse_networks(settings.webhook_allow_nets)
    secret = box_for(settings.resolved_secret_key).open_text(row.secret)
    # Counted before the request goes out: a worker that dies mid-send has still sent it, and
    # the receiver sees each attempt (a delivery sent twice shows `attempts: 2`).
    _count_attempt(engine, delivery_id)
    try:
        outcome = delivery.send(row.url, secret, delivery_id, body, row.headers or {},
                                allowed)
    except delivery.BlockedDestination as exc:
        _record(engine, delivery_id, "failed", None, None, f"refused: {exc}", counted=True)
        raise Permanent(str(exc)) from None
    if outcome.succeeded:
        _record(engine, delivery_id, "succeeded", outcome.status_code, outcome.latency_ms,
                None, counted=True)
        return
    if outcome.status_code == 410:  # Standard Webhooks: gone means stop sending
        _record(engine, delivery_id, "failed", 410, outcome.latency_ms,
                "HTTP 410: the endpoint is gone; webhook disabled", counted=True)
        with engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(update(webhooks).where(webhooks.c.id == row.webhook_id).values(
                is_active=False, disabled_reason="receiver answered 410 Gone",
                updated_at=utcnow()))
        raise Permanent("410 Gone")
    _record(engine, delivery_id, "failed" if last_attempt else "pending",
            outcome.status_code, outcome.latency_ms, outcome.error, counted=True)
    if outcome.retry_after is not None:
        raise RetryLater(outcome.error or "throttled", delay=outcome.retry_after)
    raise RuntimeError(outcome.error or "delivery failed")


def _count_attempt(engine: Engine, delivery_id: str) -> None:
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
                     .values(attempts=webhook_deliveries.c.attempts + 1, updated_at=utcnow()))


def _record(engine: Engine, delivery_id: str, status: str, code, latency, error,
            counted: bool = False) -> None:
    """One attempt's outcome, in its own transaction (kept whatever the job does next);
    `counted`: the attempt was counted when it began (`_count_attempt`)."""
    values = {} if counted else {"attempts": webhook_deliveries.c.attempts + 1}
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
                     .values(status=status, response_code=code, latency_ms=latency,
                             last_error=error, updated_at=utcnow(), **values))
