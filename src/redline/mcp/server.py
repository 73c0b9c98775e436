"""Redline's MCP server (`redline mcp`, stdio): tools an agent needs to triage CI.

Each tool is a thin typed wrapper over the SDK: its docstring and parameter descriptions
become the tool's schema, its return model the output schema. A failing tool returns a result
with `isError: true`, the text `[CODE] message` then `Next: ...`, and the error envelope as
structured content, so an agent can branch on the code; protocol errors stay JSON-RPC errors.
"""

# No `from __future__ import annotations` here: MCPServer reads the tools' annotations.

import functools
import logging
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from redline import __version__
from redline.sdk import AsyncClient, models
from redline.sdk.exceptions import RedlineError, ValidationError

log = logging.getLogger("redline.mcp")

INSTRUCTIONS = """\
Redline stores automated test results. Use these tools to triage CI: list_runs and get_run for
what failed, test_history and test_steps for one test, flaky_tests for flakiness, quarantine to
stop a flaky test from failing builds, import_report to send a report file, wait_for_run for a
verdict. A failed call's text starts with [CODE] (AUTH_FORBIDDEN, NOT_FOUND, VALIDATION_ERROR,
RATE_LIMITED, WAIT_TIMEOUT, ...) followed by `Next:` with what to do; after WAIT_TIMEOUT call
wait_for_run again with the same run id, never import again."""

RunStatus = Literal["queued", "running", "passed", "failed", "blocked", "cancelled"]
ProjectId = Annotated[str | None, Field(description="Project id (proj_...); omit to use the "
                                        "project of the API key or the configured default.")]


def error_result(exc: RedlineError) -> CallToolResult:
    """The tool result for a failure: `[CODE] message` + `Next:`, and the envelope."""
    envelope = exc.to_envelope()
    error = envelope["error"]
    text = f"[{error['code']}] {error['message']}\nNext: {error['nextAction']}"
    if error["code"] == "AUTH_FORBIDDEN":
        details = error.get("details") or {}
        text += (f"\nrequired: {', '.join(details.get('required') or [])}"
                 f"\ngranted: {', '.join(details.get('granted') or [])}")
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=envelope, is_error=True)


class RedlineMCPServer(MCPServer):
    """Arguments that fail a tool's input schema are VALIDATION_ERROR results too, in the same
    `[CODE]` form and envelope as the server's, listing each field."""

    async def call_tool(self, name, arguments, context=None):
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if not isinstance(cause, PydanticValidationError):
                raise
            errors = [{"field": ".".join(str(p) for p in err["loc"]) or "arguments",
                       "reason": err["type"], "message": err["msg"]}
                      for err in cause.errors()]
            first = errors[0] if errors else {"field": "arguments", "reason": "invalid",
                                              "message": "invalid arguments"}
            return error_result(ValidationError(
                f"Argument '{first['field']}' of {name}: {first['message']}",
                details={"field": first["field"], "reason": first["reason"],
                         "errors": errors}))


class RunWithFailures(models.Model):
    run: models.Run
    failed_tests: list[models.TestResult] = Field(description="Failed results of the run "
                                                  "(at most `max_failures`).")


class ProjectList(models.Model):
    projects: list[models.Project]


class TeamList(models.Model):
    teams: list[models.Team]


