"""The SDK's handle on an executed run (`client.plans.command`), like Go's `exec.Cmd`, against
the real server and a real `redline runner` process: start, wait, run, signal, cancel, the log
as it arrives, and each error (CommandExitError, RunFailedError, WaitTimeoutError,
NotStartedError, AlreadyStartedError, ConnectionClosedError, CONFLICT, PRECONDITION_FAILED,
INSUFFICIENT_CREDITS); then the same handle on the AsyncClient."""

from __future__ import annotations

import asyncio
import time

import pytest

from redline.sdk import AsyncClient, Client
from redline.sdk.exceptions import (
    AlreadyStartedError,
    CommandExitError,
    ConflictError,
    ConnectionClosedError,
    InsufficientCreditsError,
    NotStartedError,
    PreconditionFailedError,
    RunFailedError,
    WaitTimeoutError,
)
from tests.clients.executions import (
    FAILS,
    NO_REPORT,
    PASSES,
    STREAMS,
    WAITS_FOR_INT,
    exec_tenant,
    make_plan,
    runner_process,
)
from tests.clients.peers import FaultProxy

__all__ = ["exec_tenant", "runner_process"]  # fixtures used by the tests below


@pytest.fixture
def client(exec_tenant):
    with Client(exec_tenant.server.url, token=exec_tenant.token, from_env=False) as sdk:
        yield sdk


def until_output(cmd, text: str) -> str:
    """Read the live log until `text` shows up (the command is then surely running)."""
    seen = ""
    for chunk in cmd.log():
        seen += chunk
        if text in seen:
            return seen
    raise AssertionError(f"the run ended without printing {text!r}: {seen}")


# -- the way it should go --------------------------------------------------------------------

def test_run_starts_waits_and_answers_the_passed_run(client, exec_tenant, runner_process):
    plan = make_plan(exec_tenant, PASSES)
    cmd = client.plans.command(plan["id"], branch="main")
    assert (cmd.run_id, cmd.exit_code, cmd.status) == (None, None, None)
    run = cmd.run(timeout=60, poll=0.1)
    assert run.status == "passed" and run.exit_code == 0 and cmd.exit_code == 0
    assert run.id == cmd.run_id and run.plan_id == plan["id"] and run.branch == "main"
    assert run.source == "api" and run.runner_id and run.started_at and run.finished_at
    assert "all good" in "".join(cmd.log())


def test_start_then_wait_and_the_log_arrives_while_the_run_is_live(client, exec_tenant,
                                                                   runner_process):
    cmd = client.plans.command(make_plan(exec_tenant, STREAMS)["id"])
    queued = cmd.start()
    assert queued.status == "queued" and queued.queued_at and cmd.run_id == queued.id
    chunks = []
    for chunk in cmd.log(poll=0.1):
        if not chunks:  # the first line came while the command still had two to print
            assert client.runs.get(cmd.run_id).status == "running"
        chunks.append(chunk)
    text = "".join(chunks)
    assert text.index("line 1") < text.index("line 2") < text.index("line 3")
    assert cmd.wait(timeout=30, poll=0.1).status == "passed"


def test_a_command_that_exits_non_zero_is_a_command_exit_error(client, exec_tenant,
                                                               runner_process):
    cmd = client.plans.command(make_plan(exec_tenant, FAILS)["id"])
    with pytest.raises(CommandExitError) as info:
        cmd.run(timeout=60, poll=0.1)
    error = info.value
    assert error.exit_code == 1 and cmd.exit_code == 1
    assert error.cli_exit_code == 1 and error.code == "COMMAND_EXIT"
    assert error.run.id == cmd.run_id and error.run.status == "failed"
    assert (error.run.total_tests, error.run.failed_tests) == (2, 1)
    assert isinstance(error, RunFailedError)  # every run that did not pass
    assert "exited with status 1" in str(error)


def test_a_verdict_without_exit_status_raises_only_when_asked(client, exec_tenant,
                                                             runner_process):
    plan = make_plan(exec_tenant, NO_REPORT)
    run = client.plans.command(plan["id"]).run(timeout=60, poll=0.1)
    assert run.status == "blocked" and run.blocked_reason == "no_report"
    with pytest.raises(RunFailedError) as info:
        client.plans.command(plan["id"]).run(timeout=60, poll=0.1, raise_on_failure=True)
    assert type(info.value) is RunFailedError and info.value.status == "blocked"
    assert "no_report" in str(info.value) and info.value.exit_code == 1


