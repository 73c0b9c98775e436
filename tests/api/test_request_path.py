"""How a request reaches the database (`unit_of_work.py`): plain FastAPI routes, one unit of
work per request finished by the middleware, no write transaction open while a body is still
arriving, and SQLite's one writer taken in turns that end in 503, never in a hang."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import func, select

from redline.server.app import create_app
from redline.server.config import Settings
from redline.server.deps import Db
from redline.server.tables import runs
from tests.support import live


def test_a_path_the_router_does_not_know_gets_the_catalogs_answers(server):
    with server.client() as client:
        missing = client.get("/api/no-such-thing/here")
        wrong_method = client.put("/api/runs")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "VALIDATION_ERROR"  # the catalog's code
    assert "GET" in wrong_method.headers["allow"]


def test_a_read_sees_every_write_committed_before_it(tenant):
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running", "branch": "main"}).json()
        for total in (3, 5):
            assert client.patch(f"/api/runs/{run['id']}",
                                json={"totalTests": total}).status_code == 200
            assert client.get(f"/api/runs/{run['id']}").json()["totalTests"] == total


def _count_runs(server, title: str) -> int:
    with server.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(runs)
                            .where(runs.c.run_title.like(f"{title}%"))).scalar_one()


def test_a_slow_import_body_holds_up_no_other_write(server, tenant):
    """An import whose body arrives slowly (the rest 3 s after its first 100 bytes) while 10
    other writes come in: they all complete at once, the import when its body is whole. The
    import's write transaction begins only once its body has arrived."""
    report = (b'<?xml version="1.0"?><testsuite name="slow" tests="1">'
              b'<testcase classname="slow.Body" name="arrives late"/></testsuite>')
    head = (f"POST /api/runs/import?branch=slow HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-API-Key: {tenant.key}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(report)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + report[:100])
        time.sleep(0.2)  # the server has authenticated it and waits for the rest

        def create(number: int) -> tuple[int, float]:
            started = time.monotonic()
            with tenant.as_key() as client:
                client.timeout = 10
                status = client.post("/api/runs", json={"status": "running",
                                                        "runTitle": f"beside {number}"})
            return status.status_code, time.monotonic() - started

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(create, range(10)))
        assert [status for status, _ in answers] == [201] * 10
        assert max(took for _, took in answers) < 2.5  # none waited for the slow body
        time.sleep(max(0.0, 3 - max(took for _, took in answers)))
        sock.sendall(report[100:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert _count_runs(server, "beside ") == 10


def _held_writes_app(url, tmp_path, **settings):
    """An app with a probe write that keeps its transaction open for a while."""
    app = create_app(Settings(database_url=url, data_dir=tmp_path, secret_key="test-secret-key",
                              cookie_secure=False, rate_limit_enabled=False, **settings))
    router = APIRouter()

    @router.post("/api/probe/hold")
    def hold(db: Db, seconds: float = 1.0):
        db.execute(select(1))
        time.sleep(seconds)
        return {"held": seconds}

    app.include_router(router)
    return app


def test_a_write_that_gets_no_turn_in_time_answers_503_with_retry_after(migrated_url,
                                                                        tmp_path):
    """SQLite takes one writer at a time: a write that waits longer than
    `write_wait_seconds` for its turn answers UNAVAILABLE (retryable) instead of hanging.
    PostgreSQL has no such turns: both writes run at once."""
    app = _held_writes_app(migrated_url, tmp_path, write_wait_seconds=0.3)
    sqlite = app.state.engine.dialect.name == "sqlite"
    with live.LiveServer(app, live.free_port()) as srv, \
            httpx.Client(base_url=srv.url, timeout=10) as client:
        holder = threading.Thread(target=client.post, args=("/api/probe/hold",),
                                  kwargs={"params": {"seconds": 3.0}})
        holder.start()
        time.sleep(0.3)
        started = time.monotonic()
        second = client.post("/api/probe/hold", params={"seconds": 0})
        waited = time.monotonic() - started
        holder.join()
        after = client.post("/api/probe/hold", params={"seconds": 0})
    app.state.engine.dispose()
    if sqlite:
        assert second.status_code == 503
        error = second.json()["error"]
        assert error["code"] == "UNAVAILABLE" and error["retryable"] is True
        assert error["details"]["reason"] == "write_wait"
        assert second.headers["retry-after"] == "2"
        assert waited < 2.0  # it gave up after its 0.3 s, not when the holder finished
    else:
        assert second.status_code == 200
    assert after.status_code == 200  # the turn was given back


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_connection_is_given_back_when_the_request_ends(migrated_url, tmp_path, method):
    """A read gives its connection back when its response starts, a write after its commit;
    a failed one too: after many requests the pool holds no connection checked out."""
    app = _held_writes_app(migrated_url, tmp_path)
    router = APIRouter()

    @router.get("/api/probe/read")
    def read(db: Db, fail: bool = False):
        db.execute(select(1))
        if fail:
            raise RuntimeError("a bug")
        return {}

    app.include_router(router)
    path, params = (("/api/probe/read", {}) if method == "get"
                    else ("/api/probe/hold", {"seconds": 0}))
    with live.LiveServer(app, live.free_port()) as srv, \
            httpx.Client(base_url=srv.url, timeout=10) as client:
        for _ in range(30):
            assert getattr(client, method)(path, params=params).status_code == 200
        if method == "get":
            assert client.get(path, params={"fail": True}).status_code == 500
        time.sleep(0.2)
        checked_out = app.state.engine.pool.checkedout()
    app.state.engine.dispose()
    assert checked_out == 0
