"""How a request reaches its endpoint: the route index, the direct binding of simple
endpoints, and SQLite reads on the event loop (the cheap path of a keyed GET, bench/api.py).

Each shortcut must answer exactly what the general path answers."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated

import pytest
from fastapi import Depends, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.routing import Match, Route

from redline.server.app import create_app
from redline.server.config import Settings
from redline.server.deps import Db, DirectRoute, OneThreadRouter, rate_limited, sized_by_run
from redline.server.schemas import Deleted


def _settings(url, tmp_path, **overrides) -> Settings:
    return Settings(database_url=url, data_dir=tmp_path, secret_key="test-secret-key",
                    cookie_secure=False, **overrides)


def _sample_path(route: Route) -> str:
    """A concrete path the route matches: each parameter filled in."""
    path = route.path_format
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", f"x{name}")
    return path


def test_the_route_index_picks_the_route_a_full_scan_picks(migrated_url, tmp_path):
    app = create_app(_settings(migrated_url, tmp_path))
    index = app.router.middleware_stack
    routes = app.router.routes
    checked = 0
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in route.methods or {"GET"}:
            scope = {"type": "http", "method": method, "path": _sample_path(route),
                     "root_path": "", "headers": []}
            by_index = next((r for r in index.candidates(scope["path"])
                             if r.matches(dict(scope))[0] == Match.FULL), None)
            by_scan = next(r for r in routes if r.matches(dict(scope))[0] == Match.FULL)
            # the index may not know a path (it then hands it to the full scan), never
            # pick another route than the scan
            assert by_index in (by_scan, None), (method, scope["path"])
            checked += by_index is by_scan
    assert checked > 60  # nearly every route is found through the index


def test_a_path_the_index_does_not_know_gets_the_routers_own_answers(server):
    with server.client() as client:
        missing = client.get("/api/no-such-thing/here")
        wrong_method = client.put("/api/runs")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "VALIDATION_ERROR"  # the catalog's code
    assert "GET" in wrong_method.headers["allow"]


ProbeReader = Annotated[object, Depends(rate_limited("runs-read"))]


def _probe_app(url, tmp_path, router_class_kwargs: dict):
    app = create_app(_settings(url, tmp_path))
    router = OneThreadRouter(**router_class_kwargs)

    @router.get("/api/probe/{thing_id}", response_model=Deleted, status_code=200)
    def probe(thing_id: str, response: Response, db: Db, caller: ProbeReader):
        db.execute(select(1))
        response.headers["X-Probe"] = thing_id
        if thing_id == "created":
            response.status_code = 201
        if thing_id == "broken":
            return {"success": "not a boolean", "message": "x"}  # a server bug: a 500
        return {"success": True, "message": f"{thing_id} by {caller.kind}"}

    app.router.routes.extend(router.routes)
    return app, router


def test_a_directly_bound_endpoint_answers_as_fastapis_handler_does(migrated_url, tmp_path,
                                                                     tenant):
    direct_app, direct = _probe_app(migrated_url, tmp_path, {})
    plain_app, plain = _probe_app(migrated_url, tmp_path, {"route_class": APIRoute})
    assert type(direct.routes[0]) is DirectRoute and type(plain.routes[0]) is APIRoute
    answers = []
    for app in (direct_app, plain_app):
        with TestClient(app, raise_server_exceptions=False) as client:
            client.headers["X-API-Key"] = tenant.key
            seen = []
            for thing in ("plain", "created", "broken"):
                response = client.get(f"/api/probe/{thing}")
                headers = {k: v for k, v in response.headers.items() if k != "x-request-id"}
                body = response.json()
                if "error" in body:
                    body["error"].pop("requestId")
                seen.append((response.status_code, headers, body))
            seen.append(client.get("/api/probe/plain", headers={"X-API-Key": "rl_live_x"})
                        .status_code)
        answers.append(seen)
        app.state.engine.dispose()
    assert answers[0] == answers[1]
    plain_answer, created, broken, unauthenticated = answers[0]
    assert plain_answer[0] == 200 and plain_answer[1]["x-probe"] == "plain"
    assert plain_answer[2] == {"success": True, "message": "plain by key"}
    assert created[0] == 201
    assert broken[0] == 500 and broken[2]["error"]["code"] == "INTERNAL"
    assert unauthenticated == 401


def test_endpoints_with_query_parameters_or_bodies_keep_fastapis_handler(migrated_url,
                                                                          tmp_path):
    app = create_app(_settings(migrated_url, tmp_path))
    by_path = {(route.path, tuple(sorted(route.methods))): route
               for route in app.router.routes if isinstance(route, DirectRoute)}
    from redline.server.deps import _direct_plan

    assert _direct_plan(by_path[("/api/runs/{run_id}", ("GET",))]) is not None
    assert _direct_plan(by_path[("/api/runs", ("GET",))]) is None  # query parameters
    assert _direct_plan(by_path[("/api/runs", ("POST",))]) is None  # a body
    app.state.engine.dispose()


def test_sqlite_reads_run_on_the_event_loop_writes_and_whole_run_reads_in_threads(
        migrated_url, tmp_path):
    app = create_app(_settings(migrated_url, tmp_path))
    router = OneThreadRouter()
    seen: dict[str, tuple[bool, str]] = {}

    def where() -> tuple[bool, str]:
        try:
            asyncio.get_running_loop()
            return True, threading.current_thread().name
        except RuntimeError:
            return False, threading.current_thread().name

    @router.get("/api/where/read")
    def read(db: Db):
        db.execute(select(1))
        seen["read"] = where()
        return {}

    @router.get("/api/where/whole-run")
    @sized_by_run
    def whole_run(db: Db):
        db.execute(select(1))
        seen["whole run"] = where()
        return {}

    @router.post("/api/where/write")
    def write(db: Db):
        db.execute(select(1))
        seen["write"] = where()
        return {}

    app.router.routes.extend(router.routes)
    with TestClient(app) as client:
        assert client.get("/api/where/read").status_code == 200
        assert client.get("/api/where/whole-run").status_code == 200
        assert client.post("/api/where/write").status_code == 200
    sqlite = app.state.engine.dialect.name == "sqlite"
    app.state.engine.dispose()
    assert seen["read"][0] is sqlite  # PostgreSQL reads keep their worker threads
    assert seen["whole run"][0] is False  # its work grows with a run: not on the loop
    assert seen["write"][0] is False


def test_a_read_sees_every_write_committed_before_it(tenant):
    """The event loop's SQLite connection lives for the whole process: it must not keep a
    snapshot from one read to the next."""
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running", "branch": "main"}).json()
        for total in (3, 5):
            assert client.patch(f"/api/runs/{run['id']}",
                                json={"totalTests": total}).status_code == 200
            assert client.get(f"/api/runs/{run['id']}").json()["totalTests"] == total


def test_a_redis_rate_limiter_keeps_reads_off_the_event_loop(migrated_url, tmp_path):
    """Its round trip (up to its timeouts) must not stall every other request."""
    limited = create_app(_settings(migrated_url, tmp_path,
                                   redis_url="redis://127.0.0.1:6379/15"))
    unlimited = create_app(_settings(migrated_url, tmp_path,
                                     redis_url="redis://127.0.0.1:6379/15",
                                     rate_limit_enabled=False))
    sqlite = limited.state.engine.dialect.name == "sqlite"
    assert limited.state.loop_reads is None
    assert (unlimited.state.loop_reads is not None) is sqlite
    for app in (limited, unlimited):
        app.state.engine.dispose()


def test_the_event_loops_connection_is_replaced_after_the_database_went_away(tmp_path):
    """A read that finds the database unreachable invalidates the loop's connection: the next
    read opens a new one (the file may have been restored meanwhile) instead of failing on."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from redline.server.db import SqliteLoopReads, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'loop.db'}")
    reads = SqliteLoopReads(engine)
    reads.open()
    lent: list = []

    def gone():
        raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error"))

    with pytest.raises(OperationalError):
        reads.run(lent.append, gone)
    reads.run(lent.append, lambda: lent[-1].execute(select(1)).scalar())
    assert lent[0] is not lent[1] and lent[0].invalidated
    assert reads.run(lent.append, lambda: lent[-1].execute(select(1)).scalar()) == 1
    assert lent[2] is lent[1]  # kept while it works
    reads.close()
    engine.dispose()


