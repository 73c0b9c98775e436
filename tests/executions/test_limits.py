"""Per-plan resource limits (CPU seconds, memory, open files, output bytes): validated against
the server's maxima, sent to the runner with the job, applied with setrlimit in the command's
processes (real processes: a CPU loop and a memory hog are stopped and the run says why;
output past the cap is cut), and a team's usage counting a lost attempt's runner time."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest

from redline.runner import process
from redline.server.db import WRITE
from redline.server.executions import service
from redline.server.kit.clock import utcnow
from tests.executions.conftest import make_plan, runner_token, trigger, wait_for, whole_log

SANDBOXES = ["none", "bubblewrap"] if process.bubblewrap_available() else ["none"]
JUNIT = ("open('report.xml', 'w').write('<testsuite name=\"s\" tests=\"1\">"
         "<testcase classname=\"c\" name=\"t\" time=\"0.1\"/></testsuite>')\n")


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_limits_are_validated_against_the_server_s_maxima_and_bump_the_code_version(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        assert plan["limits"] == {"cpuSeconds": None, "memoryMb": None, "openFiles": None,
                                  "outputBytes": None}  # null: the server's defaults
        too_much = client.post("/api/plans", json={
            "projectId": tenant.project_id, "name": "x", "command": ["true"],
            "limits": {"memoryMb": 10**6}})
        assert too_much.status_code == 400
        error = too_much.json()["error"]
        assert error["details"]["field"] == "limits.memoryMb"
        assert "REDLINE_RUN_MAX_MEMORY_MB" in error["message"]
        for bad in ({"cpuSeconds": 0}, {"openFiles": 3}, {"outputBytes": 10},
                    {"memoryMb": "lots"}):
            response = client.patch(f"/api/plans/{plan['id']}", json={"limits": bad})
            assert response.status_code == 400, (bad, response.text)
        changed = client.patch(f"/api/plans/{plan['id']}", json={
            "limits": {"cpuSeconds": 30, "memoryMb": 512}}, headers={"If-Match": "1"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["codeVersion"] == 2
        assert changed.json()["limits"] == {"cpuSeconds": 30, "memoryMb": 512,
                                            "openFiles": None, "outputBytes": None}


def test_the_job_carries_the_plan_s_limits_and_the_defaults(server, tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, timeoutSeconds=100,
                         limits={"openFiles": 256})
        trigger(client, plan["id"])
    with server.client(Authorization=f"Bearer {runner_token(tenant)}") as runner:
        job = runner.post("/api/runner/claim", json={"runnerId": "r"}).json()
    assert job["limits"] == {"cpuSeconds": 160, "memoryMb": 8192, "openFiles": 256,
                             "outputBytes": 64 * 1024 * 1024}


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_the_limits_reach_the_command_s_processes(tenant, start_runner, sandbox):
    code = ("import resource\n"
            "for name in ('RLIMIT_CPU', 'RLIMIT_AS', 'RLIMIT_NOFILE'):\n"
            "    print(name, *resource.getrlimit(getattr(resource, name)))\n" + JUNIT)
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=python(code), sandbox=sandbox,
                         reportPaths=["report.xml"],
                         limits={"cpuSeconds": 50, "memoryMb": 700, "openFiles": 123})
        start_runner(runner_token(tenant))
        run = wait_for(client, trigger(client, plan["id"])["id"])
        log = whole_log(client, run["id"])
        assert run["status"] == "passed", log
        assert "RLIMIT_CPU 50 55" in log
        assert f"RLIMIT_AS {700 * 2**20} {700 * 2**20}" in log
        assert "RLIMIT_NOFILE 123 123" in log
        assert "limits: CPU 50 s, memory 700 MiB, 123 open files" in log


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_cpu_loop_is_stopped_at_its_cpu_limit_and_the_run_says_why(tenant, start_runner,
                                                                      sandbox):
    code = JUNIT + "print('spinning', flush=True)\nwhile True:\n    pass\n"
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=python(code), sandbox=sandbox,
                         reportPaths=["report.xml"], timeoutSeconds=60,
                         limits={"cpuSeconds": 1})
        start_runner(runner_token(tenant))
        run = wait_for(client, trigger(client, plan["id"])["id"], timeout=60)
        log = whole_log(client, run["id"])
        assert run["status"] == "failed", log
        assert run["cancelReason"] == "cpu_limit"
        assert "stopped by its CPU-time limit (1 s, limits.cpuSeconds)" in log
        assert run["totalTests"] == 1  # what it reported before is kept
        assert "timeout" not in log  # stopped long before its 60 s


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_memory_hog_is_stopped_at_its_memory_limit_and_the_run_says_why(tenant,
                                                                           start_runner,
                                                                           sandbox):
    code = "print('allocating', flush=True)\nhog = bytearray(2 * 1024**3)\nprint('got it')\n"
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=python(code), sandbox=sandbox,
                         reportPaths=["report.xml"], limits={"memoryMb": 300})
        start_runner(runner_token(tenant))
        run = wait_for(client, trigger(client, plan["id"])["id"])
        log = whole_log(client, run["id"])
        assert run["status"] == "failed", log
        assert run["cancelReason"] == "memory_limit"
        assert "MemoryError" in log and "got it" not in log
        assert "stopped by its memory limit (300 MiB, limits.memoryMb)" in log


def test_output_past_the_cap_is_cut_with_a_line_saying_so(tenant, start_runner):
    code = JUNIT + "import sys\nfor i in range(5000):\n    print(f'line {i:05d} ' + 'x' * 40)\n"
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=python(code), sandbox="none",
                         reportPaths=["report.xml"], limits={"outputBytes": 4096})
        start_runner(runner_token(tenant))
        run = wait_for(client, trigger(client, plan["id"])["id"])
        log = whole_log(client, run["id"])
        assert run["status"] == "passed", log  # the cut output is no failure
        assert "line 00000" in log and "line 04999" not in log
        assert "[redline] output cut at 4096 bytes (the plan's limits.outputBytes)" in log
        command_output = "".join(line + "\n" for line in log.splitlines()
                                 if not line.startswith("[redline]"))
        assert len(command_output.encode()) <= 4096 + 1
        assert "the command exited with 0" in log  # Redline's own lines are kept after it


def test_usage_counts_the_runner_time_of_an_attempt_whose_runner_was_lost(server, tenant):
    if utcnow().day == 1 and utcnow().hour == 0:
        pytest.skip("ten minutes ago may be last month")
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        token = runner_token(tenant)
        with server.client(Authorization=f"Bearer {token}") as runner:
            first = runner.post("/api/runner/claim", json={"runnerId": "lost"}).json()
        # the first runner started it ten minutes ago and held it 40 s, then went silent
        began = utcnow() - timedelta(minutes=10)
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            service.repo.update_run(conn, run["id"], started_at=began,
                                    lease_until=began + timedelta(seconds=40))
            assert service.sweep(conn)["retried"] == 1
        again = client.get(f"/api/runs/{run['id']}").json()
        assert again["status"] == "queued" and again["attempt"] == 2
        assert again["startedAt"] is None  # not started again yet
        assert client.get(f"/api/teams/{tenant.team_id}/usage").json()["usedSeconds"] == 40
        with server.client(Authorization=f"Bearer {token}") as runner:
            second = runner.post("/api/runner/claim", json={"runnerId": "next"}).json()
            assert second["attempt"] == 2 and second["leaseToken"] != first["leaseToken"]
            ended = runner.post(f"/api/runner/runs/{run['id']}/finish", json={
                "leaseToken": second["leaseToken"], "outcome": "exited", "exitCode": 0})
            assert ended.status_code == 200, ended.text
        restarted = utcnow() - timedelta(minutes=5)
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            service.repo.update_run(conn, run["id"], started_at=restarted,
                                    finished_at=restarted + timedelta(seconds=20))
        usage = client.get(f"/api/teams/{tenant.team_id}/usage").json()
        assert usage["usedSeconds"] == 60  # 40 s lost + 20 s run
        assert usage["projects"] == [{"projectId": tenant.project_id, "usedSeconds": 60}]


def test_a_command_out_of_file_descriptors_ends_at_its_open_files_limit(tenant, start_runner):
    code = "print('opening', flush=True)\nkept = [open('/dev/null') for _ in range(1000)]\n"
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=python(code), sandbox="none",
                         reportPaths=["report.xml"], limits={"openFiles": 64})
        start_runner(runner_token(tenant))
        run = wait_for(client, trigger(client, plan["id"])["id"])
        log = whole_log(client, run["id"])
        assert run["status"] == "failed", log
        assert run["cancelReason"] == "open_files_limit"
        assert "Too many open files" in log
        assert "stopped by its open-files limit (64, limits.openFiles)" in log