def build_server(make_client) -> MCPServer:
    """The MCP server; `make_client()` returns a configured `AsyncClient`."""
    server = RedlineMCPServer("redline", instructions=INSTRUCTIONS, version=__version__)
    state: dict[str, Any] = {}

    def client() -> AsyncClient:
        if "client" not in state:
            state["client"] = make_client()
        return state["client"]

    def tool(fn):
        """Register `fn` as a tool whose SDK errors become `[CODE]` error results."""

        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except RedlineError as exc:
                log.info("tool %s failed: %s", fn.__name__, exc)
                return error_result(exc)

        return server.tool()(wrapper)

    @tool
    async def whoami() -> models.Me:
        """Who the configured credentials are: user, API key project, scopes and teams."""
        return await client().me()

    @tool
    async def list_teams() -> TeamList:
        """The teams the credentials can see."""
        page = await client().teams.list(limit=100)
        return TeamList(teams=page.data)

    @tool
    async def list_projects(
        team_id: Annotated[str | None, Field(description="Team id (team_...); omit for every "
                                             "team you belong to.")] = None,
    ) -> ProjectList:
        """Projects, by team. With a project API key: that key's project."""
        sdk = client()
        if team_id:
            return ProjectList(projects=(await sdk.projects.list(team_id, limit=500)).data)
        me = await sdk.me()
        if me.kind == "key" and me.project_id:
            return ProjectList(projects=[await sdk.projects.get(me.project_id)])
        projects: list[models.Project] = []
        for team in me.teams:
            projects += (await sdk.projects.list(team.team_id, limit=500)).data
        return ProjectList(projects=projects)

    @tool
    async def list_runs(
        project_id: ProjectId = None,
        status: Annotated[RunStatus | None, Field(description="Only runs with this status.")]
        = None,
        branch: Annotated[str | None, Field(description="Only runs of this branch.")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="How many, newest first.")] = 20,
    ) -> models.Page[models.Run]:
        """Recent runs of a project with their counts and verdicts, newest first."""
        return await client().runs.list(project_id, status=status, branch=branch, limit=limit)

    @tool
    async def get_run(
        run_id: Annotated[str, Field(description="Run id (run_...).")],
        max_failures: Annotated[int, Field(ge=0, le=200, description="Failed tests to "
                                           "include.")] = 20,
    ) -> RunWithFailures:
        """A run with its counts, verdict and its failed tests (title, file, error)."""
        sdk = client()
        run = await sdk.runs.get(run_id)
        failed: list[models.TestResult] = []
        if max_failures:
            failed = (await sdk.tests.list(run.project_id, run_id=run_id, status="failed",
                                           limit=max_failures)).data
        return RunWithFailures(run=run, failed_tests=failed)

    @tool
    async def test_history(
        test_id: Annotated[str, Field(description="Test result id (test_...) or test case id "
                                      "(tc_...).")],
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> models.Page[models.HistoryEntry]:
        """How a test did in its recent runs (status, branch, commit): regressions and
        flakiness patterns."""
        return await client().tests.history(test_id, limit=limit)

    @tool
    async def test_steps(
        test_id: Annotated[str, Field(description="Test result id (test_...).")],
    ) -> models.Page[models.TestStep]:
        """The steps of one test result (hooks, actions, assertions) with the failing one."""
        return await client().tests.steps(test_id)

    @tool
    async def flaky_tests(
        project_id: ProjectId = None,
        min_score: Annotated[float | None, Field(ge=0, le=1, description="Only scores at or "
                                                 "above (0 stable .. 1 very flaky).")] = None,
        quarantined: Annotated[bool | None, Field(description="Only quarantined (true) or "
                                                  "not quarantined (false).")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> models.FlakinessReport:
        """Flaky tests by score, highest first, with a summary."""
        return await client().flakiness.list(project_id, min_score=min_score,
                                             quarantined=quarantined, limit=limit)

    @tool
    async def quarantine(
        test_id: Annotated[str, Field(description="Test case (tc_...) or one of its results "
                                      "(test_...).")],
        quarantined: Annotated[bool, Field(description="true to quarantine, false to "
                                           "release.")] = True,
        reason: Annotated[str | None, Field(description="Why, for the team.")] = None,
        project_id: ProjectId = None,
    ) -> models.QuarantineResult:
        """Quarantine a flaky test (its failures stop failing verdicts of later runs), or
        release it."""
        sdk = client()
        if quarantined:
            return await sdk.flakiness.quarantine(test_id, project_id, reason=reason)
        return await sdk.flakiness.unquarantine(test_id, project_id)

    @tool
    async def import_report(
        path: Annotated[str, Field(description="Path of a report file on this machine (JUnit "
                                   "XML, Playwright JSON or CTRF JSON).")],
        project_id: ProjectId = None,
        format: Annotated[Literal["auto", "junit", "playwright-json", "ctrf"] | None,
                          Field(description="Omit to detect.")] = None,
        branch: Annotated[str | None, Field(description="Branch tested.")] = None,
        commit_sha: Annotated[str | None, Field(description="Commit tested.")] = None,
    ) -> models.Run:
        """Import a test report as a new run; the result has the run's counts."""
        return await client().runs.import_report(path, project_id, format=format,
                                                 branch=branch, commit_sha=commit_sha,
                                                 source="mcp")

    @tool
    async def wait_for_run(
        run_id: Annotated[str, Field(description="Run id (run_...).")],
        timeout_seconds: Annotated[float, Field(ge=0, le=3600, description="How long to wait; "
                                                "WAIT_TIMEOUT after that (the run goes on).")]
        = 300,
        poll_seconds: Annotated[float, Field(ge=0.1, le=60)] = 2.0,
    ) -> models.Run:
        """Wait until a run is finished and return it (its verdict honours quarantine)."""
        return await client().runs.wait(run_id, timeout=timeout_seconds, poll=poll_seconds)

    @tool
    async def compare_runs(
        base_run_id: Annotated[str, Field(description="The earlier run (run_...).")],
        head_run_id: Annotated[str, Field(description="The later run (run_...).")],
    ) -> models.Record:
        """What changed between two runs: new failures, fixed tests, new flaky tests."""
        return await client().compare(base_run_id, head_run_id)

    @tool
    async def error_groups(
        project_id: ProjectId = None,
        run_id: Annotated[str | None, Field(description="Only this run's failures.")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> models.Page[models.Record]:
        """Failures grouped by their error message, biggest group first."""
        return await client().errors.list(project_id, run_id=run_id, limit=limit)

    return server


def run(url: str | None = None, profile: str | None = None, project: str | None = None) -> None:
    """Serve on stdio until the client disconnects (what `redline mcp` calls)."""
    from redline.cli.profiles import resolve_connection

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    conn = resolve_connection(url=url, profile=profile, project=project)

    def make_client() -> AsyncClient:
        return AsyncClient(conn.url, user_agent=f"redline-mcp/{__version__}",
                           **conn.client_options())

    build_server(make_client).run("stdio")
