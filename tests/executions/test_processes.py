"""Executed runs with real processes, run by the real runner over HTTP: a pytest suite, cancel
that leaves no process behind, a signal that reaches the command, a timeout, a command that
writes no report, secrets kept out of what Redline writes, the sandbox hiding the server's
files, and a runner killed with SIGKILL mid-run."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from redline.runner import process
from redline.server.db import WRITE
from redline.server.executions import service
from redline.server.kit.clock import utcnow
from tests.executions.conftest import (
    PYTEST,
    make_plan,
    runner_token,
    trigger,
    wait_for,
    whole_log,
)

JUNIT = ('<testsuite name="s" tests="1"><testcase classname="c" name="{name}" time="0.1"/>'
         '</testsuite>')
SANDBOXES = ["none", "bubblewrap"] if process.bubblewrap_available() else ["none"]


def script(code: str, marker: str) -> list[str]:
    """A Python command whose argv carries `marker` (found in /proc afterwards)."""
    return [sys.executable, "-c", code, marker]


def processes_with(marker: str) -> list[int]:
    """The processes whose command line holds the marker (the whole process table)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def wait_for_log(client, run_id: str, text: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while text not in whole_log(client, run_id):
        assert time.time() < deadline, whole_log(client, run_id)
        time.sleep(0.05)


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_real_pytest_run_ends_failed_with_its_counts(tenant, suite_dir, start_runner,
                                                       sandbox):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=PYTEST, sandbox=sandbox,
                         source={"path": str(suite_dir)}, reportPaths=["report.xml"])
        start_runner(runner_token(tenant), source_paths=[suite_dir.parent])
        run = wait_for(client, trigger(client, plan["id"])["id"])
        assert run["status"] == "failed", whole_log(client, run["id"])
        assert run["exitCode"] == 1
        assert (run["totalTests"], run["passedTests"], run["failedTests"]) == (2, 1, 1)
        assert run["startedAt"] and run["finishedAt"] and run["runnerId"]
        assert client.get(f"/api/runs/{run['id']}").json()["verdict"] == "failed"
        log = client.get(f"/api/runs/{run['id']}/log").json()
        assert log["complete"] is True
        assert "1 failed, 1 passed" in log["text"]
        assert f"sandbox: {sandbox}" in log["text"] if sandbox == "bubblewrap" \
            else "no sandbox" in log["text"]
        assert client.get(f"/api/plans/{plan['id']}").json()["status"] == "failed"


def test_a_source_outside_the_allowed_folders_is_blocked(tenant, suite_dir, start_runner):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=PYTEST,
                         source={"path": str(suite_dir)}, reportPaths=["report.xml"])
        start_runner(runner_token(tenant), source_paths=[])
        run = wait_for(client, trigger(client, plan["id"])["id"])
        assert run["status"] == "blocked" and run["blockedReason"] == "source_unavailable"
        assert "REDLINE_RUNNER_SOURCE_PATHS" in whole_log(client, run["id"])


def test_a_git_source_is_cloned(tenant, suite_dir, start_runner):
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "PATH": os.environ["PATH"], "HOME": str(suite_dir)}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "."],
                 ["git", "commit", "-q", "-m", "suite"]):
        subprocess.run(argv, cwd=suite_dir, env=env, check=True)
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=PYTEST,
                         source={"git": str(suite_dir), "ref": "main"},
                         reportPaths=["report.xml"])
        start_runner(runner_token(tenant), source_paths=[suite_dir])
        run = wait_for(client, trigger(client, plan["id"])["id"])
        assert run["status"] == "failed" and run["totalTests"] == 2
        assert f"cloned {suite_dir} at main" in whole_log(client, run["id"])