# -- signals, cancel, the wait's ceiling ------------------------------------------------------

def test_a_signal_reaches_the_command(client, exec_tenant, runner_process):
    cmd = client.plans.command(make_plan(exec_tenant, WAITS_FOR_INT)["id"])
    cmd.start()
    until_output(cmd, "ready")
    sent = cmd.signal("INT")
    assert (sent.run_id, sent.signal) == (cmd.run_id, "INT")
    with pytest.raises(CommandExitError) as info:
        cmd.wait(timeout=30, poll=0.1)
    assert info.value.exit_code == 3
    assert "got INT" in "".join(cmd.log())
    with pytest.raises(ConflictError) as late:  # like Go's "Signal after process finished"
        cmd.signal("INT")
    assert late.value.details["reason"] == "finished"


def test_cancel_stops_the_run_and_wait_sees_it_cancelled(client, exec_tenant, runner_process):
    cmd = client.plans.command(make_plan(exec_tenant, WAITS_FOR_INT)["id"])
    cmd.start()
    until_output(cmd, "ready")
    assert cmd.cancel().id == cmd.run_id
    run = cmd.wait(timeout=30, poll=0.1)
    assert run.status == "cancelled" and cmd.status == "cancelled"
    with pytest.raises(RunFailedError) as info:
        cmd.wait(timeout=30, poll=0.1, raise_on_failure=True)
    assert info.value.status == "cancelled"
    assert cmd.cancel().status == "cancelled"  # idempotent


def test_wait_timeout_leaves_the_run_going_and_the_same_id_is_polled_again(
        client, exec_tenant, runner_process):
    cmd = client.plans.command(make_plan(exec_tenant, WAITS_FOR_INT)["id"])
    cmd.start()
    with pytest.raises(WaitTimeoutError) as info:
        cmd.wait(timeout=0.5, poll=0.1)
    error = info.value
    assert error.run_id == cmd.run_id and error.exit_code == 7
    assert f"redline wait {cmd.run_id}" in error.message
    assert error.last_status in ("queued", "running")
    seen = until_output(cmd, "ready")  # it goes on
    with pytest.raises(WaitTimeoutError):  # waiting again re-polls the same run
        cmd.wait(timeout=0.3, poll=0.1)
    with pytest.raises(WaitTimeoutError) as quiet:  # following a quiet log has its ceiling
        list(cmd.log(poll=0.1, timeout=0.5))
    assert quiet.value.details["offset"] == len(seen.encode())
    assert f"--offset {len(seen.encode())}" in quiet.value.message
    assert [r.id for r in client.runs.list(exec_tenant.project_id,
                                           plan_id=cmd.plan_id)] == [cmd.run_id]
    cmd.cancel()
    assert cmd.wait(timeout=30, poll=0.1).status == "cancelled"


# -- a handle used out of order ----------------------------------------------------------------

def test_a_handle_must_be_started_first_and_only_once(client, exec_tenant, runner_process):
    cmd = client.plans.command(make_plan(exec_tenant, PASSES)["id"])
    for use in (cmd.wait, lambda: cmd.signal("INT"), cmd.cancel, cmd.log):
        with pytest.raises(NotStartedError) as info:
            use()
        assert info.value.code == "NOT_STARTED" and "start()" in info.value.message
    cmd.start()
    with pytest.raises(AlreadyStartedError) as again:
        cmd.start()
    assert again.value.run_id == cmd.run_id and again.value.exit_code == 6
    cmd.wait(timeout=60, poll=0.1)
    with pytest.raises(AlreadyStartedError):  # not even after it finished: make a new one
        cmd.run()


def test_start_again_after_a_lost_answer_replays_instead_of_queueing_twice(
        client, exec_tenant):
    cmd = client.plans.command(make_plan(exec_tenant, PASSES)["id"])
    first = cmd.start()
    cmd.state = None  # as if the answer had been lost: start() sends the same key again
    assert cmd.start().id == first.id
    assert len(client.runs.list(exec_tenant.project_id, plan_id=cmd.plan_id).data) == 1
    cmd.cancel()


