"""The whole log of an executed run is kept as the run's artifact (type `log`) when the run
ends, however it ends, under the artifact retention rules; `GET /api/runs/{id}/log` keeps
answering afterwards."""

from __future__ import annotations

import sys
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from redline.server.db import WRITE
from redline.server.executions import service
from redline.server.intelligence.retention import purge_expired
from redline.server.kit.clock import utcnow
from redline.server.tables import artifacts, jobs
from redline.server.worker.registry import handler_for
from tests.api.test_artifacts_support import fetch
from tests.executions.conftest import (
    PYTEST,
    make_plan,
    runner_token,
    trigger,
    wait_for,
    whole_log,
)


def run_keep_log_jobs(server, run_id: str) -> int:
    """Run the `executions.keep_log` jobs queued for the run, as a worker would (the test
    server runs no worker: other tests' jobs stay where they are)."""
    with server.engine.connect() as conn:
        queued = [row for row in conn.execute(select(jobs.c.id, jobs.c.payload).where(
            jobs.c.kind == service.KEEP_LOG, jobs.c.status == "queued")).all()
            if row.payload.get("runId") == run_id]
    context = SimpleNamespace(engine=server.engine, settings=server.app.state.settings)
    for row in queued:
        handler_for(service.KEEP_LOG)(context, row.payload)
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(update(jobs).where(jobs.c.id == row.id).values(status="done"))
    return len(queued)


def kept_log(server, client, run_id: str) -> tuple[dict, str]:
    """The run's `log` artifact and the bytes its signed link serves."""
    assert run_keep_log_jobs(server, run_id) == 1  # queued once, when the run ended
    page = client.get("/api/artifacts", params={"runId": run_id, "type": "log"})
    assert page.status_code == 200, page.text
    assert len(page.json()["data"]) == 1, page.text
    artifact = page.json()["data"][0]
    served = fetch(server, artifact["url"])  # (a signed link: no credentials)
    assert served.status_code == 200, served.text
    return artifact, served.content.decode()


def _assert_kept(server, client, run: dict) -> tuple[dict, str]:
    artifact, text = kept_log(server, client, run["id"])
    assert text == whole_log(client, run["id"])  # the log, whole, byte for byte
    assert text.startswith("[redline] ")
    assert artifact["type"] == "log" and artifact["fileName"] == f"{run['id']}.log"
    assert artifact["testId"] is None and artifact["fileSize"] == len(text.encode())
    assert artifact["mimeType"].startswith("text/plain")
    # the job running again (after a crash) keeps nothing twice
    handler_for(service.KEEP_LOG)(SimpleNamespace(engine=server.engine,
                                                  settings=server.app.state.settings),
                                  {"runId": run["id"]})
    again = client.get("/api/artifacts", params={"runId": run["id"], "type": "log"}).json()
    assert [a["id"] for a in again["data"]] == [artifact["id"]]
    return artifact, text


def test_a_failed_run_s_log_is_kept_and_the_log_endpoint_still_answers(server, tenant,
                                                                        suite_dir,
                                                                        start_runner):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=PYTEST, sandbox="none",
                         source={"path": str(suite_dir)}, reportPaths=["report.xml"])
        start_runner(runner_token(tenant), source_paths=[suite_dir.parent])
        run = wait_for(client, trigger(client, plan["id"])["id"])
        assert run["status"] == "failed"
        artifact, text = _assert_kept(server, client, run)
        assert artifact["testStatus"] == "failed"  # kept as long as failed tests' files
        assert "1 failed, 1 passed" in text
        log = client.get(f"/api/runs/{run['id']}/log").json()
        assert log["complete"] is True and "1 failed, 1 passed" in log["text"]


@pytest.mark.parametrize("ending", ["blocked", "timeout", "cancelled_queued"])
def test_the_log_is_kept_whatever_way_the_run_ends(server, tenant, start_runner, ending):
    with tenant.as_user() as client:
        if ending == "cancelled_queued":
            plan = make_plan(client, tenant.project_id)
            run = trigger(client, plan["id"])
            client.post(f"/api/runs/{run['id']}/cancel")
        else:
            command = ([sys.executable, "-c", "print('no report here')"] if ending == "blocked"
                       else [sys.executable, "-c", "import time; print('slow'); time.sleep(60)"])
            plan = make_plan(client, tenant.project_id, command=command, sandbox="none",
                             timeoutSeconds=1, reportPaths=["report.xml"])
            start_runner(runner_token(tenant))
            run = trigger(client, plan["id"])
        run = wait_for(client, run["id"])
        expected = {"blocked": ("blocked", "no report here"),
                    "timeout": ("failed", "timeout after 1 s"),
                    "cancelled_queued": ("cancelled", "cancelled while queued")}[ending]
        assert run["status"] == expected[0]
        artifact, text = _assert_kept(server, client, run)
        assert expected[1] in text
        assert artifact["testStatus"] == ("failed" if ending == "timeout" else None)


def test_a_run_whose_runner_was_lost_twice_keeps_its_log(server, tenant, monkeypatch):
    # copied out 7 bytes at a time, across the log's chunks (a long log is never held whole)
    monkeypatch.setattr(service, "KEEP_LOG_CHUNK", 7)
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        token = runner_token(tenant)
        for attempt in (1, 2):
            with server.client(Authorization=f"Bearer {token}") as runner:
                job = runner.post("/api/runner/claim", json={"runnerId": f"r{attempt}"}).json()
                runner.post(f"/api/runner/runs/{run['id']}/log", json={
                    "leaseToken": job["leaseToken"], "offset": job["logOffset"],
                    "text": f"attempt {attempt} printed this\n"})
            with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                service.sweep(conn, utcnow() + timedelta(seconds=31))
        run = client.get(f"/api/runs/{run['id']}").json()
        assert run["status"] == "failed" and run["cancelReason"] == "runner_lost"
        _, text = kept_log(server, client, run["id"])
        assert text == whole_log(client, run["id"])
        assert "attempt 1 printed this" in text and "attempt 2 printed this" in text
        assert "the runner was lost again" in text


def test_the_kept_log_follows_the_artifact_retention_rules(server, tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        client.post(f"/api/runs/{run['id']}/cancel")
        artifact, _ = kept_log(server, client, run["id"])
        # a cancelled run's log has no test outcome: it stays as long as the run
        settings = client.patch(f"/api/projects/{tenant.project_id}/settings", json={
            "artifactRetentionDays": {"passed": 1, "failed": 1}})
        assert settings.status_code == 200, settings.text
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(update(artifacts).where(artifacts.c.id == artifact["id"])
                         .values(created_at=utcnow() - timedelta(days=400)))
        purge_expired(server.engine)
        assert client.get(f"/api/artifacts/{artifact['id']}").status_code == 200
        # the run itself past its retention: its log goes with it
        client.patch(f"/api/projects/{tenant.project_id}/settings",
                     json={"dataRetentionDays": 1})
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            service.repo.update_run(conn, run["id"], created_at=utcnow() - timedelta(days=2))
        purge_expired(server.engine)
        assert client.get(f"/api/artifacts/{artifact['id']}").status_code == 404
        assert client.get(f"/api/runs/{run['id']}").status_code == 404


def test_a_log_artifact_cannot_be_uploaded(tenant):
    with tenant.as_key() as ci:
        run = ci.post("/api/runs", json={"status": "passed"}).json()
        refused = ci.post("/api/upload", data={"type": "log", "runId": run["id"]},
                          files={"file": ("x.log", b"fake log")})
        assert refused.status_code == 400
        assert refused.json()["error"]["details"]["field"] == "type"
