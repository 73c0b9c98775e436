"""Fixtures of executed runs: plans on a tenant's project, runner tokens, and runners (the
real `redline.runner.Runner`, in a thread of the test process or as a `redline runner`
process) that reach the live server over HTTP."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from redline.runner.agent import Runner, RunnerConfig
from redline.runner.client import RunnerClient

TERMINAL = ("passed", "failed", "blocked", "cancelled")
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=report.xml"]

SAMPLE_SUITE = '''
def test_passes():
    assert 1 + 1 == 2


def test_fails():
    assert 1 + 1 == 3
'''


@pytest.fixture
def suite_dir(tmp_path) -> Path:
    """A small pytest suite (one pass, one fail) in a folder runners may copy."""
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "test_sample.py").write_text(textwrap.dedent(SAMPLE_SUITE))
    return folder


def make_plan(client, project_id: str, **fields) -> dict:
    body = {"projectId": project_id, "name": "suite", "command": ["true"], **fields}
    response = client.post("/api/plans", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def trigger(client, plan_id: str, **body) -> dict:
    response = client.post(f"/api/plans/{plan_id}/runs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def wait_for(client, run_id: str, statuses=TERMINAL, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while True:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        if time.time() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s")
        time.sleep(0.1)


def whole_log(client, run_id: str) -> str:
    return client.get(f"/api/runs/{run_id}/log", params={"limit": 1024 * 1024}).json()["text"]


def runner_token(tenant, project_id: str | None = None) -> str:
    with tenant.as_user() as client:
        response = client.post("/api/runner-tokens", json={
            "teamId": tenant.team_id, "name": "test runner", "projectId": project_id})
        assert response.status_code == 201, response.text
        return response.json()["token"]


@pytest.fixture
def start_runner(server):
    """Start runner threads (the real runner, over HTTP); stopped after the test."""
    started: list[Runner] = []

    def start(token: str, url: str | None = None, **config) -> Runner:
        values = {"poll_interval": 0.1, "heartbeat_interval": 0.2, **config}
        runner = Runner(RunnerClient(url or server.url, token), RunnerConfig(**values),
                        name=f"test-runner-{len(started)}").start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop(timeout=30)
        runner.client.close()
