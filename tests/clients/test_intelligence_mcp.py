"""The MCP server's triage tools through a real MCP client session (stdio) against the real
server: runs with failed tests, comparison, a test's detail, steps and history, test cases,
flaky tests, error groups, trends; and quarantine honoured by the verdict of the next import."""

from __future__ import annotations

import asyncio

from tests.clients import reports
from tests.clients.test_mcp import assert_error_result, session

MISSING_RUN = "run_01HZZZZZZZZZZZZZZZZZZZZZZZ"


def test_triage_tools_read_the_project(triage, tmp_path):
    runs = {name: run.id for name, run in triage.runs.items()}

    async def go():
        async with session(triage.env(), tmp_path) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            calls = {
                "runs": ("list_runs", {"branch": "main", "limit": 2}),
                "run": ("get_run", {"run_id": runs["pw"], "max_failures": 3}),
                "compare": ("compare_runs", {"run_id": runs["head"]}),
                "compare_base": ("compare_runs", {"run_id": runs["rerun"],
                                                  "base_run_id": runs["base"]}),
                "no_base": ("compare_runs", {"run_id": runs["base"]}),
                "flaky": ("flaky_tests", {"limit": 3}),
                "errors": ("error_groups", {"since": "2000-01-01T00:00:00Z", "limit": 2}),
                "trends": ("trends", {"group_by": "run", "branch": "main"}),
                "cases_bad": ("error_groups", {"since": "yesterday"}),
                "missing": ("get_run", {"run_id": MISSING_RUN}),
            }
            results = {}
            for name, (tool, args) in calls.items():
                results[name] = await client.call_tool(tool, args)
            failed = results["run"].structured_content["failedTests"]
            head = await client.call_tool("get_run", {"run_id": runs["head"]})
            test_a = head.structured_content["failedTests"][0]
            results["head"] = head
            results["test"] = await client.call_tool("get_test", {"test_id": failed[0]["id"]})
            results["steps"] = await client.call_tool("test_steps",
                                                      {"test_id": failed[0]["id"]})
            results["history"] = await client.call_tool("test_history",
                                                        {"test_id": test_a["id"]})
            results["history_branch"] = await client.call_tool(
                "test_history", {"test_id": test_a["testCaseId"], "branch": "e2e"})
            results["case"] = await client.call_tool("get_test_case",
                                                     {"test_id": test_a["testCaseId"]})
            return tools, results

    tools, r = asyncio.run(go())
    assert {"list_runs", "get_run", "compare_runs", "get_test", "test_history", "test_steps",
            "get_test_case", "flaky_tests", "quarantine", "unquarantine", "error_groups",
            "trends", "import_report", "wait_for_run"} <= set(tools)
    assert tools["quarantine"].input_schema["required"] == ["test_id"]
    assert set(tools["quarantine"].input_schema["properties"]) >= {"reason", "owner",
                                                                   "expires_at"}
    assert tools["get_run"].output_schema is not None
    errors = [name for name, result in r.items() if result.is_error]
    assert sorted(errors) == ["cases_bad", "missing", "no_base"], {n: r[n].content for n in
                                                                  errors}
    assert [x["id"] for x in r["runs"].structured_content["data"]] == [runs["rerun"],
                                                                      runs["head"]]
    run = r["run"].structured_content
    assert run["run"]["verdict"] == "failed" and run["failedTotal"] == 10
    assert len(run["failedTests"]) == 3
    assert all(t["errorMessage"] and t["testCaseId"].startswith("tc_")
               for t in run["failedTests"])
    compare = r["compare"].structured_content
    assert compare["baseRunId"] == runs["base"] and compare["summary"]["newFailures"] == 1
    assert r["compare_base"].structured_content["summary"]["fixed"] == 1
    error = assert_error_result(r["no_base"], "NOT_FOUND")
    assert error["details"]["reason"] == "no_previous_run"
    assert "base_run_id" in error["nextAction"]
    flaky = r["flaky"].structured_content
    assert flaky["summary"]["threshold"] == 0.3 and len(flaky["data"]) == 3
    assert len(r["errors"].structured_content["data"]) == 2
    assert [p["key"] for p in r["trends"].structured_content["points"]] == [
        runs["base"], runs["head"], runs["rerun"]]
    assert_error_result(r["cases_bad"], "VALIDATION_ERROR")
    assert_error_result(r["missing"], "NOT_FOUND")
    assert r["test"].structured_content["error"]["message"]
    assert r["test"].structured_content["variant"] in ("chromium", "firefox")
    assert "data" in r["steps"].structured_content
    history = r["history"].structured_content
    assert [h["runId"] for h in history["data"]] == [runs["rerun"], runs["head"], runs["base"]]
    assert r["history_branch"].structured_content["data"] == []
    case = r["case"].structured_content
    assert case["status"] == "flaky" and case["evidence"][0]["kind"] == "same-commit"
    assert case["failedIn"][0]["runId"] == runs["head"]


def test_quarantine_through_mcp_changes_the_next_verdict(tenant, tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(reports.junit({"test_login": "failed", "test_home": "passed"}))

    async def go():
        env = {"REDLINE_URL": tenant.server.url, "REDLINE_API_KEY": tenant.key}
        async with session(env, tmp_path / "config") as client:
            first = await client.call_tool("import_report", {"path": str(report),
                                                             "branch": "main"})
            run = await client.call_tool("get_run", {"run_id":
                                                     first.structured_content["id"]})
            failed = run.structured_content["failedTests"][0]
            held = await client.call_tool("quarantine", {
                "test_id": failed["id"], "reason": "flaky on CI", "owner": "agent",
                "expires_at": "2099-01-01T00:00:00Z"})
            second = await client.call_tool("import_report", {"path": str(report),
                                                              "branch": "main"})
            waited = await client.call_tool("wait_for_run", {
                "run_id": second.structured_content["id"]})
            released = await client.call_tool("unquarantine", {
                "test_id": failed["testCaseId"], "reason": "fixed"})
            case = await client.call_tool("get_test_case", {"test_id": failed["testCaseId"]})
            third = await client.call_tool("import_report", {"path": str(report)})
            bad = await client.call_tool("quarantine", {"test_id": failed["testCaseId"],
                                                        "expires_at": "2001-01-01"})
            return first, held, waited, released, case, third, bad

    first, held, waited, released, case, third, bad = asyncio.run(go())
    assert first.structured_content["verdict"] == "failed"
    assert first.structured_content["source"] == "mcp"
    body = held.structured_content
    assert (body["isQuarantined"], body["owner"], body["reason"]) == (True, "agent",
                                                                      "flaky on CI")
    assert body["expiresAt"].startswith("2099-01-01")
    run = waited.structured_content
    assert (run["status"], run["verdict"], run["quarantinedFailures"]) == ("failed", "passed",
                                                                           1)
    assert released.structured_content["isQuarantined"] is False
    assert [e["action"] for e in case.structured_content["quarantineHistory"]] == [
        "unquarantine", "quarantine"]
    assert third.structured_content["verdict"] == "failed"
    assert assert_error_result(bad, "VALIDATION_ERROR")["details"]["field"] == "expiresAt"