def test_a_command_that_writes_no_report_is_blocked(tenant, start_runner):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=[sys.executable, "-c", "print(1)"],
                         reportPaths=["report.xml"])
        start_runner(runner_token(tenant))
        run = wait_for(client, trigger(client, plan["id"])["id"])
        assert run["status"] == "blocked" and run["blockedReason"] == "no_report"
        assert run["exitCode"] == 0
        assert client.get(f"/api/plans/{plan['id']}").json()["status"] == "blocked"


def test_a_command_that_cannot_start_is_blocked(tenant, start_runner):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=["/no/such/command"],
                         sandbox="none")
        start_runner(runner_token(tenant))
        run = wait_for(client, trigger(client, plan["id"])["id"])
        assert run["status"] == "blocked"
        assert run["blockedReason"] == "command_not_started"


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_cancel_mid_run_leaves_no_process_behind(tenant, start_runner, sandbox):
    marker = f"redline-marker-{secrets.token_hex(6)}"
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', "
            "sys.argv[1]])\n"
            "print('started', flush=True)\n"
            "time.sleep(600)\n")
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=script(code, marker),
                         sandbox=sandbox, reportPaths=["report.xml"])
        start_runner(runner_token(tenant))
        run = trigger(client, plan["id"])
        wait_for_log(client, run["id"], "started")
        assert len(processes_with(marker)) >= 2
        cancelled = client.post(f"/api/runs/{run['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["cancelRequested"] is True
        run = wait_for(client, run["id"])
        assert run["status"] == "cancelled" and run["cancelReason"] == "cancelled"
        assert processes_with(marker) == []
        assert client.post(f"/api/runs/{run['id']}/cancel").json()["status"] == "cancelled"
        assert client.get(f"/api/plans/{plan['id']}").json()["status"] == "ready"


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_signal_reaches_the_command(tenant, start_runner, sandbox):
    code = ("import signal, sys, time\n"
            "def got(signum, frame):\n"
            "    print('got', signal.Signals(signum).name, flush=True)\n"
            "    open('report.xml', 'w').write(" + repr(JUNIT.format(name="signalled")) + ")\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGUSR1, got)\n"
            "print('waiting', flush=True)\n"
            "time.sleep(60)\n")
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=script(code, "signal-test"),
                         sandbox=sandbox, reportPaths=["report.xml"])
        start_runner(runner_token(tenant))
        run = trigger(client, plan["id"])
        wait_for_log(client, run["id"], "waiting")
        deadline = time.time() + 10
        while True:  # the runner says the process started with its next heartbeat
            sent = client.post(f"/api/runs/{run['id']}/signal", json={"signal": "USR1"})
            if sent.status_code == 200 or time.time() > deadline:
                break
            assert sent.json()["error"]["details"]["reason"] == "not_started"
            time.sleep(0.1)
        assert sent.status_code == 200, sent.text
        run = wait_for(client, run["id"])
        assert "got SIGUSR1" in whole_log(client, run["id"])
        assert run["status"] == "passed" and run["exitCode"] == 0
        late = client.post(f"/api/runs/{run['id']}/signal", json={"signal": "INT"})
        assert late.status_code == 409
        assert late.json()["error"]["details"]["reason"] == "finished"


def test_a_timeout_kills_the_command_and_fails_the_run(tenant, start_runner):
    marker = f"redline-timeout-{secrets.token_hex(6)}"
    code = ("import time\n"
            "open('report.xml', 'w').write(" + repr(JUNIT.format(name="partial")) + ")\n"
            "print('sleeping', flush=True)\n"
            "time.sleep(600)\n")
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=script(code, marker),
                         timeoutSeconds=2, reportPaths=["report.xml"])
        start_runner(runner_token(tenant))
        run = wait_for(client, trigger(client, plan["id"])["id"], timeout=30)
        assert run["status"] == "failed" and run["cancelReason"] == "timeout"
        assert run["totalTests"] == 1  # its partial report was imported
        assert processes_with(marker) == []
        assert "timeout after 2 s" in whole_log(client, run["id"])


