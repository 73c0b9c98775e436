"""Redline's MCP server (`redline mcp`, stdio): tools an agent needs to triage CI.

Each tool is a thin typed wrapper over the SDK: its docstring and parameter descriptions
become the tool's schema, its return model the output schema. A failing tool returns a result
with `isError: true`, the text `[CODE] message` then `Next: ...`, and the error envelope as
structured content, so an agent can branch on the code; protocol errors stay JSON-RPC errors.
"""

# No `from __future__ import annotations` here: MCPServer reads the tools' annotations.

import functools
import logging
import time
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from redline import __version__
from redline.sdk import AsyncClient, models
from redline.sdk.exceptions import (
    CommandExitError,
    InternalServerError,
    NotFoundError,
    RedlineError,
    ValidationError,
    WaitTimeoutError,
)
from redline.sdk.exceptions import TimeoutError as TransportTimeoutError
from redline.sdk.settings import resolve_connection

log = logging.getLogger("redline.mcp")

INSTRUCTIONS = """\
Redline stores automated test results. To triage CI: list_runs, then get_run for a run's
verdict and failed tests; compare_runs for what is new since the branch's previous run;
get_test, test_steps and test_history for one test; get_test_case for why a test counts as
flaky (evidence, quarantine history); flaky_tests and error_groups across the project; trends
over time. quarantine stops a flaky test from failing builds (with a reason, an owner and an
expiry), unquarantine ends it. import_report sends a report file; wait_for_run waits for a
verdict. A run's `verdict` (not its status) is what CI gates on: failures of quarantined tests
do not count. A failed call's text starts with [CODE] (AUTH_FORBIDDEN, NOT_FOUND,
VALIDATION_ERROR, RATE_LIMITED, WAIT_TIMEOUT, ...) followed by `Next:` with what to do; after
WAIT_TIMEOUT call wait_for_run again with the same run id, never import again.

Executed runs: list_plans shows how a project's suites are run; run_plan starts one (it waits
up to wait_seconds, at most 120, for the end); get_run follows it (status queued, running,
then passed, failed, blocked or cancelled; exit_code, blocked_reason, cancel_reason);
get_run_log reads its output from an offset (pass next_offset back); cancel_run stops it.
A run_plan that answered [WAIT_TIMEOUT] or [TIMEOUT] may have started the run: check
get_run or list_runs(plan_id=...) before calling run_plan again, never trigger twice."""

RunStatus = Literal["queued", "running", "passed", "failed", "blocked", "cancelled"]
ProjectId = Annotated[str | None, Field(description="Project id (proj_...); omit to use the "
                                        "project of the API key or the configured default.")]
TestId = Annotated[str, Field(description="A test result (test_...) or a test case (tc_...).")]
#: characters of an error message (and of a stack, output) a tool returns at most
MESSAGE_CHARS = 2000
OUTPUT_CHARS = 8000
#: a run_plan waits at most this long (a tool call should answer within a couple of minutes)
MAX_WAIT_SECONDS = 120
#: the end of an executed run's log that run_plan returns with a finished run
LOG_TAIL_CHARS = 4000


def error_result(exc: RedlineError, next_action: str | None = None) -> CallToolResult:
    """The tool result for a failure: `[CODE] message` + `Next:`, and the envelope.
    `next_action` replaces the catalog's when the tool knows the exact next call."""
    envelope = exc.to_envelope()
    error = envelope["error"]
    if next_action:
        error["nextAction"] = next_action
    text = f"[{error['code']}] {error['message']}\nNext: {error['nextAction']}"
    if error["code"] == "AUTH_FORBIDDEN":
        details = error.get("details") or {}
        text += (f"\nrequired: {', '.join(details.get('required') or [])}"
                 f"\ngranted: {', '.join(details.get('granted') or [])}")
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=envelope, is_error=True)