def test_reads_in_threads_take_at_most_read_threads_at_once(migrated_url, tmp_path):
    """Where reads run in threads (PostgreSQL; here forced by a Redis rate limiter, which keeps
    SQLite reads off the loop too), no more than `READ_THREADS` run at once: past a few, more
    threads only hand the GIL around. Writes are not held to it."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from redline.server.deps import READ_THREADS
    from tests.support import live

    app = create_app(_settings(migrated_url, tmp_path, redis_url="redis://127.0.0.1:6379/15",
                               rate_limit_enabled=True))
    assert app.state.loop_reads is None
    router = OneThreadRouter()
    running, most = [0], [0]
    lock = threading.Lock()

    def occupy(db) -> dict:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.15)
        with lock:
            running[0] -= 1
        return {}

    @router.get("/api/busy/read")
    def busy_read(db: Db):
        return occupy(db)

    @router.post("/api/busy/write")
    def busy_write(db: Db):
        return occupy(db)

    app.router.routes.extend(router.routes)
    with live.LiveServer(app, live.free_port()) as server, server.client() as client, \
            ThreadPoolExecutor(max_workers=3 * READ_THREADS) as pool:
        answers = list(pool.map(lambda _: client.get("/api/busy/read").status_code,
                                range(3 * READ_THREADS)))
        assert answers == [200] * (3 * READ_THREADS)
        assert most[0] == READ_THREADS
        most[0] = 0
        answers = list(pool.map(lambda _: client.post("/api/busy/write").status_code,
                                range(3 * READ_THREADS)))
        assert answers == [200] * (3 * READ_THREADS)
        assert most[0] > READ_THREADS
