"""Executed runs through the MCP server (`redline mcp`, driven by the official MCP client over
stdio) against the real server and a real `redline runner` process: an agent lists the plans,
runs one and reads how it ended; a wait that reaches its ceiling says to call get_run; a
trigger that timed out on the transport says to check before triggering again; each failure
is `[CODE] message` + `Next:` with isError."""

from __future__ import annotations

import asyncio
import json
import time

from redline.errors import CATALOG
from tests.clients.executions import (
    FAILS,
    STREAMS,
    WAITS_FOR_INT,
    exec_tenant,
    make_plan,
    runner_process,
)
from tests.clients.peers import FaultProxy
from tests.clients.test_mcp import assert_error_result, session
from tests.web.conftest import import_report

__all__ = ["exec_tenant", "runner_process"]  # fixtures used by the tests below


def agent_key(tenant, scopes=("runs:read", "executions:write")) -> str:
    """A project API key as an agent would be given: reads runs, runs plans."""
    with tenant.as_user() as api:
        response = api.post("/api/api-keys", json={"projectId": tenant.project_id,
                                                   "name": "agent", "scopes": list(scopes)})
        assert response.status_code == 201, response.text
        return response.json()["key"]


def env_for(tenant, key: str | None = None, url: str | None = None, **extra) -> dict:
    return {"REDLINE_URL": url or tenant.server.url, "REDLINE_API_KEY": key or agent_key(tenant),
            **extra}


