"""Dependencies every endpoint shares: the request's connection and its rate limit."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute, _extract_endpoint_context, serialize_response
from fastapi.utils import is_body_allowed_for_status_code
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


READ_METHODS = {"GET", "HEAD"}


def sized_by_run(endpoint):
    """Marks a read whose work grows with the size of a run (all of a run's results, its
    whole suite tree) rather than with a page: it keeps a worker thread, where SQLite runs
    the query without holding the GIL, so a 100,000-result run does not stall the event loop
    for every other request meanwhile."""
    endpoint.sized_by_run = True
    return endpoint


class DirectRoute(APIRoute):
    """An APIRoute that binds the inputs of simple endpoints itself.

    FastAPI's generic handler solves a tree of dependencies on every request (for each one:
    its path, query, header and cookie parameters, its cache key, whether it is a generator):
    for a keyed GET by id that cost about a fifth of the request. Most of Redline's endpoints
    by id take nothing but path ids (plain strings), the request, its response, and `async`
    dependencies that take only those two (`get_db`, `rate_limited`). For those, this binds
    the values directly and serializes the result with FastAPI's own `serialize_response`
    and the route's response model, as FastAPI does. Any other endpoint (a query parameter,
    a body, a sync or nested dependency) keeps FastAPI's handler."""

    def __init__(self, *args, **kwargs):
        self.direct = False
        super().__init__(*args, **kwargs)
        if self.direct:
            # Nor FastAPI's per-request wrapping: two exit stacks (for `yield` dependencies,
            # which these have none of) and a second exception-handler layer (the app's
            # ExceptionMiddleware applies the same handlers).
            handler = self.get_route_handler()

            async def app(scope, receive, send):
                response = await handler(Request(scope, receive, send))
                await response(scope, receive, send)

            self.app = app

    def get_route_handler(self):
        plan = _direct_plan(self)
        if plan is None:
            return super().get_route_handler()
        self.direct = True
        return _direct_handler(self, *plan)


# What a dependant may take for `DirectRoute` to bind it: none of these.
_NOT_BOUND_DIRECTLY = ("query_params", "header_params", "cookie_params", "body_params",
                       "background_tasks_param_name", "security_scopes_param_name",
                       "websocket_param_name", "http_connection_param_name")


def _binds_directly(dependant) -> bool:
    return (inspect.iscoroutinefunction(dependant.call)
            and not any(getattr(dependant, name) for name in _NOT_BOUND_DIRECTLY))


def _direct_plan(route: APIRoute):
    """(path parameter names, request/response parameter names of the endpoint, dependencies
    as (name, call, its request and response parameter names)), or None."""
    dependant = route.dependant
    if (not _binds_directly(dependant) or route.body_field is not None
            or not isinstance(route.response_class, DefaultPlaceholder)):
        return None
    for field in dependant.path_params:
        if field.field_info.annotation is not str or field.field_info.metadata:
            return None
    dependencies = []
    for sub in dependant.dependencies:
        own = [n for n in (sub.request_param_name, sub.response_param_name) if n]
        if (sub.name is None or not _binds_directly(sub) or sub.dependencies or sub.path_params
                or len(inspect.signature(sub.call).parameters) != len(own)):
            return None
        dependencies.append((sub.name, sub.call, sub.request_param_name,
                             sub.response_param_name))
    return ([field.name for field in dependant.path_params],
            (dependant.request_param_name, dependant.response_param_name), dependencies)


