from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from redline.server.schemas import ApiModel

Event = Literal["run.completed", "run.failed", "test.flaky", "test.quarantined", "run.queued",
                "run.started"]


# What every delivery can send (RFC 9110): a header name is a token, a value is visible ASCII,
# spaces and tabs (no CR/LF). Anything else is refused here rather than failing every delivery.
HeaderName = Annotated[str, Field(min_length=1, max_length=256,
                                  pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
HeaderValue = Annotated[str, Field(max_length=4096, pattern=r"^[\x20-\x7e\t]*$")]
SECRET_PATTERN = r"^whsec_[A-Za-z0-9+/]+={0,2}$"


class WebhookCreate(ApiModel):
    project_id: str | None = Field(None, max_length=40)
    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://")
    events: list[Event] = Field(min_length=1, max_length=6)
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=20)
    secret: str | None = Field(None, min_length=16, max_length=200, pattern=SECRET_PATTERN,
                               description="`whsec_` + base64 (24-64 bytes); generated when "
                               "omitted and returned once.")


class WebhookUpdate(ApiModel):
    url: str | None = Field(None, min_length=8, max_length=2048, pattern=r"^https?://")
    events: list[Event] | None = Field(None, min_length=1, max_length=6)
    headers: dict[HeaderName, HeaderValue] | None = Field(None, max_length=20)
    secret: str | None = Field(None, min_length=16, max_length=200, pattern=SECRET_PATTERN)
    is_active: bool | None = None


class Webhook(ApiModel):
    id: str
    project_id: str
    url: str
    events: list[str]
    headers: dict[str, str]
    is_active: bool
    disabled_reason: str | None
    created_at: str
    updated_at: str


class WebhookCreated(Webhook):
    secret: str = Field(description="Verifies deliveries. Shown only in this response.")


class WebhookUpdated(ApiModel):
    id: str
    url: str
    events: list[str]
    is_active: bool
    updated_at: str


class Delivery(ApiModel):
    id: str
    webhook_id: str
    event: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    response_code: int | None
    latency_ms: int | None
    last_error: str | None
    payload: dict[str, Any]
    created_at: str
    updated_at: str
