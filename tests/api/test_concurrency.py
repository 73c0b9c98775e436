"""More requests at once than the server has threads for its endpoints."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
