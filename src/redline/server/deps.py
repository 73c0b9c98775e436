"""Dependencies every endpoint shares: the request's connection, and who is calling within
their rate limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request, Response
from sqlalchemy import Connection

from redline.server.auth import Principal, authenticate
from redline.server.http_errors import ApiError
from redline.server.kit.ratelimit import GROUPS
from redline.server.unit_of_work import UnitOfWork


def unit_of_work(request: Request) -> UnitOfWork:
    return request.state.uow


async def get_db(request: Request) -> Connection:
    """The request's connection. A write's transaction begins here (on SQLite once its writer
    turn has come, waited for on the event loop); the middleware commits or rolls it back."""
    uow = unit_of_work(request)
    if uow.write:
        return await uow.open_write()
    return await anyio.to_thread.run_sync(uow.connection)


Db = Annotated[Connection, Depends(get_db)]


def rate_limited(group: str) -> Callable[[Request, Response], Principal]:
    """A dependency that authenticates the caller and spends one unit of a group's budget
    (the rate-limit headers go on the response)."""

    def dependency(request: Request, response: Response) -> Principal:
        limit = GROUPS[group]
        principal = authenticate(request)
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
