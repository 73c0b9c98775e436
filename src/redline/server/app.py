"""The ASGI application: routers, the middleware pipeline, OpenAPI and its docs page."""

from __future__ import annotations

import contextlib
import gc
import html
import logging

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import _route_selected  # what the router itself reports on a match
from sqlalchemy import Engine
from starlette.routing import Match, Route

from redline import __version__
from redline.errors import CATALOG
from redline.server.config import Settings
from redline.server.db import background_checkpointer, make_engine, make_loop_reads
from redline.server.http_errors import install_exception_handlers
from redline.server.kit.ratelimit import GROUPS, make_limiter
from redline.server.middleware import BodyGuard, RequestContext, UnitOfWork

log = logging.getLogger("redline.server")

DESCRIPTION = """
Redline stores the results of your automated tests, shows history and trends, scores and
quarantines flaky tests, and keeps artifacts.

**Authentication**: a project API key in `X-API-Key` (CI), or a personal token from
`POST /api/auth/login` in `Authorization: Bearer rlu_...`, or the dashboard's session cookie.

**Errors**: every non-2xx response has the same envelope:
`{"error": {"code", "message", "details", "retryable", "nextAction", "requestId"}}` and an
`X-Request-Id` header. Branch on `code`.

**Writes** (POST, PATCH, DELETE) accept an `Idempotency-Key` header (1-255 characters, kept
24 h per credential and route): the same key with the same request replays the first response
(`Idempotent-Replayed: true`); with a different request it is IDEMPOTENCY_BODY_MISMATCH; while
the first is still running it is CONFLICT. Failed requests are not stored, so a corrected retry
with the same key runs.

**Lists** take `limit` (default 50, max 500) and `offset`, answer `total`, and also return an
opaque `nextCursor` to pass back as `cursor`.

**Rate limits** per credential and endpoint group; responses carry `RateLimit-Policy` and
`RateLimit` headers, and a 429 carries `Retry-After`.
"""

# Endpoints whose body is not JSON, and their caps (the rest take JSON up to max_body_bytes).
RAW_BODY_PATHS = {"/api/runs/import", "/api/upload"}


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine or make_engine(settings.resolved_database_url, settings.db_pool_size,
                                   settings.db_max_overflow, checkpoint_in_background=True)
    app = FastAPI(title="Redline API", version=__version__, description=DESCRIPTION,
                  openapi_url=None, docs_url=None, redoc_url=None, lifespan=_lifespan)
    app.state.embedded_worker = False  # `redline serve` turns it on unless --no-worker
    app.state.settings = settings
    app.state.engine = engine
    app.state.limiter = make_limiter(settings.redis_url)
    # SQLite reads run on the event loop (db.py, "reads on the event loop"), unless they would
    # wait there on a rate limiter across the network.
    loop_reads = None
    if not (settings.rate_limit_enabled and app.state.limiter.blocking):
        loop_reads = make_loop_reads(engine)
    app.state.loop_reads = loop_reads

    from redline.server.accounts.endpoints import router as accounts_router
    from redline.server.executions.endpoints import router as executions_router
    from redline.server.projects.endpoints import router as projects_router
    from redline.server.system.endpoints import router as system_router
    from redline.server.teams.endpoints import router as teams_router

    for router in (system_router, accounts_router, teams_router, projects_router,
                   executions_router, *_feature_routers()):
        _add_routes(app, router)

    install_exception_handlers(app)
    _install_docs(app)
    app.router.middleware_stack = RouteIndex(app.router)

    caps = {"/api/runs/import": settings.max_import_bytes, "/api/upload": 201 * 1024 * 1024}
    app.add_middleware(UnitOfWork, engine=engine, loop_reads=loop_reads)
    app.add_middleware(BodyGuard, default_cap=settings.max_body_bytes, caps=caps,
                       raw_paths=RAW_BODY_PATHS)
    app.add_middleware(RequestContext)  # added last: the outermost
    return app


# Allocations between two collections of the youngest generation (Python's default: 700). An
# import allocates millions of objects, many of which live until it ends: at the default, a
# first import of 100,000 JUnit tests here ran 13 full collections (0.9 s of its 6.9 s);
# at 10,000, none (4.9 s). What the collector may leave uncollected between two passes is
# bounded by this count.
GC_YOUNG_THRESHOLD = 10_000