# -- the API errors, provoked for real ------------------------------------------------------

def test_a_second_run_while_one_is_in_flight_is_conflict(client, exec_tenant):
    plan = make_plan(exec_tenant, WAITS_FOR_INT)  # maxConcurrentRuns: 1; no runner: queued
    first = client.plans.command(plan["id"])
    first.start()
    second = client.plans.command(plan["id"])
    with pytest.raises(ConflictError) as info:
        second.start()
    assert info.value.details["reason"] == "run_in_flight"
    assert info.value.details["runId"] == first.run_id and info.value.exit_code == 6
    assert second.run_id is None  # not started: it may be started once the first ends
    first.cancel()
    assert second.start().status == "queued"
    second.cancel()


def test_plans_crud_and_a_stale_code_version_is_precondition_failed(client, exec_tenant):
    plan = client.plans.create("unit", ["python", "-m", "pytest"], exec_tenant.project_id,
                               report_paths=["report.xml"], env={"MODE": "ci"})
    assert plan.code_version == 1 and plan.status == "ready" and plan.env["MODE"].value == "ci"
    assert [p.id for p in client.plans.list(exec_tenant.project_id)] == [plan.id]
    edited = client.plans.update(plan.id, command=["pytest", "-x"],
                                 if_match=plan.code_version)
    assert edited.code_version == 2 and edited.command == ["pytest", "-x"]
    with pytest.raises(PreconditionFailedError) as info:  # made against version 1
        client.plans.update(plan.id, timeout_seconds=60, if_match=plan.code_version)
    assert info.value.details["current"] == 2 and info.value.details["sent"] == 1
    assert info.value.exit_code == 6 and "again" in info.value.next_action
    assert client.plans.get(plan.id).timeout_seconds != 60
    assert client.plans.delete(plan.id).success
    assert client.plans.list(exec_tenant.project_id).data == []


def test_a_spent_budget_is_insufficient_credits(client, exec_tenant):
    plan = make_plan(exec_tenant, PASSES)
    client.teams.set_execution_budget(exec_tenant.team_id, 0)
    usage = client.teams.usage(exec_tenant.team_id)
    assert (usage.budget_seconds, usage.left_seconds) == (0, 0)
    cmd = client.plans.command(plan["id"])
    with pytest.raises(InsufficientCreditsError) as info:
        cmd.start()
    assert info.value.exit_code == 12 and cmd.run_id is None
    client.teams.set_execution_budget(exec_tenant.team_id, None)
    assert client.teams.usage(exec_tenant.team_id).budget_seconds is None
    assert cmd.start().status == "queued"
    cmd.cancel()


# -- the log over a connection that drops ---------------------------------------------------

def test_the_log_resumes_from_its_offset_after_a_dropped_connection(exec_tenant,
                                                                    runner_process):
    url = exec_tenant.server.url
    with Client(url, token=exec_tenant.token, from_env=False) as direct:
        cmd = direct.plans.command(make_plan(exec_tenant, STREAMS)["id"])
        cmd.start()
        until_output(cmd, "line 1")
        with FaultProxy(url, path_prefix=f"/api/runs/{cmd.run_id}/log") as proxy, \
                Client(proxy.url, token=exec_tenant.token, from_env=False,
                       sleep=lambda _: None) as flaky:
            proxy.faults = [None, "drop", None, "drop"]  # every other read dropped
            text = "".join(flaky.runs.follow_log(cmd.run_id, poll=0.1))
        whole = direct.runs.log(cmd.run_id).text
        assert text == whole  # every byte once, in order, though two reads were lost
        assert whole.count("line 2") == 1 and "line 3" in whole
        # a read answered too late is read again from the same offset
        with FaultProxy(url, path_prefix=f"/api/runs/{cmd.run_id}/log") as proxy, \
                Client(proxy.url, token=exec_tenant.token, from_env=False, timeout=0.5,
                       sleep=lambda _: None) as slow:
            proxy.faults = [("delay", 1.5), ("delay", 1.5)]
            assert "".join(slow.runs.follow_log(cmd.run_id)) == whole
            assert len(proxy.seen) == 3


