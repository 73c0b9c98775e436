"""More requests at once than the server has threads for its endpoints."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support import live


def test_more_concurrent_writers_than_endpoint_threads_all_complete(start_server):
    """The threadpool is as big as the connection pool (here 2). On SQLite a writer keeps the
    in-process write lock until its commit, while the other writers wait for the lock in the
    endpoint threads: the commit must not need one of those threads, or every writer waits
    for ever (the client would time out)."""
    srv = start_server(db_pool_size=2)
    tenant = live.make_tenant(srv)
    with tenant.as_key() as client:
        client.timeout = 20

        def create(number: int) -> int:
            return client.post("/api/runs", json={"status": "running",
                                                  "runTitle": f"writer {number}"}).status_code

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(create, range(24)))
        assert statuses == [201] * 24
        listed = client.get("/api/runs", params={"limit": 100}).json()
    assert sum(run["runTitle"].startswith("writer ") for run in listed["data"]) == 24


def test_a_mixed_load_at_60_connections_is_answered_and_every_accepted_write_is_stored(
        start_server):
    """Imports, writes and reads at once from 60 connections for a few seconds (and at least
    three requests each): every request is answered (none hangs, none fails) and every write
    that was accepted is stored."""
    srv = start_server(rate_limit_enabled=False)
    tenant = live.make_tenant(srv)
    report = ('<?xml version="1.0"?><testsuite name="load" tests="20">'
              + "".join(f'<testcase classname="load.Mix" name="t{n}"/>' for n in range(20))
              + "</testsuite>").encode()
    deadline = time.monotonic() + 4
    lock = threading.Lock()
    accepted: list[str] = []
    answers: list[int] = []

    def worker(number: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=30,
                          headers={"X-API-Key": tenant.key}) as client:
            step = 0
            while time.monotonic() < deadline or step < 3:
                kind = (number + step) % 3
                step += 1
                if kind == 0:
                    response = client.post("/api/runs/import", content=report,
                                           params={"runTitle": f"load import {number}"},
                                           headers={"Content-Type": "application/xml"})
                elif kind == 1:
                    response = client.post("/api/runs", json={
                        "status": "running", "runTitle": f"load write {number}"})
                else:
                    response = client.get("/api/runs", params={"limit": 5})
                with lock:
                    answers.append(response.status_code)
                    if response.status_code == 201:
                        accepted.append(response.json()["id"])

    with ThreadPoolExecutor(60) as pool:
        list(pool.map(worker, range(60)))
    assert answers and set(answers) <= {200, 201}, sorted(set(answers))
    with tenant.as_key() as client:
        stored = set()
        offset = 0
        while True:
            page = client.get("/api/runs", params={"limit": 500, "offset": offset}).json()
            stored.update(run["id"] for run in page["data"])
            offset += 500
            if offset >= page["total"]:
                break
    assert set(accepted) <= stored
    assert len(accepted) >= 60 * 2  # two of each worker's first three requests write
