"""Retention: runs older than `dataRetentionDays` go, in batches, with their results."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from redline.server.intelligence.retention import RetentionLoop, purge_expired
from redline.server.kit.clock import utcnow
from redline.server.kit.ids import new_id
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


def test_deleting_runs_projects_and_expired_data_queues_blob_deletions(server, tenant):
    """Artifacts' files go through the outbox, in the transaction that removes their rows."""
    from sqlalchemy import insert

    from redline.server.tables import artifacts, jobs

    def add_artifact(run_id, key):
        with server.engine.begin() as conn:
            conn.execute(insert(artifacts).values(
                id=new_id("artifact"), project_id=tenant.project_id, run_id=run_id,
                type="screenshot", file_name="s.png", storage_key=key, file_size=1,
                mime_type="image/png", sha256="0" * 64, created_at=utcnow()))

    def queued_keys():
        with server.engine.connect() as conn:
            return {job.payload["storageKey"] for job in conn.execute(
                select(jobs).where(jobs.c.kind == "artifacts.delete_blob"))}

    with tenant.as_key() as client:
        run_ids = [client.post("/api/runs", json={"status": "running"}).json()["id"]
                   for _ in range(2)]
    add_artifact(run_ids[0], f"{tenant.project_id}/a")
    add_artifact(run_ids[1], f"{tenant.project_id}/b")
    with tenant.as_user() as owner:
        assert owner.delete(f"/api/runs/{run_ids[0]}").status_code == 200
        assert f"{tenant.project_id}/a" in queued_keys()
        assert owner.delete(f"/api/projects/{tenant.project_id}").status_code == 200
    assert f"{tenant.project_id}/b" in queued_keys()


def test_artifacts_of_passed_tests_can_be_kept_for_fewer_days(server, tenant):
    from sqlalchemy import insert

    from redline.server.tables import artifacts

    with tenant.as_user() as owner:
        settings = owner.patch(f"/api/projects/{tenant.project_id}/settings", json={
            "artifactRetentionDays": {"passed": 7, "failed": 30}}).json()
    assert settings["artifactRetentionDays"] == {"passed": 7, "failed": 30, "flaky": None,
                                                 "skipped": None}
    with tenant.as_key() as client:
        run_id = client.post("/api/runs", json={"status": "running"}).json()["id"]
    old = utcnow() - timedelta(days=10)
    with server.engine.begin() as conn:
        for outcome in ("passed", "failed"):
            conn.execute(insert(artifacts).values(
                id=new_id("artifact"), project_id=tenant.project_id, run_id=run_id,
                type="screenshot", file_name="s.png", storage_key=f"k/{outcome}/{run_id}",
                file_size=1, mime_type="image/png", sha256="0" * 64, test_status=outcome,
                created_at=old))
    purge_expired(server.engine)
    with server.engine.connect() as conn:
        left = conn.execute(select(artifacts.c.test_status).where(
            artifacts.c.run_id == run_id)).scalars().all()
    assert left == ["failed"]  # 10 days old: past 7 for a pass, within 30 for a failure
