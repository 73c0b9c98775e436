"""What the SDK and CLI tests of executed runs share: a tenant of their own, a real
`redline runner` process serving it, and small Python commands for plans (each writes its
JUnit report, then passes, fails, waits for a signal, or keeps printing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.executions.conftest import runner_token
from tests.support import live

REDLINE = Path(sys.executable).with_name("redline")

PASSED_REPORT = ('<testsuite name="s" tests="1"><testcase classname="c" name="ok" '
                 'time="0.1"/></testsuite>')
FAILED_REPORT = ('<testsuite name="s" tests="2" failures="1"><testcase classname="c" '
                 'name="ok" time="0.1"/><testcase classname="c" name="broken" time="0.1">'
                 '<failure message="1 != 2">assert 1 == 2</failure></testcase></testsuite>')


def python(code: str) -> list[str]:
    """A plan command: this Python code, run by the interpreter of the tests."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def writes(report: str) -> str:
    return f"import pathlib; pathlib.Path('report.xml').write_text({report!r})\n"


PASSES = python(writes(PASSED_REPORT) + "print('all good', flush=True)\n")
FAILS = python(writes(FAILED_REPORT) + "print('one broken', flush=True)\nraise SystemExit(1)\n")
NO_REPORT = python("print('forgot the report')\n")
#: prints `ready`, then sleeps until stopped; exits 3 on SIGINT
WAITS_FOR_INT = python(writes(PASSED_REPORT) + textwrap.dedent("""
    import signal, sys, time
    def on_int(*_):
        print('got INT', flush=True)
        sys.exit(3)
    signal.signal(signal.SIGINT, on_int)
    print('ready', flush=True)
    time.sleep(600)
"""))
#: three lines a second apart, then passes
STREAMS = python(writes(PASSED_REPORT) + textwrap.dedent("""
    import time
    for n in (1, 2, 3):
        print(f'line {n}', flush=True)
        time.sleep(1)
"""))


@pytest.fixture
def exec_tenant(server) -> live.Tenant:
    """A tenant of its own: its runner serves only its runs, its budget is its own."""
    return live.make_tenant(server)


@pytest.fixture
def runner_process(server, exec_tenant):
    """A real `redline runner` process serving the tenant's team, stopped after the test."""
    token = runner_token(exec_tenant)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
    command = [str(REDLINE)] if REDLINE.exists() else [sys.executable, "-m",
                                                       "redline.cli.main"]
    child = subprocess.Popen([*command, "runner", "--url", server.url, "--token", token,
                              "--poll-interval", "0.1", "--log-level", "WARNING"], env=env)
    yield child
    # a test that failed half-way may have left a run going: cancel it so that its command
    # does not outlive the test (the runner finishes the run in hand before it stops)
    from redline.sdk import Client

    with Client(server.url, token=exec_tenant.token, from_env=False,
                project_id=exec_tenant.project_id) as client:
        for status in ("queued", "running"):
            for run in client.runs.iter(status=status):
                client.runs.cancel(run.id)
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def make_plan(tenant: live.Tenant, command: list[str], **fields) -> dict:
    with tenant.as_user() as client:
        response = client.post("/api/plans", json={
            "projectId": tenant.project_id, "name": "suite", "command": command,
            "reportPaths": ["report.xml"], **fields})
        assert response.status_code == 201, response.text
        return response.json()
