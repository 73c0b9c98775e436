"""Shared pydantic bases: camelCase on the wire, unknown fields refused in and out."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from redline.server.kit.numbers import INT32_MAX, MAX_DURATION_MS, integral

# Integers of request bodies: JSON has one number type, so 5.0 is the integer 5 (5.5 stays an
# error), and each is bounded by the column that keeps it, so a number too big for it is
# VALIDATION_ERROR naming the field, never a database error.
Int32 = Annotated[int, BeforeValidator(integral), Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
DurationMs = Annotated[int, BeforeValidator(integral),
                       Field(ge=0, le=MAX_DURATION_MS, description="Milliseconds.")]


class ApiModel(BaseModel):
    # strict: JSON `true` is not a number and "5" is not an integer (no silent coercion)
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              serialize_by_alias=True, strict=True)


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(description="Stable error code from the catalog; branch on this.")
    message: str
    details: dict[str, Any]
    retryable: bool
    nextAction: str
    requestId: str | None = None


class ErrorEnvelope(BaseModel):
    model_config = ConfigDict(extra="forbid")
    error: ErrorBody


class Deleted(ApiModel):
    success: bool
    message: str


T = TypeVar("T")


class ListPage(ApiModel, Generic[T]):
    data: list[T]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in [
        (400, "VALIDATION_ERROR: bad field, enum value, cursor or malformed JSON"),
        (401, "AUTH_REQUIRED or AUTH_INVALID"),
        (403, "AUTH_FORBIDDEN: a scope or role is missing (details.required, details.granted)"),
        (404, "NOT_FOUND: no such id, or another tenant's"),
        (405, "Method not allowed (code VALIDATION_ERROR)"),
        (409, "CONFLICT or IDEMPOTENCY_BODY_MISMATCH"),
        (413, "PAYLOAD_TOO_LARGE"),
        (429, "RATE_LIMITED (see Retry-After and RateLimit headers)"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE (see Retry-After)"),
    ]
}
