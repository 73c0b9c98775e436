"""Dependencies every endpoint shares: the request's connection, and who is calling within
their rate limit. The async ones take the request's database slot on the event loop and run
their database work in a worker thread (`unit_of_work.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

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
    turn has come); the middleware commits or rolls it back."""
    uow = unit_of_work(request)
    return await (uow.open_write() if uow.write else uow.open_read())


Db = Annotated[Connection, Depends(get_db)]


async def current_principal(request: Request) -> Principal:
    """Who is calling (no rate limit): AUTH_REQUIRED or AUTH_INVALID otherwise."""
    return await unit_of_work(request).read(lambda conn: authenticate(request, conn))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def rate_limited(group: str) -> Callable[[Request, Response], Awaitable[Principal]]:
    """A dependency that authenticates the caller and spends one unit of a group's budget
    (the rate-limit headers go on the response), in one worker thread."""

    async def dependency(request: Request, response: Response) -> Principal:
        return await unit_of_work(request).read(
            lambda conn: _authenticate_and_limit(request, response, conn, group))

    return dependency


def _authenticate_and_limit(request: Request, response: Response, conn: Connection,
                            group: str) -> Principal:
    limit = GROUPS[group]
    principal = authenticate(request, conn)
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