def test_secret_values_stay_out_of_responses_and_redline_s_log_lines(tenant, start_runner):
    secret = f"secret-{secrets.token_hex(8)}"
    code = ("import os\n"
            "print('length', len(os.environ['API_TOKEN']), flush=True)\n"
            "open('report.xml', 'w').write(" + repr(JUNIT.format(name="ok")) + ")\n")
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=script(code, "secret-test"),
                         env={"API_TOKEN": {"value": secret, "secret": True}},
                         reportPaths=["report.xml"])
        start_runner(runner_token(tenant))
        queued = client.post(f"/api/plans/{plan['id']}/runs", json={})
        run = wait_for(client, queued.json()["id"])
        assert run["status"] == "passed"
        log = whole_log(client, run["id"])
        assert f"length {len(secret)}" in log  # the command had it
        responses = [queued.text, client.get(f"/api/plans/{plan['id']}").text,
                     client.get(f"/api/runs/{run['id']}").text,
                     client.get(f"/api/runs/{run['id']}").text, log]
        assert not any(secret in text for text in responses)


@pytest.mark.skipif(not process.bubblewrap_available(), reason="needs bubblewrap")
def test_the_sandbox_hides_the_server_s_secret_key_and_database(server, tenant,
                                                                start_runner):
    settings = server.app.state.settings
    key_file = Path(settings.data_dir) / "secret_key"
    key_file.write_text("a secret key on disk")
    database = server.engine.url.database or "/nonexistent"  # (PostgreSQL: no file)
    code = ("import sys\n"
            "for path in sys.argv[2:]:\n"
            "    try:\n"
            "        open(path, 'rb').read(1)\n"
            "        print('READABLE', path, flush=True)\n"
            "    except OSError as exc:\n"
            "        print('hidden', path, type(exc).__name__, flush=True)\n"
            "try:\n"
            "    import socket; socket.create_connection(('127.0.0.1', 1), timeout=1)\n"
            "except OSError as exc:\n"
            "    print('network', type(exc).__name__, flush=True)\n")
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id,
                         command=[*script(code, "sandbox-test"), str(key_file), database],
                         sandbox="bubblewrap")
        start_runner(runner_token(tenant), hide_paths=[Path(settings.data_dir)])
        run = wait_for(client, trigger(client, plan["id"])["id"])
        log = whole_log(client, run["id"])
        assert "READABLE" not in log, log
        assert f"hidden {key_file}" in log
        assert "network" in log


def test_sigkill_of_a_runner_mid_run_ends_the_run_properly(start_server, tenant, suite_dir,
                                                           start_runner):
    """The runner process dies with its command; its lease expires; the run is queued again
    and another runner ends it."""
    short = start_server(runner_lease_seconds=2, rate_limit_enabled=False)
    marker = f"redline-killed-{secrets.token_hex(6)}"
    code = ("import sys, time\n"
            "open('report.xml', 'w').write(" + repr(JUNIT.format(name="survivor")) + ")\n"
            "print('running', flush=True)\n"
            "time.sleep(600 if len(sys.argv) > 2 else 0)\n")
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id,
                         command=[*script(code, marker), "slow"], reportPaths=["report.xml"])
        token = runner_token(tenant)
        redline = str(Path(sys.executable).parent / "redline")
        child = subprocess.Popen([redline, "runner", "--url", short.url, "--token", token,
                                  "--poll-interval", "0.1"],
                                 env={**os.environ, "REDLINE_LOG_LEVEL": "WARNING"})
        try:
            run = trigger(client, plan["id"])
            wait_for_log(client, run["id"], "running")
            assert processes_with(marker)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
        deadline = time.time() + 10
        while processes_with(marker):  # the command died with its runner
            assert time.time() < deadline
            time.sleep(0.05)
        assert client.get(f"/api/runs/{run['id']}").json()["status"] == "running"
        time.sleep(2.5)  # the lease (2 s) expires; the worker's sweep sees it
        with short.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            assert service.sweep(conn, utcnow() + timedelta(seconds=0.5))["retried"] >= 1
        again = client.get(f"/api/runs/{run['id']}").json()
        assert again["status"] == "queued" and again["attempt"] == 2
        # the retry runs the same command: make it quick, so another runner ends it
        client.patch(f"/api/plans/{plan['id']}", json={"command": script(code, marker)})
        start_runner(token, url=short.url)
        run = wait_for(client, run["id"])
        assert run["status"] == "passed" and run["attempt"] == 2
        assert "queued again" in whole_log(client, run["id"])


