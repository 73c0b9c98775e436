"""The ASGI application: routers, the middleware pipeline, OpenAPI and its docs page."""

from __future__ import annotations

import contextlib
import gc
import html
import logging
import time

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import Engine

from redline import __version__
from redline.errors import CATALOG
from redline.server.accounts.endpoints import router as accounts_router
from redline.server.artifacts.endpoints import router as artifacts_router
from redline.server.config import Settings
from redline.server.db import background_checkpointer, make_engine
from redline.server.executions.embedded import EmbeddedRunner
from redline.server.executions.endpoints import router as executions_router
from redline.server.executions.tasks import ExecutionsLoop
from redline.server.http_errors import install_exception_handlers
from redline.server.imports.endpoints import router as imports_router
from redline.server.intelligence.endpoints import router as intelligence_router
from redline.server.intelligence.retention import RetentionLoop
from redline.server.kit.ratelimit import GROUPS, make_limiter
from redline.server.middleware import BodyGuard, RequestContext, UnitOfWorkMiddleware
from redline.server.projects.endpoints import router as projects_router
from redline.server.results.endpoints import router as results_router
from redline.server.runs.endpoints import router as runs_router
from redline.server.system.endpoints import router as system_router
from redline.server.teams.endpoints import router as teams_router
from redline.server.unit_of_work import Slots, writer_turns
from redline.server.web.executions import router as web_executions_router
from redline.server.web.views import assets as web_assets_router
from redline.server.web.views import router as web_router
from redline.server.webhooks.endpoints import router as webhooks_router
from redline.server.worker.runner import Worker
from redline.server.worker.shards import ShardTimeoutLoop

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

# In the order they are matched.
ROUTERS = (system_router, accounts_router, teams_router, projects_router, executions_router,
           runs_router, imports_router, results_router, intelligence_router, webhooks_router,
           web_router, web_executions_router, web_assets_router, artifacts_router)

# Endpoints whose body is not JSON, and their caps (the rest take JSON up to max_body_bytes).
RAW_BODY_PATHS = {"/api/runs/import", "/api/upload"}


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine or make_engine(settings.resolved_database_url, settings.db_pool_size,
                                   settings.db_max_overflow, checkpoint_in_background=True)
    app = FastAPI(title="Redline API", version=__version__, description=DESCRIPTION,
                  openapi_url=None, docs_url=None, redoc_url=None, lifespan=_lifespan)
    app.state.embedded_worker = False  # `redline serve` turns it on unless --no-worker
    app.state.embedded_runner_url = None  # `redline serve`: its own URL unless --no-runner
    app.state.settings = settings
    app.state.engine = engine
    app.state.limiter = make_limiter(settings.redis_url)

    for router in ROUTERS:
        app.include_router(router)

    install_exception_handlers(app)
    _install_docs(app)

    caps = {"/api/runs/import": settings.max_import_bytes, "/api/upload": 201 * 1024 * 1024}
    app.add_middleware(UnitOfWorkMiddleware, engine=engine,
                       slots=Slots(settings.db_pool_size + settings.db_max_overflow),
                       turns=writer_turns(engine, settings.write_wait_seconds))
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
    hourly retention pass, the executions' loop and the shard timeout's sweep."""
    settle_collector()
    # Endpoints run in the threadpool and each needs a connection: threads beyond what the
    # pool keeps only wait on it or, worse, open and close an overflow connection per request
    # (on PostgreSQL a new server process each time); they also fight over the GIL.
    anyio.to_thread.current_default_thread_limiter().total_tokens = \
        app.state.settings.db_pool_size
    checkpointer = background_checkpointer(app.state.engine)
    if checkpointer is not None:
        checkpointer.start()
    loop = worker = executions = shards = runner = None
    if app.state.embedded_worker:
        loop = RetentionLoop(app.state.engine).start()
        worker = Worker(app.state.engine, app.state.settings).start()
        app.state.worker = worker
        executions = ExecutionsLoop(app.state.engine).start()
        shards = ShardTimeoutLoop(app.state.engine,
                                  app.state.settings.shard_timeout_seconds).start()
    if app.state.embedded_runner_url:
        runner = EmbeddedRunner(app.state.engine, app.state.settings,
                                app.state.embedded_runner_url).start()
    try:
        yield
    finally:
        # The background work shares one grace period (after the requests' own): what is
        # still running then is left to its lease, so SIGTERM always ends the process.
        deadline = time.monotonic() + app.state.settings.shutdown_grace_seconds

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        if runner is not None:
            runner.stop(timeout=left())
        if executions is not None:
            executions.stop(timeout=left())
        if shards is not None:
            shards.stop(timeout=left())
        if worker is not None:
            worker.stop(timeout=left())
        if loop is not None:
            loop.stop()
        if checkpointer is not None:
            checkpointer.stop()


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
    parts = [(f"<!doctype html><html lang=en><head><meta charset=utf-8>"
              f"<title>{esc(schema['info']['title'])} reference</title>"
              "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
              "padding:0 1rem;color:#1b1b1f}code,pre{background:#f2f2f5;padding:.1rem .3rem;"
              "border-radius:4px}h3{margin-bottom:.2rem}.m{display:inline-block;width:4.5rem;"
              "font-weight:700}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
              "padding:.2rem .5rem;text-align:left}</style></head><body>"),
             f"<h1>{esc(schema['info']['title'])} {esc(schema['info']['version'])}</h1>",
             (f"<pre style='white-space:pre-wrap'>{esc(schema['info'].get('description', ''))}"
              "</pre><p>Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a></p>"),
             ("<h2>Error codes</h2><table><tr><th>code</th><th>HTTP</th><th>CLI exit</th>"
              "<th>retryable</th><th>next action</th></tr>")]
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
