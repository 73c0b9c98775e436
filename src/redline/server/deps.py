"""Dependencies every endpoint shares: the request's connection and its rate limit."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.datastructures import DefaultPlaceholder
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from redline.server.auth import Principal, authenticate
from redline.server.http_errors import ApiError
from redline.server.kit.ratelimit import GROUPS


class LazyConnection:
    """The request's connection, opened on first use in whichever thread uses it.

    An `async` dependency hands this out without a threadpool hop (checking a connection out
    may block); the endpoint's own thread opens it. The UnitOfWork middleware commits or
    rolls it back."""

    __slots__ = ("uow",)

    def __init__(self, uow):
        self.uow = uow

    def __getattr__(self, name):
        return getattr(self.uow.connection(), name)


async def get_db(request: Request) -> Connection:
    return LazyConnection(request.state.uow)  # type: ignore[return-value]


Db = Annotated[Connection, Depends(get_db)]


class Deferred:
    """Work a dependency leaves for the endpoint's thread (see `OneThreadRouter`), and the
    request's unit of work it uses."""

    __slots__ = ("run", "uow")

    def __init__(self, run, uow):
        self.run = run
        self.uow = uow


def rate_limited(group: str):
    """A dependency that authenticates the caller and spends one unit of a group's budget.

    It is async and only defers the work: `OneThreadRouter` runs it in the endpoint's thread,
    so a request costs one threadpool hop, not one per dependency."""

    async def dependency(request: Request, response: Response) -> Principal:
        return Deferred(lambda: _authenticate_and_limit(request, response, group),
                        request.state.uow)

    return dependency


def _authenticate_and_limit(request: Request, response: Response, group: str) -> Principal:
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


class OneThreadRouter(APIRouter):
    """An APIRouter whose plain (`def`) endpoints run in ONE threadpool call together with
    their deferred dependencies (authentication, rate limit), and whose responses are then
    validated on the event loop: FastAPI alone would hop threads once per sync dependency,
    once for the endpoint and once more to validate the response.

    That call also finishes the request's unit of work when nothing after the endpoint can
    change the outcome, so the UnitOfWork middleware has no second hop to make: a read gives
    its connection back; a failed request rolls back; a write commits once its result has
    passed the same response-model validation FastAPI applies next (so a response that would
    fail as a 500 is never committed) unless its response is to be stored with the effect
    (Idempotency-Key), which the middleware commits in one transaction as before. On SQLite
    this also keeps the write lock for one thread call instead of across two hops."""

    def add_api_route(self, path, endpoint, **kwargs):
        response_model = kwargs.get("response_model")
        if isinstance(response_model, DefaultPlaceholder):  # none declared
            response_model = None
        return super().add_api_route(path, _one_thread(endpoint, response_model), **kwargs)


def _resolve(kwargs: dict) -> dict:
    return {k: (v.run() if isinstance(v, Deferred) else v) for k, v in kwargs.items()}


def _call(function, args, kwargs: dict, response_type: TypeAdapter | None):
    """The endpoint with its deferred dependencies, in the current (worker) thread."""
    units = {id(v.uow): v.uow for v in kwargs.values()
             if isinstance(v, (Deferred, LazyConnection))}.values()
    try:
        result = function(*args, **_resolve(kwargs))
    except BaseException:
        for uow in units:
            if uow.opened:
                uow.finish(False)
        raise
    for uow in units:
        if not uow.opened:
            continue
        if not uow.write:
            uow.finish(False)
        elif (not uow.stores_response and response_type is not None
              and not isinstance(result, Response) and _valid(response_type, result)):
            uow.finish(True)
    return result


def _valid(response_type: TypeAdapter, result) -> bool:
    try:
        response_type.validate_python(result, from_attributes=True)  # as FastAPI does
    except ValidationError:
        return False  # FastAPI answers 500 and the middleware rolls back
    return True


def _one_thread(function, response_model=None):
    if inspect.iscoroutinefunction(function):
        @functools.wraps(function)
        async def endpoint(*args, **kwargs):
            if any(isinstance(v, Deferred) for v in kwargs.values()):
                kwargs = await run_in_threadpool(_resolve, kwargs)
            return await function(*args, **kwargs)
    else:
        response_type = TypeAdapter(response_model) if response_model is not None else None

        @functools.wraps(function)
        async def endpoint(*args, **kwargs):
            return await run_in_threadpool(_call, function, args, kwargs, response_type)
    endpoint.one_thread = True  # tests check every route has it: no Deferred left unresolved
    return endpoint


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