def _direct_handler(route: APIRoute, path_names, own, dependencies):
    endpoint = route.dependant.call
    request_name, response_name = own
    context = _extract_endpoint_context(endpoint)

    async def handler(request: Request) -> Response:
        sub_response = Response()
        del sub_response.headers["content-length"]
        sub_response.status_code = None  # type: ignore[assignment]  # as FastAPI's
        path_params = request.path_params
        values = {name: path_params[name] for name in path_names}
        solved: dict = {}  # one call per dependency and request, as FastAPI caches them
        for name, call, takes_request, takes_response in dependencies:
            value = solved.get(call, solved)
            if value is solved:
                kwargs = {}
                if takes_request:
                    kwargs[takes_request] = request
                if takes_response:
                    kwargs[takes_response] = sub_response
                value = solved[call] = await call(**kwargs)
            values[name] = value
        if request_name:
            values[request_name] = request
        if response_name:
            values[response_name] = sub_response
        raw = await endpoint(**values)
        if isinstance(raw, Response):
            return raw
        content = await serialize_response(
            field=route.response_field, response_content=raw,
            include=route.response_model_include, exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none, endpoint_ctx=context,
            dump_json=route.response_field is not None)
        status = sub_response.status_code or route.status_code
        if route.response_field is not None:
            response = Response(content=content, media_type="application/json",
                                **({"status_code": status} if status else {}))
        else:  # FastAPI's default response class (JSONResponse) and its encoded content
            response = route.response_class.value(
                content, **({"status_code": status} if status else {}))
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        response.headers.raw.extend(sub_response.headers.raw)
        return response

    return handler


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
    this also keeps the write lock for one thread call instead of across two hops.

    On SQLite, reads (GET, HEAD) make no hop at all: they run on the event loop (db.py,
    "reads on the event loop"). Routes are `DirectRoute`s."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("route_class", DirectRoute)
        super().__init__(*args, **kwargs)

    def add_api_route(self, path, endpoint, **kwargs):
        response_model = kwargs.get("response_model")
        if isinstance(response_model, DefaultPlaceholder):  # none declared
            response_model = None
        # Reads (GET, HEAD) run on the event loop (db.py, "reads on the event loop"), except
        # those marked `sized_by_run`. The routes that serve blobs also take other methods,
        # and so keep their threads.
        reads = (set(kwargs.get("methods") or ()) <= READ_METHODS
                 and not getattr(endpoint, "sized_by_run", False))
        return super().add_api_route(path, _one_thread(endpoint, response_model, reads),
                                     **kwargs)


def _resolve(kwargs: dict) -> dict:
    return {k: (v.run() if isinstance(v, Deferred) else v) for k, v in kwargs.items()}


def _call(function, args, kwargs: dict, response_type: TypeAdapter | None):
    """The endpoint with its deferred dependencies, in the current thread (a worker thread,
    or the event loop's for a SQLite read)."""
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


# Reads that run in threads (PostgreSQL) take at most this many at once. Python threads share
# one GIL: past a few, more runnable threads only hand it around (a keyed GET on PostgreSQL
# served 20 to 40% more requests a second with 4 threads than with 10, on 2 CPUs). Writes, which may wait on
# locks, uploads and long imports, keep the whole threadpool.
READ_THREADS = 4
_read_limiter: anyio.CapacityLimiter | None = None


def _read_threads() -> anyio.CapacityLimiter:
    global _read_limiter
    if _read_limiter is None:  # made in the event loop's own thread
        _read_limiter = anyio.CapacityLimiter(READ_THREADS)
    return _read_limiter


def _one_thread(function, response_model=None, reads=False):
    if inspect.iscoroutinefunction(function):
        @functools.wraps(function)
        async def endpoint(*args, **kwargs):
            if any(isinstance(v, Deferred) for v in kwargs.values()):
                kwargs = await run_in_threadpool(_resolve, kwargs)
            return await function(*args, **kwargs)
    elif reads:
        @functools.wraps(function)
        async def endpoint(*args, **kwargs):
            uow = next((v.uow for v in kwargs.values()
                        if isinstance(v, (Deferred, LazyConnection))), None)
            if uow is None:  # touches neither the database nor the caller's credentials
                return await run_in_threadpool(function, *args, **kwargs)
            loop_reads = uow.loop_reads
            if loop_reads is None:  # PostgreSQL, or a rate limiter across the network
                return await anyio.to_thread.run_sync(_call, function, args, kwargs, None,
                                                      limiter=_read_threads())
            return loop_reads.run(uow.lend, lambda: _call(function, args, kwargs, None))
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