def test_a_log_stream_that_stays_down_is_connection_closed_with_its_offset(exec_tenant,
                                                                          runner_process):
    url = exec_tenant.server.url
    with Client(url, token=exec_tenant.token, from_env=False) as direct:
        cmd = direct.plans.command(make_plan(exec_tenant, WAITS_FOR_INT)["id"])
        cmd.start()
        seen = until_output(cmd, "ready")
        with FaultProxy(url, path_prefix=f"/api/runs/{cmd.run_id}/log") as proxy, \
                Client(proxy.url, token=exec_tenant.token, from_env=False,
                       max_retries=0) as flaky:
            proxy.faults = [None, *["drop"] * 5]
            received = ""
            with pytest.raises(ConnectionClosedError) as info:
                for chunk in flaky.runs.follow_log(cmd.run_id, poll=0.1):
                    received += chunk
        error = info.value
        assert error.run_id == cmd.run_id and error.offset == len(received.encode())
        assert error.code == "CONNECTION_CLOSED" and error.exit_code == 10
        assert received.startswith(seen[:len(received)]) and "ready" in received
        # resuming from the offset it gave reads on from there
        rest = direct.runs.log(cmd.run_id, offset=error.offset).text
        assert received + rest == direct.runs.log(cmd.run_id).text
        cmd.cancel()


# -- the AsyncClient ------------------------------------------------------------------------

def test_async_handle_runs_and_cancelling_the_task_leaves_the_run_going(exec_tenant,
                                                                       runner_process):
    plan = make_plan(exec_tenant, WAITS_FOR_INT)

    async def scenario():
        async with AsyncClient(exec_tenant.server.url, token=exec_tenant.token,
                               from_env=False) as aclient:
            cmd = aclient.plans.command(plan["id"])
            await cmd.start()
            async for chunk in cmd.log(poll=0.1):
                if "ready" in chunk:
                    break
            waiting = asyncio.create_task(cmd.wait(poll=0.1))
            await asyncio.sleep(0.3)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert (await aclient.runs.get(cmd.run_id)).status == "running"  # detached

            # asked to: cancelling the task cancels the run too
            waiting = asyncio.create_task(cmd.wait(poll=0.1, cancel_on_interrupt=True))
            await asyncio.sleep(0.3)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            run = await cmd.wait(timeout=30, poll=0.1)
            assert run.status == "cancelled"

            done = aclient.plans.command(plan["id"])
            await done.start()
            text = ""
            async for chunk in done.log(poll=0.1):
                text += chunk
                if "ready" in text:
                    break
            await done.signal("INT")
            with pytest.raises(CommandExitError) as info:
                await done.wait(timeout=30, poll=0.1)
            assert info.value.exit_code == 3 and done.exit_code == 3

    asyncio.run(scenario())


def test_async_handle_errors_out_of_order(exec_tenant):
    plan = make_plan(exec_tenant, PASSES)

    async def scenario():
        async with AsyncClient(exec_tenant.server.url, token=exec_tenant.token,
                               from_env=False) as aclient:
            cmd = aclient.plans.command(plan["id"])
            with pytest.raises(NotStartedError):
                await cmd.wait()
            with pytest.raises(NotStartedError):
                cmd.log()
            assert (await cmd.start()).status == "queued"
            with pytest.raises(AlreadyStartedError):
                await cmd.start()
            started = time.monotonic()
            with pytest.raises(WaitTimeoutError):  # no runner here: it stays queued
                await cmd.wait(timeout=0.3, poll=0.1)
            assert time.monotonic() - started < 5
            await cmd.cancel()

    asyncio.run(scenario())


def test_the_handle_reads_models_on_a_raw_client_too(exec_tenant):
    plan = make_plan(exec_tenant, PASSES)
    with Client(exec_tenant.server.url, token=exec_tenant.token, from_env=False,
                raw=True) as raw:
        assert isinstance(raw.plans.get(plan["id"]), dict)  # the client's methods: JSON
        cmd = raw.plans.command(plan["id"])
        assert cmd.start().status == "queued" and cmd.run_id.startswith("run_")
        assert cmd.log_window().complete is False
        assert cmd.cancel().status == "cancelled" and cmd.status == "cancelled"
        assert cmd.wait(timeout=10, poll=0.1).status == "cancelled"