def failure_for(exc: BaseException, tool: str) -> RedlineError:
    """The catalog error for anything a tool raised that is not already one: a path that is
    missing or a folder, a bad value, and last an unexpected fault (INTERNAL, no traceback in
    the result: it goes to the server's log)."""
    if isinstance(exc, RedlineError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ValidationError(f"No file at {exc.filename}",
                               details={"field": "path", "reason": "not_found"},
                               next_action="Pass the path of a report file that exists on "
                               "the machine the MCP server runs on.")
    if isinstance(exc, IsADirectoryError):
        return ValidationError(f"{exc.filename} is a folder, not a report file",
                               details={"field": "path", "reason": "is_a_directory"},
                               next_action="Pass the path of one report file (JUnit XML, "
                               "Playwright JSON or CTRF JSON) in that folder.")
    if isinstance(exc, PermissionError):
        return ValidationError(f"Cannot read {exc.filename}: permission denied",
                               details={"field": "path", "reason": "unreadable"},
                               next_action="Pass a file the MCP server's user can read.")
    if isinstance(exc, OSError):
        return ValidationError(f"Cannot read {exc.filename or 'the file'}: "
                               f"{exc.strerror or exc}",
                               details={"field": "path", "reason": "unreadable"})
    if isinstance(exc, (ValueError, TypeError)):
        return ValidationError(f"Bad argument to {tool}: {exc}",
                               details={"field": "arguments", "reason": "invalid"})
    return InternalServerError(f"Unexpected error in the MCP tool {tool}: "
                               f"{type(exc).__name__}: {exc}", details={"tool": tool},
                               retryable=False,
                               next_action="Report this with the tool call that caused it.")


class KnownNext(Exception):
    """A failure whose next call the tool knows exactly: its result says that instead of the
    catalog's generic next action."""

    def __init__(self, error: RedlineError, next_action: str):
        super().__init__(str(error))
        self.error = error
        self.next_action = next_action


class RedlineMCPServer(MCPServer):
    """Arguments that fail a tool's input schema are VALIDATION_ERROR results too, in the same
    `[CODE]` form and envelope as the server's, listing each field."""

    async def call_tool(self, name, arguments, context=None):
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if cause is None:
                raise  # e.g. an unknown tool: a protocol error
            if not isinstance(cause, PydanticValidationError):
                log.info("tool %s failed", name, exc_info=cause)
                return error_result(failure_for(cause, name))
            errors = [{"field": ".".join(str(p) for p in err["loc"]) or "arguments",
                       "reason": err["type"], "message": err["msg"]}
                      for err in cause.errors()]
            first = errors[0] if errors else {"field": "arguments", "reason": "invalid",
                                              "message": "invalid arguments"}
            return error_result(ValidationError(
                f"Argument '{first['field']}' of {name}: {first['message']}",
                details={"field": first["field"], "reason": first["reason"],
                         "errors": errors}))


class FailedTest(models.Model):
    """A failed result, concisely: enough to triage, with ids to dig further."""

    id: str = Field(description="The result (test_...): for get_test, test_steps")
    test_case_id: str | None = Field(None, description="The case (tc_...): for "
                                     "get_test_case, quarantine")
    full_title: str | None = None
    file_path: str | None = None
    variant: str | None = None
    duration: int | None = None
    error_type: str | None = None
    error_message: str | None = Field(None, description="The error, cut to 2,000 characters")
    location: dict[str, Any] | None = None


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"… [{len(text) - limit} more characters]"


def failed_test(result: models.TestResult) -> FailedTest:
    error = result.error
    return FailedTest(id=result.id, test_case_id=result.test_case_id,
                      full_title=result.full_title, file_path=result.file_path,
                      variant=result.variant, duration=result.duration,
                      error_type=error.type if error else None,
                      error_message=_cut(error.message, MESSAGE_CHARS) if error else None,
                      location=error.location if error else None)


class RunWithFailures(models.Model):
    run: models.Run
    failed_total: int = Field(description="How many results of the run failed (quarantined "
                              "ones included: see run.quarantinedFailures)")
    failed_tests: list[FailedTest] = Field(description="Failed results of the run (at most "
                                           "`max_failures`).")


class PlanRun(models.Model):
    """A run of a plan, as `run_plan` left it."""

    run: models.Run
    finished: bool = Field(description="The run has ended (passed, failed, blocked or "
                           "cancelled).")
    log_tail: str | None = Field(None, description="The end of its output (at most 4,000 "
                                 "characters) when it has ended.")
    next: str = Field(description="What to call next.")


class ProjectList(models.Model):
    projects: list[models.Project]


class TeamList(models.Model):
    teams: list[models.Team]


def build_server(make_client) -> MCPServer:
    """The MCP server; `make_client()` returns a configured `AsyncClient`."""
    server = RedlineMCPServer("redline", instructions=INSTRUCTIONS, version=__version__)
    state: dict[str, Any] = {}

    def client() -> Any:
        # An AsyncClient. Typed Any: the SDK's resources are annotated with what the sync
        # client returns, and on an AsyncClient each of them returns an awaitable of it.
        if "client" not in state:
            state["client"] = make_client()
        return state["client"]

    def tool(fn):
        """Register `fn` as a tool whose SDK errors become `[CODE]` error results."""

        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except KnownNext as known:
                log.info("tool %s failed: %s", fn.__name__, known.error)
                return error_result(known.error, known.next_action)
            except RedlineError as exc:
                log.info("tool %s failed: %s", fn.__name__, exc)
                return error_result(exc)
            except Exception as exc:  # every failure is a [CODE] result, never a traceback
                log.info("tool %s failed", fn.__name__, exc_info=exc)
                return error_result(failure_for(exc, fn.__name__))

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
        cursor: Annotated[str | None, Field(description="nextCursor of the previous page.")]
        = None,
        plan_id: Annotated[str | None, Field(description="Only the runs of this plan "
                                             "(plan_...).")] = None,
    ) -> models.Page[models.Run]:
        """Recent runs of a project with their counts and verdicts, newest first (executed
        runs also with plan_id, exit_code and their reasons)."""
        return await client().runs.list(project_id, status=status, branch=branch, limit=limit,
                                        cursor=cursor, plan_id=plan_id)

    @tool
    async def get_run(
        run_id: Annotated[str, Field(description="Run id (run_...).")],
        max_failures: Annotated[int, Field(ge=0, le=200, description="Failed tests to "
                                           "include.")] = 20,
    ) -> RunWithFailures:
        """A run with its counts and verdict, and its failed tests (title, file, error). An
        executed run (plan_id set) also says its status (queued, running, passed, failed,
        blocked, cancelled), exit_code, blocked_reason or cancel_reason, runner_id and times;
        get_run_log reads its output."""
        sdk = client()
        run = await sdk.runs.get(run_id)
        failed: list[FailedTest] = []
        total = run.failed_tests or 0
        if max_failures and total:
            page = await sdk.tests.list(run.project_id, run_id=run_id, status="failed",
                                        limit=max_failures)
            failed, total = [failed_test(t) for t in page.data], page.total or total
        return RunWithFailures(run=run, failed_total=total, failed_tests=failed)

    @tool
    async def compare_runs(
        run_id: Annotated[str, Field(description="The run to look at (run_...).")],
        base_run_id: Annotated[str | None, Field(description="The run to compare with; omit "
                                                 "for the previous finished run of the same "
                                                 "branch, else (a new branch) the default "
                                                 "branch's newest earlier run.")] = None,
    ) -> models.Comparison:
        """What changed since a base run: new failures, still failing, fixed, new and removed
        tests. `base_reason` says which base was used."""
        comparison = await client().runs.compare(run_id, base_run_id)
        if comparison.base_run_id is None:
            # The server picks the base as the dashboard and `redline summary` do; no base at
            # all is an error here, so an agent does not read empty lists as "nothing changed".
            raise NotFoundError(
                f"Run {run_id} has no earlier finished run on its branch or on the default "
                "branch to compare with",
                details={"field": "base_run_id", "reason": "no_previous_run"},
                next_action="Pass base_run_id: list_runs shows the candidates.")
        return comparison

    @tool
    async def get_test(
        test_id: Annotated[str, Field(description="Test result id (test_...).")],
    ) -> models.TestResult:
        """One test result in full: error with stack, retries, annotations, output (stdout
        and stderr cut to 8,000 characters)."""
        result = await client().tests.get(test_id)
        if result.error is not None:
            result.error.stack = _cut(result.error.stack, OUTPUT_CHARS)
        result.stdout = _cut(result.stdout, OUTPUT_CHARS)
        result.stderr = _cut(result.stderr, OUTPUT_CHARS)
        return result

    @tool
    async def test_history(
        test_id: TestId,
        branch: Annotated[str | None, Field(description="Only runs of this branch.")] = None,
    ) -> models.History:
        """The test's last 20 results across runs (status, branch, commit), newest first:
        regressions and flakiness patterns."""
        return await client().tests.history(test_id, branch=branch)

    @tool
    async def test_steps(
        test_id: Annotated[str, Field(description="Test result id (test_...).")],
    ) -> models.StepList:
        """The steps of one test result (hooks, actions, assertions), nested, with the
        failing one."""
        return await client().tests.steps(test_id)

    @tool
    async def get_test_case(test_id: TestId) -> models.TestCaseDetail:
        """A test case's statistics and why its flakiness score is what it is: the runs that
        were evidence, the runs it failed in, its quarantine (who, why, until when) and
        quarantine history."""
        return await client().test_cases.get(test_id)

    @tool
    async def flaky_tests(
        project_id: ProjectId = None,
        min_score: Annotated[float | None, Field(ge=0, le=1, description="Only scores at or "
                                                 "above (0 stable .. 1 very flaky).")] = None,
        quarantined: Annotated[bool | None, Field(description="Only quarantined (true) or "
                                                  "not quarantined (false).")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> models.FlakinessPage:
        """Flaky test cases by score, highest first, with the project's summary (threshold,
        counts). `testId` in each row is the case id (tc_...)."""
        return await client().flakiness.list(project_id, min_score=min_score,
                                             quarantined=quarantined, limit=limit)

    @tool
    async def quarantine(
        test_id: TestId,
        reason: Annotated[str | None, Field(description="Why, for the team.")] = None,
        owner: Annotated[str | None, Field(description="Who is fixing it.")] = None,
        expires_at: Annotated[str | None, Field(description="ISO 8601 time the quarantine "
                                                "lifts by itself (e.g. "
                                                "2026-12-01T00:00:00Z).")] = None,
        project_id: ProjectId = None,
    ) -> models.QuarantineResult:
        """Quarantine a flaky test: its failures stop failing the verdict of runs started
        from now on."""
        return await client().flakiness.quarantine(test_id, project_id, reason=reason,
                                                   owner=owner, expires_at=expires_at)

    @tool
    async def unquarantine(
        test_id: TestId,
        reason: Annotated[str | None, Field(description="Why (e.g. fixed).")] = None,
        project_id: ProjectId = None,
    ) -> models.QuarantineResult:
        """End a test's quarantine: its failures fail verdicts again."""
        return await client().flakiness.unquarantine(test_id, project_id, reason=reason)

    @tool
    async def error_groups(
        project_id: ProjectId = None,
        since: Annotated[str | None, Field(description="ISO 8601 time; only failures since "
                                           "then (default: 30 days ago).")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> models.Page[models.ErrorGroup]:
        """Failures grouped by their normalised error message, most frequent first."""
        return await client().errors.list(project_id, since=since, limit=limit)

    @tool
    async def trends(
        project_id: ProjectId = None,
        group_by: Annotated[Literal["day", "run"], Field(description="One point per day or "
                                                         "per run.")] = "day",
        branch: Annotated[str | None, Field(description="Only runs of this branch.")] = None,
        days: Annotated[int, Field(ge=1, le=365)] = 30,
    ) -> models.Trends:
        """Pass rate, counts, duration and flaky tests over time, with the slowest tests."""
        return await client().trends.get(project_id, group_by=group_by, branch=branch,
                                         days=days)

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
        """Import a test report as a new run; the result has the run's counts and verdict."""
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

    # -- executed runs ---------------------------------------------------------------------------

    @tool
    async def list_plans(
        project_id: ProjectId = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 50,
    ) -> models.Page[models.Plan]:
        """The project's plans: how Redline runs its suites (command, source, reports,
        schedule), each with its status (draft, ready, queued, running, passed, failed,
        blocked, cancelled, unknown). run_plan starts one."""
        return await client().plans.list(project_id, limit=limit)

    @tool
    async def run_plan(
        plan_id: Annotated[str, Field(description="Plan id (plan_...): list_plans.")],
        branch: Annotated[str | None, Field(description="Branch to record (and, for a git "
                                            "source without ref, to test).")] = None,
        ref: Annotated[str | None, Field(description="Git ref to check out instead of the "
                                         "plan's.")] = None,
        wait_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS, description="Wait "
                                             "this long (at most 120) for the run to end; 0 "
                                             "answers at once with the queued run.")] = 0,
    ) -> PlanRun:
        """Start a run of a plan (source mcp) and optionally wait for its end. A finished run
        that failed is a normal answer (see run.status, run.exit_code, log_tail); CONFLICT
        means a run of the plan is already in flight (details.runId)."""
        sdk = client()
        command = sdk.plans.command(plan_id, branch=branch, ref=ref, source="mcp")
        try:
            run = await command.start()
        except TransportTimeoutError as exc:
            raise KnownNext(exc, (
                "The trigger may have landed: call list_runs(plan_id=\"" + plan_id + "\", "
                "limit=1) or get_run with the run id before calling run_plan again; never "
                "trigger twice.")) from exc
        if wait_seconds > 0:
            started = time.monotonic()
            try:
                run = await command.wait(wait_seconds)
            except CommandExitError as exc:
                run = exc.run  # it ran and exited non-zero: an answer, not a tool failure
            except WaitTimeoutError as exc:
                waited = time.monotonic() - started
                raise KnownNext(WaitTimeoutError(
                    f"Run {run.id} of plan {plan_id} was still {exc.last_status or run.status}"
                    f" after {waited:.0f} s; it goes on", run_id=run.id,
                    last_status=exc.last_status, waited=round(waited, 1)),
                    f"call get_run(run_id=\"{run.id}\") until it ends (or "
                    f"get_run_log to read its output); do not call run_plan again.") from exc
        if not run.is_finished:
            return PlanRun(run=run, finished=False, next=(
                f"call get_run(run_id=\"{run.id}\") until it ends, get_run_log(run_id="
                f"\"{run.id}\") for its output, cancel_run to stop it"))
        tail = await _log_tail(sdk, run.id)
        return PlanRun(run=run, finished=True, log_tail=tail, next=(
            f"call get_run(run_id=\"{run.id}\") for its failed tests" if run.failed_tests
            else f"get_run_log(run_id=\"{run.id}\") reads the whole output"))

    @tool
    async def get_run_log(
        run_id: Annotated[str, Field(description="Run id (run_...) of an executed run.")],
        offset: Annotated[int, Field(ge=0, description="Byte offset to read from: 0, or the "
                                     "next_offset of the previous window.")] = 0,
        max_bytes: Annotated[int, Field(ge=1, le=65536, description="Size of the window.")]
        = 16384,
    ) -> models.LogChunk:
        """A window of an executed run's output from `offset`: text, next_offset (pass it
        back for the next window) and complete (the run has ended and this is the end).
        While the run is live, a window with no new text means: call again a little later."""
        return await client().runs.log(run_id, offset=offset, limit=max_bytes)

    @tool
    async def cancel_run(
        run_id: Annotated[str, Field(description="Run id (run_...) of an executed run.")],
    ) -> models.Run:
        """Stop an executed run (idempotent): a queued run is cancelled at once; a running
        one's process group gets SIGTERM, then SIGKILL after the grace period (status stays
        running with cancel_requested until then: get_run shows it cancelled)."""
        return await client().runs.cancel(run_id)

    return server


async def _log_tail(sdk: Any, run_id: str) -> str | None:
    """The last LOG_TAIL_CHARS characters of a finished run's log, read window by window (at
    most 4 MiB: past that, the tail of what was read, and get_run_log reads on)."""
    tail, offset = "", 0
    for _ in range(4):
        chunk = await sdk.runs.log(run_id, offset=offset, limit=1024 * 1024)
        tail = (tail + chunk.text)[-LOG_TAIL_CHARS:]
        if chunk.complete or chunk.next_offset <= offset:
            break
        offset = chunk.next_offset
    return tail or None


def run(url: str | None = None, profile: str | None = None, project: str | None = None) -> None:
    """Serve on stdio until the client disconnects (what `redline mcp` calls)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    conn = resolve_connection(url=url, profile=profile, project=project)

    def make_client() -> AsyncClient:
        return AsyncClient(conn.url, user_agent=f"redline-mcp/{__version__}",
                           **conn.client_options())

    build_server(make_client).run("stdio")
