"""Waiting for a verdict (SDK, CLI), and signals interrupting a wait.

Runs on the real server finish when they are reported; to script a run's successive states
(running, running, passed) and verdicts the server has not sent yet (quarantine), these tests
use a stub HTTP server on loopback. The signal tests wait on a real run that stays running.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from redline.sdk import Client
from redline.sdk import exceptions as errors
from tests.clients.conftest import Cli
from tests.clients.peers import FaultProxy, Reply


def run_body(status: str, **fields) -> dict:
    return {"id": "run_1", "projectId": "proj_1", "status": status, "totalTests": 3,
            "passedTests": 2, "failedTests": 1, "flakyTests": 0, **fields}


def scripted(stub, *bodies):
    """The run's successive states; the last one repeats."""
    states = list(bodies)

    def respond(seen):
        return Reply(200, states.pop(0) if len(states) > 1 else states[0])

    stub.respond = respond


def test_wait_polls_until_the_run_is_finished(stub):
    scripted(stub, run_body("running"), run_body("running"), run_body("passed",
                                                                      failedTests=0))
    polls: list[str] = []
    with Client(stub.url, api_key="rl_live_stub", sleep=lambda s: None,
                from_env=False) as client:
        run = client.runs.wait("run_1", poll=0.01, on_poll=lambda r: polls.append(r.status))
    assert run.status == "passed" and polls == ["running", "running", "passed"]
    assert len(stub.requests_to("/api/runs/run_1")) == 3


def test_wait_raises_run_failed_when_asked(stub):
    scripted(stub, run_body("failed"))
    with Client(stub.url, api_key="rl_live_stub", from_env=False) as client:
        assert client.runs.wait("run_1").status == "failed"  # a verdict, not an error
        with pytest.raises(errors.RunFailedError) as info:
            client.runs.wait("run_1", raise_on_failure=True)
    assert info.value.exit_code == 1 and info.value.run.id == "run_1"


def test_the_verdict_honours_quarantine(stub):
    # failed only because of quarantined tests: the server's verdict says passed
    scripted(stub, run_body("failed", verdict="passed", quarantinedFailures=1))
    with Client(stub.url, api_key="rl_live_stub", from_env=False) as client:
        run = client.runs.wait("run_1", raise_on_failure=True)
    assert run.outcome == "passed"


def test_wait_timeout_names_the_run_to_poll_again(stub):
    scripted(stub, run_body("running"))
    with Client(stub.url, api_key="rl_live_stub", from_env=False) as client, \
            pytest.raises(errors.WaitTimeoutError) as info:
        client.runs.wait("run_1", timeout=0.2, poll=0.05)
    assert info.value.run_id == "run_1" and info.value.exit_code == 7
    assert "redline wait run_1" in info.value.message


@pytest.mark.parametrize("status,exit_code", [("passed", 0), ("failed", 1), ("blocked", 1)])
def test_cli_wait_exits_by_the_verdict(stub, tmp_path, status, exit_code):
    scripted(stub, run_body("running"), run_body(status))
    result = Cli(tmp_path / "c", stub.url)("wait", "run_1", "--poll", "0.1", "-o", "json",
                                           REDLINE_API_KEY="rl_live_stub")
    assert result.code == exit_code, result
    assert result.json["status"] == status and result.stderr == ""


@pytest.mark.parametrize("sig,exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_wait_interrupted_by_a_signal_exits_130_or_143(tenant, tmp_path, sig, exit_code):
    with Client(tenant.server.url, api_key=tenant.key, from_env=False) as ci:
        run_id = ci.runs.create(branch="main").id  # stays running
    with FaultProxy(tenant.server.url) as proxy:  # only to see that the CLI is polling
        proc = Cli(tmp_path / "c", proxy.url).popen("wait", run_id, "--poll", "0.1", "-o",
                                                    "json", REDLINE_API_KEY=tenant.key)
        deadline = time.monotonic() + 20
        while not proxy.requests_to(f"/api/runs/{run_id}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.requests_to(f"/api/runs/{run_id}"), "the CLI never polled"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == exit_code
    assert stdout == ""
    [line] = [line for line in stderr.splitlines() if line.strip()]  # the envelope, alone
    error = json.loads(line)["error"]
    assert error["code"] == "CANCELLED" and error["exitCode"] == exit_code
    assert error["details"]["signal"] == sig.name
