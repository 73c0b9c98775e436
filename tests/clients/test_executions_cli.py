"""`redline plans`, `redline run`, `redline runs cancel|signal|log`, `redline wait` and
`redline usage` as a real CLI process against the real server and a real `redline runner`
process: the exit codes a CI job branches on (0 passed, 1 not passed, 6 CONFLICT and
PRECONDITION_FAILED, 7 WAIT_TIMEOUT, 12 INSUFFICIENT_CREDITS, 130/143 interrupted), Ctrl-C
that detaches, and --cancel-on-interrupt that cancels."""

from __future__ import annotations

import json
import signal
import time

import pytest

from redline.errors import CATALOG, EXIT_SIGINT, EXIT_SIGTERM
from redline.sdk import Client
from tests.clients.conftest import Cli, run_in_terminal
from tests.clients.executions import (
    FAILS,
    PASSES,
    STREAMS,
    WAITS_FOR_INT,
    exec_tenant,
    make_plan,
    runner_process,
)

__all__ = ["exec_tenant", "runner_process"]  # fixtures used by the tests below


class SignedInCli(Cli):
    """The CLI signed in with a personal token, on a default project."""

    def __init__(self, config_dir, url: str, tenant):
        super().__init__(config_dir, url)
        self.signed_in = {"REDLINE_TOKEN": tenant.token, "REDLINE_PROJECT": tenant.project_id}

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{**self.signed_in, **extra})


@pytest.fixture
def cli(server, tmp_path, exec_tenant) -> SignedInCli:
    """The CLI as the tenant's owner (who may run and edit plans)."""
    return SignedInCli(tmp_path / "config", server.url, exec_tenant)


@pytest.fixture
def sdk(exec_tenant):
    with Client(exec_tenant.server.url, token=exec_tenant.token, from_env=False,
                project_id=exec_tenant.project_id) as client:
        yield client


def runs_of(sdk, tenant, plan_id: str) -> list:
    return list(sdk.runs.list(tenant.project_id, plan_id=plan_id))


