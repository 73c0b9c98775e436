"""Webhooks and their deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from redline.server.auth import Principal
from redline.server.deps import Db, rate_limited
from redline.server.kit.pagination import Page
from redline.server.schemas import ERROR_RESPONSES, Deleted, ListPage
from redline.server.webhooks import schemas, service

router = APIRouter(prefix="/api", tags=["Webhooks"], responses=ERROR_RESPONSES)
Caller = Annotated[Principal, Depends(rate_limited("keys-webhooks"))]


@router.get("/webhooks", response_model=ListPage[schemas.Webhook], summary="List webhooks")
def list_webhooks(db: Db, caller: Caller, page: Page,
                  project_id: Annotated[str | None, Query(alias="projectId",
                                                          max_length=40)] = None):
    return service.list_webhooks(db, caller, project_id, page)


@router.post("/webhooks", response_model=schemas.WebhookCreated, status_code=201,
             summary="Create a webhook")
def create_webhook(body: schemas.WebhookCreate, request: Request, db: Db, caller: Caller):
    """Events: `run.completed`, `run.failed`, `test.flaky` (a test crosses the project's
    flakiness threshold) and `test.quarantined`. Deliveries are signed as Standard Webhooks
    specifies (`webhook-id`, `webhook-timestamp`, `webhook-signature`), time out after 10 s and
    are retried with backoff for about a day. URLs that resolve to loopback, private,
    link-local or metadata addresses are refused (`REDLINE_WEBHOOK_ALLOW_NETS` allows
    networks), now and again at each delivery."""
    return service.create(db, caller, body.project_id, body.url, body.events, body.headers,
                          body.secret, request.app.state.settings)


@router.get("/webhooks/{webhook_id}", response_model=schemas.Webhook, summary="Get a webhook")
def get_webhook(webhook_id: str, db: Db, caller: Caller):
    return service.get(db, caller, webhook_id)


@router.patch("/webhooks/{webhook_id}", response_model=schemas.WebhookUpdated,
              summary="Update a webhook")
def patch_webhook(webhook_id: str, body: schemas.WebhookUpdate, request: Request, db: Db,
                  caller: Caller):
    return service.update_webhook(db, caller, webhook_id, body.model_dump(by_alias=False),
                                  request.app.state.settings)


@router.delete("/webhooks/{webhook_id}", response_model=Deleted, summary="Delete a webhook")
def delete_webhook(webhook_id: str, db: Db, caller: Caller):
    service.delete_webhook(db, caller, webhook_id)
    return {"success": True, "message": "Webhook deleted successfully"}


@router.get("/webhooks/{webhook_id}/deliveries", response_model=ListPage[schemas.Delivery],
            summary="A webhook's deliveries, newest first")
def list_deliveries(webhook_id: str, db: Db, caller: Caller, page: Page):
    return service.deliveries(db, caller, webhook_id, page)


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
             response_model=schemas.Delivery, summary="Send a delivery again")
def redeliver(webhook_id: str, delivery_id: str, db: Db, caller: Caller):
    """With the same `webhook-id`, so a receiver that already has it can drop it."""
    return service.redeliver(db, caller, webhook_id, delivery_id)


@router.post("/webhooks/{webhook_id}/ping", response_model=schemas.Delivery,
             summary="Send a test event")
def ping(webhook_id: str, db: Db, caller: Caller):
    return service.ping(db, caller, webhook_id)