def data(result) -> dict:
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def until(check, timeout: float = 30):
    """Call `check()` (async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.2)


def test_an_agent_lists_plans_runs_one_and_reads_how_it_ended(exec_tenant, runner_process,
                                                              tmp_path):
    plan = make_plan(exec_tenant, FAILS, name="unit")

    async def go():
        async with session(env_for(exec_tenant), tmp_path) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            plans = data(await client.call_tool("list_plans", {}))
            ran = data(await client.call_tool("run_plan", {"plan_id": plan["id"],
                                                           "branch": "main",
                                                           "wait_seconds": 60}))
            run_id = ran["run"]["id"]
            got = data(await client.call_tool("get_run", {"run_id": run_id}))
            log = data(await client.call_tool("get_run_log", {"run_id": run_id}))
            listed = data(await client.call_tool("list_runs", {"plan_id": plan["id"]}))
            after = data(await client.call_tool("list_plans", {}))
            return tools, plans, ran, got, log, listed, after

    tools, plans, ran, got, log, listed, after = asyncio.run(go())
    assert {"list_plans", "run_plan", "get_run", "get_run_log", "cancel_run"} <= set(tools)
    wait = tools["run_plan"].input_schema["properties"]["wait_seconds"]
    assert wait["maximum"] == 120 and wait["minimum"] == 0
    assert tools["get_run_log"].input_schema["required"] == ["run_id"]

    assert [(p["id"], p["status"]) for p in plans["data"]] == [(plan["id"], "ready")]
    assert ran["finished"] is True
    run = ran["run"]
    assert (run["status"], run["exitCode"], run["source"], run["branch"], run["planId"]) == \
        ("failed", 1, "mcp", "main", plan["id"])
    assert "one broken" in ran["logTail"]
    assert ran["next"] == f'call get_run(run_id="{run["id"]}") for its failed tests'
    assert got["failedTotal"] == 1 and got["failedTests"][0]["fullTitle"].endswith("broken")
    assert got["run"]["exitCode"] == 1 and got["run"]["runnerId"]
    assert "one broken" in log["text"] and log["complete"] is True
    assert log["nextOffset"] == len(log["text"].encode())
    assert [r["id"] for r in listed["data"]] == [run["id"]]
    assert after["data"][0]["status"] == "failed"


def test_a_wait_that_reaches_its_ceiling_says_to_call_get_run(exec_tenant, runner_process,
                                                              tmp_path):
    plan = make_plan(exec_tenant, WAITS_FOR_INT, name="long")

    async def go():
        async with session(env_for(exec_tenant), tmp_path) as client:
            timed_out = await client.call_tool("run_plan", {"plan_id": plan["id"],
                                                            "wait_seconds": 1})
            run_id = timed_out.structured_content["error"]["details"]["runId"]

            async def output_so_far():
                window = data(await client.call_tool("get_run_log", {"run_id": run_id}))
                return window if "ready" in window["text"] else None

            window = await until(output_so_far)
            live = data(await client.call_tool("get_run", {"run_id": run_id}))
            again = await client.call_tool("run_plan", {"plan_id": plan["id"]})
            cancel = data(await client.call_tool("cancel_run", {"run_id": run_id}))

            async def ended():
                run = data(await client.call_tool("get_run", {"run_id": run_id}))["run"]
                return run if run["status"] == "cancelled" else None

            cancelled = await until(ended)
            twice = data(await client.call_tool("cancel_run", {"run_id": run_id}))
            rest = data(await client.call_tool("get_run_log", {
                "run_id": run_id, "offset": window["nextOffset"]}))
            return timed_out, run_id, window, live, again, cancel, cancelled, twice, rest

    timed_out, run_id, window, live, again, cancel, cancelled, twice, rest = asyncio.run(go())
    error = assert_error_result(timed_out, "WAIT_TIMEOUT")
    assert error["message"].startswith(f"Run {run_id} of plan {plan['id']} was still ")
    assert error["message"].endswith("; it goes on")
    assert error["nextAction"].startswith(f'call get_run(run_id="{run_id}") until it ends')
    assert "do not call run_plan again" in error["nextAction"]
    assert window["complete"] is False and "ready" in window["text"]
    assert live["run"]["status"] == "running"
    conflict = assert_error_result(again, "CONFLICT")
    assert conflict["details"]["reason"] == "run_in_flight"
    assert conflict["details"]["runId"] == run_id
    assert conflict["nextAction"] == CATALOG["CONFLICT"].next_action
    assert cancel["id"] == run_id and cancel["cancelRequested"] is True
    assert (cancelled["status"], cancelled["cancelReason"]) == ("cancelled", "cancelled")
    assert twice["status"] == "cancelled"  # idempotent: the finished run, unchanged
    assert rest["complete"] is True and rest["offset"] == window["nextOffset"]


def test_a_trigger_that_timed_out_on_the_transport_says_to_check_before_triggering_again(
        exec_tenant, tmp_path):
    """The trigger reaches the server but its answer comes after the client gave up: the
    result says the run may exist, and list_runs shows it did land (no runner: it waits)."""
    plan = make_plan(exec_tenant, STREAMS, name="slow answer")
    key = agent_key(exec_tenant)
    with FaultProxy(exec_tenant.server.url,
                    path_prefix=f"/api/plans/{plan['id']}/runs") as proxy:
        proxy.faults = [("delay", 3)]
        env = env_for(exec_tenant, key, url=proxy.url, REDLINE_TIMEOUT="1",
                      REDLINE_MAX_RETRIES="0")

        async def go():
            async with session(env, tmp_path) as client:
                timed_out = await client.call_tool("run_plan", {"plan_id": plan["id"]})

                async def landed():
                    listed = data(await client.call_tool("list_runs",
                                                         {"plan_id": plan["id"]}))
                    return listed["data"]

                return timed_out, await until(landed)

        timed_out, runs = asyncio.run(go())
    error = assert_error_result(timed_out, "TIMEOUT")
    assert error["nextAction"] == (
        f'The trigger may have landed: call list_runs(plan_id="{plan["id"]}", limit=1) or '
        "get_run with the run id before calling run_plan again; never trigger twice.")
    assert [(r["status"], r["source"]) for r in runs] == [("queued", "mcp")]
    assert len(proxy.seen) >= 1 and proxy.seen[0].method == "POST"


def test_each_executed_run_failure_is_a_code_and_what_to_do_next(exec_tenant, tmp_path):
    plan = make_plan(exec_tenant, STREAMS, name="unit")
    reported = import_report(exec_tenant)
    plain_key = exec_tenant.key  # the default CI key: no executions:write

    async def go():
        async with session(env_for(exec_tenant, plain_key), tmp_path / "a") as client:
            forbidden = await client.call_tool("run_plan", {"plan_id": plan["id"]})
        async with session(env_for(exec_tenant), tmp_path / "b") as client:
            too_long = await client.call_tool("run_plan", {"plan_id": plan["id"],
                                                           "wait_seconds": 121})
            missing = await client.call_tool("get_run_log", {"run_id": "run_01NOTTHERE"})
            not_executed = await client.call_tool("cancel_run", {"run_id": reported["id"]})
            with exec_tenant.as_user() as api:
                api.patch(f"/api/teams/{exec_tenant.team_id}",
                          json={"executionBudgetSeconds": 0})
            no_credits = await client.call_tool("run_plan", {"plan_id": plan["id"]})
            return forbidden, too_long, missing, not_executed, no_credits

    forbidden, too_long, missing, not_executed, no_credits = asyncio.run(go())
    assert_error_result(forbidden, "AUTH_FORBIDDEN")
    assert "\nrequired: executions:write" in forbidden.content[0].text
    error = assert_error_result(too_long, "VALIDATION_ERROR")
    assert error["details"]["field"] == "wait_seconds"
    assert_error_result(missing, "NOT_FOUND")
    error = assert_error_result(not_executed, "CONFLICT")
    assert error["details"]["reason"] == "not_executed"
    error = assert_error_result(no_credits, "INSUFFICIENT_CREDITS")
    assert error["nextAction"] == CATALOG["INSUFFICIENT_CREDITS"].next_action
    with exec_tenant.as_user() as api:
        runs = api.get("/api/runs", params={"projectId": exec_tenant.project_id,
                                            "planId": plan["id"]}).json()
    assert runs["total"] == 0, json.dumps(runs)  # no refused call stored a run