def wait_until_printed(sdk, run_id: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in sdk.runs.log(run_id).text:
        assert time.monotonic() < deadline, sdk.runs.log(run_id).text
        time.sleep(0.1)


# -- plans ---------------------------------------------------------------------------------

def test_plans_create_list_show_edit_and_delete(cli, exec_tenant):
    created = cli("plans", "create", "unit", "--report", "report.xml", "--env",
                      "MODE=ci", "--secret-env", "TOKEN=s3cr3t", "--timeout", "600", "-o",
                      "json", "--", "python", "-m", "pytest", "-q")
    assert created.code == 0, created.stderr
    plan = created.json
    assert plan["command"] == ["python", "-m", "pytest", "-q"] and plan["codeVersion"] == 1
    assert plan["env"]["TOKEN"] == {"value": None, "secret": True}
    assert "s3cr3t" not in created.stdout
    listed = cli("plans", "list", "-o", "json")
    assert [p["id"] for p in listed.json["data"]] == [plan["id"]]
    shown = cli("plans", "show", plan["id"])
    assert shown.code == 0 and "codeVersion: 1" in shown.stdout

    edited = cli("plans", "edit", plan["id"], "--timeout", "300", "-o", "json",
                     "--", "python", "-m", "pytest", "-x")
    assert edited.code == 0, edited.stderr
    assert edited.json["codeVersion"] == 2 and edited.json["command"][-1] == "-x"
    # an edit made against the version read before someone else's change is refused
    stale = cli("plans", "edit", plan["id"], "--code-version", "1", "--timeout",
                    "60", "-o", "json")
    assert stale.code == 6, stale.stderr
    error = stale.envelope["error"]
    assert error["code"] == "PRECONDITION_FAILED" and error["exitCode"] == 6
    assert (error["details"]["current"], error["details"]["sent"]) == (2, 1)
    assert "again" in error["nextAction"]
    assert cli("plans", "show", plan["id"], "-o", "json").json["timeoutSeconds"] == 300

    refused = cli("plans", "delete", plan["id"], "-o", "json")
    assert refused.code == 2
    assert refused.envelope["error"]["example"].endswith(f"plans delete {plan['id']} "
                                                         "-o json --yes")
    assert cli("plans", "delete", plan["id"], "--yes").code == 0
    assert cli("plans", "show", plan["id"]).code == 4


# -- run: the exit codes a CI job branches on -----------------------------------------------

def test_run_wait_exits_0_when_the_run_passed(cli, exec_tenant, runner_process):
    plan = make_plan(exec_tenant, PASSES)
    result = cli("run", plan["id"], "--branch", "main", "--wait", "--poll", "0.2",
                     "-o", "json")
    assert result.code == 0, result.stderr
    run = result.json
    assert (run["status"], run["exitCode"], run["source"], run["branch"]) == (
        "passed", 0, "cli", "main")


def test_run_wait_exits_1_when_the_command_failed(cli, exec_tenant, runner_process):
    plan = make_plan(exec_tenant, FAILS)
    result = cli("run", plan["id"], "--wait", "--poll", "0.2")
    assert result.code == 1, result.stderr
    assert "status: failed" in result.stdout and "exitCode: 1" in result.stdout
    assert "failed, exit 1, 1 of 2 tests failed" in result.stderr
    run_id = result.stdout.splitlines()[0].removeprefix("id: ")
    shown = cli("runs", "get", run_id)
    assert shown.code == 0 and f"planId: {plan['id']}" in shown.stdout
    assert "exitCode: 1" in shown.stdout and "Failed tests (1)" in shown.stdout


def test_run_follow_prints_the_output_and_inside_github_actions_the_source_says_so(
        cli, sdk, exec_tenant, runner_process):
    plan = make_plan(exec_tenant, STREAMS)
    result = cli("run", plan["id"], "--follow", "--poll", "0.2",
                     GITHUB_ACTIONS="true", GITHUB_REF_NAME="release")
    assert result.code == 0, result.stderr
    out = result.stdout
    assert out.index("line 1") < out.index("line 2") < out.index("line 3")
    assert out.index("line 3") < out.index("status: passed")
    [run] = runs_of(sdk, exec_tenant, plan["id"])
    assert (run.source, run.branch) == ("github_action", "release")


def test_run_without_wait_prints_the_queued_run_and_exits_0(cli, sdk, exec_tenant):
    plan = make_plan(exec_tenant, PASSES)
    result = cli("run", plan["id"], "-o", "json")
    assert result.code == 0 and result.json["status"] == "queued"
    sdk.runs.cancel(result.json["id"])


def test_a_run_already_in_flight_is_conflict_exit_6(cli, sdk, exec_tenant):
    plan = make_plan(exec_tenant, PASSES)  # no runner: the first run stays queued
    first = sdk.plans.trigger(plan["id"])
    result = cli("run", plan["id"], "--wait", "-o", "json")
    assert result.code == 6 and result.stdout == ""
    error = result.envelope["error"]
    assert error["code"] == "CONFLICT" and error["details"]["runId"] == first.id
    assert f"redline wait {first.id}" in error["nextAction"]
    assert f"redline runs cancel {first.id}" in error["nextAction"]
    assert [r.id for r in runs_of(sdk, exec_tenant, plan["id"])] == [first.id]
    listed = cli("runs", "list", "--plan", plan["id"], "--status", "queued", "-o", "json")
    assert [r["id"] for r in listed.json["data"]] == [first.id]
    sdk.runs.cancel(first.id)


def test_a_spent_budget_is_insufficient_credits_exit_12(cli, sdk, exec_tenant):
    plan = make_plan(exec_tenant, PASSES)
    sdk.teams.set_execution_budget(exec_tenant.team_id, 0)
    result = cli("run", plan["id"], "--wait", "-o", "json")
    assert result.code == 12
    assert result.envelope["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert runs_of(sdk, exec_tenant, plan["id"]) == []
    shown = cli("usage", "--team", exec_tenant.team_id, "-o", "json")
    assert (shown.json["budgetSeconds"], shown.json["leftSeconds"]) == (0, 0)


def test_wait_timeout_exits_7_and_redline_wait_resumes_the_same_run(cli, sdk, exec_tenant,
                                                                     runner_process):
    plan = make_plan(exec_tenant, WAITS_FOR_INT)
    result = cli("run", plan["id"], "--wait", "--wait-timeout", "0.5", "--poll",
                     "0.1", "-o", "json")
    assert result.code == CATALOG["WAIT_TIMEOUT"].exit_code == 7
    error = result.envelope["error"]
    run_id = error["details"]["runId"]
    assert error["code"] == "WAIT_TIMEOUT" and f"redline wait {run_id}" in error["message"]
    again = cli("wait", run_id, "--timeout", "0.3", "--poll", "0.1")
    assert again.code == 7  # still going: the same run, never a second one
    assert [r.id for r in runs_of(sdk, exec_tenant, plan["id"])] == [run_id]
    wait_until_printed(sdk, run_id, "ready")
    signalled = cli("runs", "signal", run_id, "int", "-o", "json")
    assert signalled.code == 0 and signalled.json["signal"] == "INT"
    ended = cli("wait", run_id, "--poll", "0.1", "-o", "json")
    assert ended.code == 1 and ended.json["status"] == "failed" and ended.json["exitCode"] == 3
    said = cli("wait", run_id).stderr.strip()
    assert said == f"Run {run_id}: failed, exit 3, 0 of 1 tests failed"
    log = cli("runs", "log", run_id)
    assert log.code == 0 and "got INT" in log.stdout
    late = cli("runs", "signal", run_id, "INT", "-o", "json")
    assert late.code == 6 and late.envelope["error"]["details"]["reason"] == "finished"


def test_runs_cancel_asks_on_a_terminal_and_refuses_without_one(cli, sdk, exec_tenant):
    plan = make_plan(exec_tenant, PASSES)
    run_id = sdk.plans.trigger(plan["id"]).id
    refused = cli("runs", "cancel", run_id, "-o", "json")
    assert refused.code == 2
    error = refused.envelope["error"]
    assert error["code"] == "CONFIRMATION_REQUIRED"
    assert error["example"] == f"redline runs cancel {run_id} -o json --yes"
    assert sdk.runs.get(run_id).status == "queued"
    code, screen = run_in_terminal(cli, "runs", "cancel", run_id, answers="y\n")
    assert code == 0, screen
    assert f"Cancel run {run_id}?" in screen
    assert sdk.runs.get(run_id).status == "cancelled"
    assert cli("wait", run_id).code == 1  # a cancelled run did not pass


# -- interrupted while waiting ----------------------------------------------------------------

def start_waiting(cli: SignedInCli, sdk, plan_id: str, *flags: str) -> tuple:
    """`redline run PLAN --wait` as a process, once its command is running."""
    proc = cli.popen("run", plan_id, "--wait", "--poll", "0.2", *flags)
    deadline = time.monotonic() + 60
    while not (queued := list(sdk.runs.list(plan_id=plan_id))):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    run_id = queued[0].id
    wait_until_printed(sdk, run_id, "ready")
    time.sleep(0.3)  # the CLI is in its wait
    return proc, run_id


@pytest.mark.parametrize("sent,status,flags", [
    (signal.SIGINT, EXIT_SIGINT, ()), (signal.SIGTERM, EXIT_SIGTERM, ()),
    (signal.SIGINT, EXIT_SIGINT, ("--follow",))])
def test_ctrl_c_or_sigterm_detaches_and_the_run_keeps_going(cli, sdk, exec_tenant,
                                                            runner_process, sent, status,
                                                            flags):
    plan = make_plan(exec_tenant, WAITS_FOR_INT)
    proc, run_id = start_waiting(cli, sdk, plan["id"], *flags)
    proc.send_signal(sent)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == status, stderr
    assert "[CANCELLED]" in stderr and f"run {run_id} keeps going" in stderr
    assert f"redline runs cancel {run_id}" in stderr
    time.sleep(1)
    assert sdk.runs.get(run_id).status == "running"
    sdk.runs.cancel(run_id)


def test_cancel_on_interrupt_cancels_the_run(cli, sdk, exec_tenant, runner_process):
    plan = make_plan(exec_tenant, WAITS_FOR_INT)
    proc, run_id = start_waiting(cli, sdk, plan["id"], "--cancel-on-interrupt", "-o", "json")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    error = json.loads(stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "CANCELLED" and error["details"] == {
        "signal": "SIGINT", "runId": run_id, "cancelled": True}
    assert sdk.runs.wait(run_id, timeout=30, poll=0.1).status == "cancelled"


# -- the log and the month's usage ---------------------------------------------------------------

def test_runs_log_follows_and_usage_counts_the_time(cli, sdk, exec_tenant, runner_process):
    plan = make_plan(exec_tenant, STREAMS)
    run_id = sdk.plans.trigger(plan["id"]).id
    followed = cli("runs", "log", run_id, "--follow")
    assert followed.code == 0 and "line 3" in followed.stdout
    assert followed.stdout == sdk.runs.log(run_id).text
    rest = cli("runs", "log", run_id, "--offset", "5", "-o", "json")
    assert rest.json["text"] == followed.stdout[5:]
    sdk.runs.wait(run_id, timeout=30, poll=0.1)
    shown = cli("usage", "--team", exec_tenant.team_id)
    assert shown.code == 0, shown.stderr
    assert "budgetSeconds:" in shown.stdout and exec_tenant.project_id in shown.stdout
    assert sdk.teams.usage(exec_tenant.team_id).used_seconds >= 2
