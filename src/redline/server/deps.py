"""Dependencies every endpoint shares: the request's connection and its rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy import Connection

from redline.server.auth import CurrentPrincipal
from redline.server.http_errors import ApiError
from redline.server.kit.ratelimit import GROUPS


def get_db(request: Request) -> Connection:
    """The request's connection; the UnitOfWork middleware commits or rolls it back."""
    return request.state.uow.connection()


Db = Annotated[Connection, Depends(get_db)]


def rate_limited(group: str):
    """A dependency that authenticates the caller and spends one unit of a group's budget."""
    limit = GROUPS[group]

    def dependency(request: Request, response: Response, principal: CurrentPrincipal):
        if request.app.state.settings.rate_limit_enabled:
            decision = request.app.state.limiter.acquire(f"{group}:{principal.rate_key}", limit)
            if not decision.allowed:
                raise ApiError("RATE_LIMITED", f"Rate limit of {limit.limit} requests per "
                               f"{limit.window} s for '{group}' reached; retry in "
                               f"{decision.retry_after} s",
                               {"group": group, "limit": limit.limit, "window": limit.window,
                                "retryAfter": decision.retry_after}, decision.headers())
            for name, value in decision.headers().items():
                response.headers[name] = value
        return principal

    return dependency


def address_rate_limited(request: Request) -> None:
    """For unauthenticated endpoints (sign-in, setup): a budget per client address."""
    if not request.app.state.settings.rate_limit_enabled:
        return
    address = request.client.host if request.client else "unknown"
    decision = request.app.state.limiter.acquire(f"auth:{address}", GROUPS["auth"])
    if not decision.allowed:
        raise ApiError("RATE_LIMITED", "Too many attempts from this address; retry in "
                       f"{decision.retry_after} s", {"group": "auth",
                                                     "retryAfter": decision.retry_after},
                       decision.headers())
