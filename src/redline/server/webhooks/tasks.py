"""The webhook delivery job."""

from __future__ import annotations

from redline.server.webhooks import service
from redline.server.worker.registry import task


@task("webhooks.deliver")
def deliver(ctx, payload: dict) -> None:
    service.deliver(ctx.engine, ctx.settings, payload["deliveryId"],
                    last_attempt=ctx.job.attempts >= ctx.job.max_attempts)