def settle_collector() -> None:
    """At start-up: move the app's own objects (they live for the whole process) out of the
    collector's reach, so that full collections do not walk them every time, and let it run
    less often (GC_YOUNG_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    """The embedded background work of `redline serve`: one outbox worker thread and the
    hourly retention pass."""
    settle_collector()
    # Endpoints run in the threadpool and each needs a connection: threads beyond what the
    # pool keeps only wait on it or, worse, open and close an overflow connection per request
    # (on PostgreSQL a new server process each time); they also fight over the GIL.
    anyio.to_thread.current_default_thread_limiter().total_tokens = \
        app.state.settings.db_pool_size
    checkpointer = background_checkpointer(app.state.engine)
    if checkpointer is not None:
        checkpointer.start()
    if app.state.loop_reads is not None:
        app.state.loop_reads.open()
    loop = worker = None
    if app.state.embedded_worker:
        from redline.server.intelligence.retention import RetentionLoop
        from redline.server.worker.runner import Worker

        loop = RetentionLoop(app.state.engine).start()
        worker = Worker(app.state.engine, app.state.settings).start()
        app.state.worker = worker
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()
        if loop is not None:
            loop.stop()
        if checkpointer is not None:
            checkpointer.stop()
        if app.state.loop_reads is not None:
            app.state.loop_reads.close()


def _add_routes(app: FastAPI, router) -> None:
    """The router's routes straight into the app's one flat list, in order. `include_router`
    keeps each router as a branch that is matched twice per request (once to pick the branch,
    once to pick its route): that cost about a tenth of a cheap request. The feature routers
    carry their prefix, tags and responses on each route already and add no dependencies,
    lifespan or startup handlers, so nothing else of the include is lost."""
    assert not (router.dependencies or router.on_startup or router.on_shutdown), router
    app.router.routes.extend(router.routes)


class RouteIndex:
    """The router's dispatch, narrowed by the first two segments of the path.

    Starlette tries every route in order until one matches: past 100 routes, that was about a
    tenth of a keyed GET. This tries, in the same order, only the routes that can match the
    path's first two segments (`/api/runs/...` tries the routes under `/api/runs`, and those
    with a parameter there); when none matches fully, the router's own dispatch runs as
    before, so a wrong method (405), a trailing slash and a 404 behave exactly as they did."""

    def __init__(self, router):
        self.router = router
        self.dispatch = router.middleware_stack  # the router's own
        self._built_for: tuple[int, int] | None = None
        self._by_pair: dict[tuple[str, str], list] = {}
        self._by_first: dict[str, list] = {}
        self._always: list = []

    def _build(self) -> None:
        routes = self.router.routes
        # each route's first two segments, None where it has a parameter (or is no plain route)
        patterns = [(route, _segments(route.path_format) if isinstance(route, Route)
                     else (None, None)) for route in routes]

        def candidates(first: str, second: str | None) -> list:
            return [route for route, (p1, p2) in patterns
                    if p1 is None or (p1 == first and (p2 is None or p2 == second))]

        pairs = {pattern for _, pattern in patterns if None not in pattern}
        self._by_pair = {pair: candidates(*pair) for pair in pairs}
        self._by_first = {p1: candidates(p1, None) for _, (p1, _p2) in patterns
                          if p1 is not None}
        self._always = [route for route, (p1, _p2) in patterns if p1 is None]
        self._built_for = (id(routes), len(routes))

    def candidates(self, path: str) -> list:
        """The routes, in order, that may match `path` (an empty list: ask the router)."""
        if self._built_for != (id(self.router.routes), len(self.router.routes)):
            self._build()
        first, second = _segments(path)
        return self._by_pair.get((first, second)) or self._by_first.get(first) or self._always

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.dispatch(scope, receive, send)
        for route in self.candidates(scope["path"]):
            match, child_scope = route.matches(scope)
            if match == Match.FULL:
                scope.setdefault("router", self.router)
                scope.update(child_scope)
                _route_selected(scope=scope, path=route.path_format)
                return await route.handle(scope, receive, send)
        return await self.dispatch(scope, receive, send)


def _segments(path: str) -> tuple[str | None, str | None]:
    """The first two segments of a path ("" where absent), None for a parameter."""
    parts = path.split("/", 3)[1:3] + ["", ""]
    return tuple(None if "{" in part else part for part in parts[:2])  # type: ignore[return-value]


def _feature_routers():
    """Routers of the result features and the dashboard (imported when the app is built)."""
    from redline.server.artifacts.endpoints import router as artifacts
    from redline.server.imports.endpoints import router as imports
    from redline.server.intelligence.endpoints import router as intelligence
    from redline.server.results.endpoints import router as results
    from redline.server.runs.endpoints import router as runs
    from redline.server.web.views import router as web
    from redline.server.webhooks.endpoints import router as webhooks

    return [runs, imports, results, intelligence, webhooks, web, artifacts]


def _install_docs(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            schema["components"]["securitySchemes"] = {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            }
            schema["security"] = [{"apiKey": []}, {"bearer": []}]
            schema["x-error-codes"] = {
                code: {"httpStatus": kind.http_status, "exitCode": kind.exit_code,
                       "retryable": kind.retryable, "nextAction": kind.next_action}
                for code, kind in CATALOG.items()}
            schema["x-rate-limits"] = {g.group: {"limit": g.limit, "window": g.window}
                                       for g in GROUPS.values()}
            _add_public_operations(schema)
            _add_links(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi_json():
        return JSONResponse(openapi())

    @app.get("/api/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs_page():
        return HTMLResponse(render_docs(openapi()))


# Operations anyone may call without credentials.
PUBLIC_OPERATIONS = [("/api/health", "get"), ("/api/setup", "post"), ("/api/auth/login", "post"),
                     ("/api/invitations/{invitation_id}/accept", "post")]

# OpenAPI links: how the id a create returns feeds the operations on that object (clients and
# schemathesis' stateful phase follow them).
LINKS = [
    ("/api/teams", "post", "id", "team_id", "/api/teams/{team_id}", ["get", "patch", "delete"]),
    ("/api/projects", "post", "id", "project_id", "/api/projects/{project_id}",
     ["get", "patch", "delete"]),
    ("/api/projects", "post", "id", "project_id", "/api/projects/{project_id}/settings",
     ["get", "patch"]),
    ("/api/api-keys", "post", "id", "key_id", "/api/api-keys/{key_id}", ["patch", "delete"]),
    ("/api/team-members", "post", "id", "invitation_id", "/api/invitations/{invitation_id}",
     ["delete"]),
]


def _add_public_operations(schema: dict) -> None:
    for path, method in PUBLIC_OPERATIONS:
        operation = schema["paths"].get(path, {}).get(method)
        if operation is not None:
            operation["security"] = []


def _add_links(schema: dict) -> None:
    paths = schema["paths"]
    for source, method, field, parameter, target, target_methods in LINKS:
        operation = paths.get(source, {}).get(method)
        if operation is None or target not in paths:
            continue
        status = next((s for s in operation["responses"] if s.startswith("2")), None)
        links = operation["responses"][status].setdefault("links", {})
        for target_method in target_methods:
            if target_method not in paths[target]:
                continue
            pointer = target.replace("~", "~0").replace("/", "~1")
            name = f"{target_method.title()}{target.rsplit('/', 1)[-1].strip('{}').title()}"
            name = name.replace("_", "")
            links[name] = {"operationRef": f"#/paths/{pointer}/{target_method}",
                           "parameters": {parameter: f"$response.body#/{field}"}}


def render_docs(schema: dict) -> str:
    """A plain HTML reference of the API (no scripts, nothing from another origin)."""
    esc = html.escape
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<title>{esc(schema['info']['title'])} reference</title>"
             "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
             "padding:0 1rem;color:#1b1b1f}code,pre{background:#f2f2f5;padding:.1rem .3rem;"
             "border-radius:4px}h3{margin-bottom:.2rem}.m{display:inline-block;width:4.5rem;"
             "font-weight:700}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:.2rem .5rem;text-align:left}</style></head><body>",
             f"<h1>{esc(schema['info']['title'])} {esc(schema['info']['version'])}</h1>",
             f"<pre style='white-space:pre-wrap'>{esc(schema['info'].get('description', ''))}"
             "</pre><p>Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a></p>",
             "<h2>Error codes</h2><table><tr><th>code</th><th>HTTP</th><th>CLI exit</th>"
             "<th>retryable</th><th>next action</th></tr>"]
    for code, kind in schema.get("x-error-codes", {}).items():
        parts.append(f"<tr><td><code>{esc(code)}</code></td><td>{kind['httpStatus'] or '-'}"
                     f"</td><td>{kind['exitCode']}</td><td>{'yes' if kind['retryable'] else 'no'}"
                     f"</td><td>{esc(kind['nextAction'])}</td></tr>")
    parts.append("</table><h2>Endpoints</h2>")
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            parts.append(f"<h3><span class=m>{method.upper()}</span><code>{esc(path)}</code>"
                         f"</h3><p><b>{esc(op.get('summary', ''))}</b></p>")
            if op.get("description"):
                parts.append(f"<p>{esc(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<p>Parameters: " + ", ".join(
                    f"<code>{esc(p['name'])}</code> ({esc(p['in'])}"
                    f"{', required' if p.get('required') else ''})" for p in params) + "</p>")
    parts.append("</body></html>")
    return "".join(parts)
