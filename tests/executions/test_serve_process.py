"""`redline serve` as a real process runs a plan end to end on its own: its embedded runner
takes the run, and its embedded worker keeps the whole log as the run's `log` artifact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, TEST_DB, missing_service
from tests.support import live

REPO = Path(__file__).resolve().parents[2]
JUNIT = ('<testsuite name="s" tests="1"><testcase classname="c" name="ok" time="0.1"/>'
         '</testsuite>')


@pytest.fixture
def fresh_database_url(tmp_path):
    """A database of its own (first-run setup needs an empty one), of the suite's kind."""
    if TEST_DB == "sqlite":
        yield f"sqlite:///{tmp_path / 'serve.db'}"
        return
    url = live.create_pg_database(PG_ADMIN_URL)
    if url is None:
        missing_service(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    yield url
    live.drop_pg_database(PG_ADMIN_URL, url)


def test_redline_serve_runs_a_plan_and_keeps_its_log_as_an_artifact(tmp_path,
                                                                    fresh_database_url):
    port = live.free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
    environment.update(REDLINE_COOKIE_SECURE="false", REDLINE_RUNNER_ALLOW_UNSANDBOXED="true",
                       REDLINE_DATABASE_URL=fresh_database_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "redline.cli.main", "serve", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, env=environment, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=30) as client:
            setup = client.post("/api/setup", json={"email": "serve@example.com",
                                                    "password": "correct horse battery"})
            assert setup.status_code == 201, setup.text
            project_id = setup.json()["project"]["id"]
            token = client.post("/api/auth/login", json={
                "email": "serve@example.com", "password": "correct horse battery"}).json()
            client.headers["Authorization"] = f"Bearer {token['token']}"
            code = ("print('hello from the plan', flush=True)\n"
                    f"open('report.xml', 'w').write({JUNIT!r})\n")
            plan = client.post("/api/plans", json={
                "projectId": project_id, "name": "end to end", "sandbox": "none",
                "command": [sys.executable, "-c", code], "reportPaths": ["report.xml"]})
            assert plan.status_code == 201, plan.text
            run = client.post(f"/api/plans/{plan.json()['id']}/runs", json={})
            assert run.status_code == 202, run.text
            run_id = run.json()["id"]
            deadline = time.monotonic() + 60
            while True:
                state = client.get(f"/api/runs/{run_id}").json()
                kept = client.get("/api/artifacts", params={"runId": run_id,
                                                            "type": "log"}).json()["data"]
                if state["status"] != "queued" and state["status"] != "running" and kept:
                    break
                assert time.monotonic() < deadline, (state, kept)
                time.sleep(0.2)
            assert state["status"] == "passed", state
            assert state["runnerId"].startswith("embedded:")
            log = client.get(f"/api/runs/{run_id}/log").json()["text"]
            served = httpx.get(kept[0]["url"], timeout=30)
            assert served.status_code == 200
            assert served.text == log and "hello from the plan" in log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
