"""Retention: runs older than `dataRetentionDays` go, in batches, with their results."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from redline.server.intelligence.retention import RetentionLoop, purge_expired
from redline.server.kit.clock import utcnow
from redline.server.tables import runs, test_results


def test_old_runs_are_deleted_in_batches_and_recent_ones_kept(server, tenant):
    with tenant.as_user() as owner:
        owner.patch(f"/api/projects/{tenant.project_id}/settings",
                    json={"dataRetentionDays": 30})
    with tenant.as_key() as client:
        ids = []
        for _ in range(5):
            run = client.post("/api/runs", json={"status": "running"}).json()
            client.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": [
                {"title": "t", "fullTitle": "t", "status": "passed", "duration": 1}]})
            client.patch(f"/api/runs/{run['id']}", json={"status": "passed"})
            ids.append(run["id"])
    with server.engine.begin() as conn:  # three of them are 31 days old
        conn.execute(update(runs).where(runs.c.id.in_(ids[:3])).values(
            created_at=utcnow() - timedelta(days=31)))
    assert purge_expired(server.engine, batch=2) >= 3
    with server.engine.connect() as conn:
        left = set(conn.execute(select(runs.c.id).where(runs.c.id.in_(ids))).scalars())
        results = conn.execute(select(func.count()).select_from(test_results).where(
            test_results.c.run_id.in_(ids[:3]))).scalar_one()
    assert left == set(ids[3:]) and results == 0


def test_the_embedded_worker_runs_retention(server):
    loop = RetentionLoop(server.engine, interval=0.05).start()
    loop.stop()
    assert not loop._thread.is_alive()
