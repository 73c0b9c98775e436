"""Pagination for every list: `limit`/`offset` with `total`, and an opaque `cursor` that a
client can follow through `nextCursor`.

A cursor is signed and bound to the list it came from (path and credential), so it cannot be
forged, edited, or replayed by another tenant: any of those is a VALIDATION_ERROR.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from redline.server.http_errors import ApiError
from redline.server.kit.cookies import session_cookie
from redline.server.kit.signing import sign, unsign

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass
class PageRequest:
    limit: int
    offset: int
    binding: str
    secret: bytes

    def page(self, items: list[Any], total: int) -> dict[str, Any]:
        """The list envelope: data, total, limit, offset, nextCursor."""
        next_offset = self.offset + len(items)
        next_cursor = None
        if next_offset < total and items:
            next_cursor = sign(self.secret, "cursor",
                               {"o": next_offset, "l": self.limit, "b": self.binding})
        return {"data": items, "total": total, "limit": self.limit, "offset": self.offset,
                "nextCursor": next_cursor}


def _binding(request: Request) -> str:
    credential = (request.headers.get("x-api-key") or request.headers.get("authorization")
                  or session_cookie(request) or "")
    digest = hashlib.sha256(f"{request.url.path}|{credential}".encode()).hexdigest()
    return digest[:24]


def page_request(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (max 500).")]
    = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")] = 0,
    cursor: Annotated[str | None, Query(max_length=512, description="The `nextCursor` of the "
                                        "previous page; overrides limit and offset.")] = None,
) -> PageRequest:
    secret = request.app.state.settings.resolved_secret_key
    binding = _binding(request)
    if cursor is not None:
        payload = unsign(secret, "cursor", cursor)
        if (payload is None or payload.get("b") != binding
                or not isinstance(payload.get("o"), int) or not isinstance(payload.get("l"), int)):
            raise ApiError("VALIDATION_ERROR", "The cursor is invalid, or it belongs to another "
                           "list or credential", {"field": "cursor", "reason": "invalid_cursor",
                                                  "errors": [{"field": "cursor", "reason":
                                                              "invalid_cursor", "message":
                                                              "invalid cursor"}]})
        return PageRequest(payload["l"], payload["o"], binding, secret)
    return PageRequest(limit, offset, binding, secret)


Page = Annotated[PageRequest, Depends(page_request)]