def _embedded(migrated_url, tmp_path, **settings):
    from tests.support import live

    srv = live.LiveServer.start(migrated_url, tmp_path / "embedded", rate_limit_enabled=False,
                                **settings)
    srv.app.state.embedded_runner_url = srv.url  # what `redline serve` does
    return srv.__enter__()


@pytest.mark.skipif(not process.bubblewrap_available(), reason="needs bubblewrap")
def test_the_runner_embedded_in_serve_runs_plans_in_the_sandbox_only(migrated_url, tmp_path,
                                                                     tenant):
    srv = _embedded(migrated_url, tmp_path)
    try:
        code = "open('report.xml', 'w').write(" + repr(JUNIT.format(name="e")) + ")\n"
        with srv.client(Authorization=f"Bearer {tenant.token}") as client:
            plan = make_plan(client, tenant.project_id, command=script(code, "embedded"),
                             reportPaths=["report.xml"], maxConcurrentRuns=2)
            run = wait_for(client, trigger(client, plan["id"])["id"])
            assert run["status"] == "passed" and run["runnerId"].startswith("embedded:")
            client.patch(f"/api/plans/{plan['id']}", json={"sandbox": "none"})
            refused = wait_for(client, trigger(client, plan["id"])["id"])
            assert refused["status"] == "blocked"
            assert refused["blockedReason"] == "sandbox_unavailable"
            assert "REDLINE_RUNNER_ALLOW_UNSANDBOXED" in whole_log(client, refused["id"])
    finally:
        srv.__exit__(None, None, None)


def test_a_secret_env_value_is_in_no_log_line_redline_writes(tenant, tmp_path):
    """The server's own log records (this process) and a `redline runner` process's log at
    DEBUG hold no secret value, nor does the run's log, while the command did get it."""
    import logging

    secret = f"secret-{secrets.token_hex(8)}"
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s %(args)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    code = ("import os\n"
            "print('length', len(os.environ['API_TOKEN']), flush=True)\n"
            "open('report.xml', 'w').write(" + repr(JUNIT.format(name="ok")) + ")\n")
    runner_log = tmp_path / "runner.log"
    try:
        with tenant.as_user() as client:
            plan = make_plan(client, tenant.project_id, command=script(code, "secret-log"),
                             env={"API_TOKEN": {"value": secret, "secret": True}},
                             reportPaths=["report.xml"])
            redline = str(Path(sys.executable).parent / "redline")
            with open(runner_log, "wb") as out:
                child = subprocess.Popen(
                    [redline, "runner", "--url", tenant.server.url, "--token",
                     runner_token(tenant), "--poll-interval", "0.1", "--log-level", "DEBUG"],
                    stdout=out, stderr=subprocess.STDOUT)
                try:
                    run = wait_for(client, trigger(client, plan["id"], env={
                        "EXTRA": {"value": secret, "secret": True}})["id"])
                finally:
                    child.terminate()
                    child.wait(timeout=30)
            log = whole_log(client, run["id"])
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert run["status"] == "passed", log
    assert f"length {len(secret)}" in log  # the command had it
    assert secret not in log
    written = runner_log.read_text(errors="replace")
    assert "runner" in written  # it did log (at DEBUG: every HTTP request too)
    assert secret not in written
    assert records and not any(secret in record for record in records)
