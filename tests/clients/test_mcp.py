"""The MCP server (`redline mcp`) driven by a real MCP client session over stdio."""

from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager
from pathlib import Path

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from redline.errors import CATALOG, SERVER_CODES
from tests.clients.conftest import REDLINE
from tests.clients.peers import error_reply
from tests.clients.scenarios import build

# The codes a tool reaches for real on this version's endpoints (the others: the stub test).
REAL_CODES = ["AUTH_REQUIRED", "AUTH_INVALID", "NOT_FOUND", "VALIDATION_ERROR", "INTERNAL",
              "UNAVAILABLE", "NETWORK_ERROR", "WAIT_TIMEOUT"]


@asynccontextmanager
async def session(env: dict[str, str], config_dir: Path):
    command = [str(REDLINE), "mcp"] if REDLINE.exists() else [sys.executable, "-m",
                                                              "redline.cli.main", "mcp"]
    params = StdioServerParameters(command=command[0], args=command[1:],
                                   env={**env, "REDLINE_CONFIG_DIR": str(config_dir)})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


def call(env, config_dir, *calls):
    """Run tool calls in one session; returns their results."""

    async def go():
        async with session(env, config_dir) as client:
            return [await client.call_tool(name, args) for name, args in calls]

    return asyncio.run(go())


def assert_error_result(result, code: str):
    assert result.is_error, result
    text = result.content[0].text
    message, _, rest = text.partition("\n")
    assert message.startswith(f"[{code}] "), text
    next_line = rest.splitlines()[0]
    assert next_line.startswith("Next: ")
    error = result.structured_content["error"]
    assert error["code"] == code
    assert message == f"[{code}] {error['message']}"
    assert next_line == f"Next: {error['nextAction']}"
    return error


def test_a_failing_tool_returns_code_text_and_the_envelope(request, tmp_path):
    """One session per scenario (each has its own server or credentials), run together."""
    scenarios = [build(code, request) for code in REAL_CODES]

    async def one(index, scenario):
        async with session(scenario.env(), tmp_path / str(index)) as client:
            return await client.call_tool(*scenario.mcp)

    async def go():
        return await asyncio.gather(*(one(i, s) for i, s in enumerate(scenarios)))

    results = asyncio.run(go())
    for code, result in zip(REAL_CODES, results, strict=True):
        error = assert_error_result(result, code)
        if code in SERVER_CODES:
            assert error["requestId"].startswith("req_"), code
            assert error["nextAction"] == CATALOG[code].next_action, code


def test_every_server_code_and_an_unknown_one_through_a_stub(stub, tmp_path):
    codes = [*SERVER_CODES, "SHINY_NEW"]

    def respond(seen):
        if seen.path.startswith("/api/me"):
            code = respond.codes.pop(0)
            if code == "SHINY_NEW":
                return error_reply(code, status=422)
            details = {"required": ["project:admin"], "granted": ["runs:read"]} \
                if code == "AUTH_FORBIDDEN" else None
            return error_reply(code, details=details)
        raise AssertionError(seen.path)

    respond.codes = list(codes)
    stub.respond = respond
    env = {"REDLINE_URL": stub.url, "REDLINE_API_KEY": "rl_live_stub",
           "REDLINE_MAX_RETRIES": "0"}
    results = call(env, tmp_path, *[("whoami", {}) for _ in codes])
    for code, result in zip(codes, results, strict=True):
        assert_error_result(result, code)
    forbidden = results[codes.index("AUTH_FORBIDDEN")].content[0].text
    assert "\nrequired: project:admin" in forbidden and "\ngranted: runs:read" in forbidden


def test_tools_answer_with_typed_results(tenant, tmp_path):
    async def go():
        env = {"REDLINE_URL": tenant.server.url, "REDLINE_API_KEY": tenant.key}
        async with session(env, tmp_path) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            me = await client.call_tool("whoami", {})
            projects = await client.call_tool("list_projects", {})
            return tools, me, projects

    tools, me, projects = asyncio.run(go())
    assert {"whoami", "list_projects", "list_runs", "get_run", "test_history", "flaky_tests",
            "quarantine", "import_report", "wait_for_run"} <= set(tools)
    assert tools["list_runs"].input_schema["properties"]["limit"]["maximum"] == 100
    assert "run_id" in tools["wait_for_run"].input_schema["required"]
    assert not me.is_error
    assert me.structured_content["projectId"] == tenant.project_id
    assert me.structured_content["kind"] == "key"
    assert [p["id"] for p in projects.structured_content["projects"]] == [tenant.project_id]


def test_arguments_that_fail_the_schema_are_a_validation_error(tenant, tmp_path):
    env = {"REDLINE_URL": tenant.server.url, "REDLINE_API_KEY": tenant.key}
    [result] = call(env, tmp_path, ("list_runs", {"limit": 1000}))
    error = assert_error_result(result, "VALIDATION_ERROR")
    assert error["details"]["field"] == "limit"
    assert result.content[0].text.startswith("[VALIDATION_ERROR] Argument 'limit' of list_runs")


def test_a_personal_token_lists_the_projects_of_every_team(tenant, tmp_path):
    env = {"REDLINE_URL": tenant.server.url, "REDLINE_TOKEN": tenant.token}
    [teams, projects] = call(env, tmp_path, ("list_teams", {}), ("list_projects", {}))
    assert [t["id"] for t in teams.structured_content["teams"]] == [tenant.team_id]
    assert [p["id"] for p in projects.structured_content["projects"]] == [tenant.project_id]
