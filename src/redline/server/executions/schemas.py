"""Plans, executed runs, runner tokens and the runner API: request and response bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from redline.server.runs.schemas import Run
from redline.server.schemas import ApiModel

Sandbox = Literal["auto", "bubblewrap", "none"]
PlanStatus = Literal["draft", "ready", "queued", "running", "passed", "failed", "blocked",
                     "cancelled", "unknown"]
TriggerSource = Literal["cli", "portal", "mcp", "schedule", "github_action", "api"]
SignalName = Literal["INT", "TERM", "HUP", "KILL", "QUIT", "USR1", "USR2"]
MAX_TIMEOUT = 21600


class EnvValue(ApiModel):
    value: str | None = Field(None, max_length=32_768, description="Omitted on a secret "
                              "sent back unchanged: the stored value is kept.")
    secret: bool = Field(False, description="Stored encrypted and never returned.")


EnvMap = dict[str, str | EnvValue]


class PlanSource(ApiModel):
    path: str | None = Field(None, max_length=4096, description="A folder copied into the "
                             "run's folder; it must lie inside REDLINE_RUNNER_SOURCE_PATHS.")
    git: str | None = Field(None, max_length=2048, description="A repository URL or local "
                            "path, cloned shallowly.")
    ref: str | None = Field(None, max_length=255, description="Branch or tag to clone.")

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.path is None) == (self.git is None):
            raise ValueError("a source is either {\"path\": DIR} or {\"git\": URL, \"ref\": "
                             "REF}")
        return self


class PlanLimits(ApiModel):
    """Resource limits of the plan's runs; each left out (or null) is the server's default
    (`REDLINE_RUN_DEFAULT_*`), and none may pass its maximum (`REDLINE_RUN_MAX_*`)."""

    cpu_seconds: int | None = Field(None, ge=1, description="CPU seconds per process "
                                    "(default: timeoutSeconds + 60); past it the command is "
                                    "stopped and the run fails with cancelReason "
                                    "`cpu_limit`.")
    memory_mb: int | None = Field(None, ge=16, description="Address space per process, MiB "
                                  "(default 8192); an allocation past it fails, and the run "
                                  "fails with cancelReason `memory_limit`.")
    open_files: int | None = Field(None, ge=16, description="Open files per process "
                                   "(default 4096).")
    output_bytes: int | None = Field(None, ge=1024, description="Output kept in the log "
                                     "(default 64 MiB); the rest is cut, with a line saying "
                                     "so.")


_COMMAND = Field(min_length=1, max_length=200, description="argv: a list, never a shell "
                 "string.")
_ENV_NAMES = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class PlanCreate(ApiModel):
    project_id: str | None = Field(None, max_length=40)
    name: str = Field(min_length=1, max_length=200)
    command: list[str] | None = Field(None, min_length=1, max_length=200,
                                      description="argv: a list, never a shell string. "
                                      "Without one the plan is a draft.")
    source: PlanSource | None = None
    env: EnvMap = Field(default_factory=dict, max_length=200)
    timeout_seconds: int = Field(1800, ge=1, le=MAX_TIMEOUT)
    queue_timeout_seconds: int = Field(3600, ge=1, le=7 * 86400)
    report_paths: list[str] = Field(default_factory=list, max_length=50)
    max_concurrent_runs: int = Field(1, ge=1, le=100)
    schedule: str | None = Field(None, max_length=120, description="A cron expression "
                                 "(5 fields, UTC).")
    sandbox: Sandbox = "auto"
    network: bool = False
    limits: PlanLimits | None = None
    executor: Literal["local", "kubernetes"] = Field(
        "local", description="`local`: Redline's runners. `kubernetes` (a Job per run) is "
        "planned, not in this version: UNSUPPORTED.")


class PlanUpdate(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    command: list[str] | None = Field(None, min_length=1, max_length=200)
    source: PlanSource | None = None
    env: EnvMap | None = Field(None, max_length=200)
    timeout_seconds: int | None = Field(None, ge=1, le=MAX_TIMEOUT)
    queue_timeout_seconds: int | None = Field(None, ge=1, le=7 * 86400)
    report_paths: list[str] | None = Field(None, max_length=50)
    max_concurrent_runs: int | None = Field(None, ge=1, le=100)
    schedule: str | None = Field(None, max_length=120, description="\"\" removes it.")
    sandbox: Sandbox | None = None
    network: bool | None = None
    limits: PlanLimits | None = None
    code_version: int | None = Field(None, ge=1, description="The codeVersion this change "
                                     "was made against (or send If-Match).")


class Plan(ApiModel):
    id: str
    project_id: str
    name: str
    command: list[str] | None
    source: dict[str, Any] | None
    env: dict[str, EnvValue]
    timeout_seconds: int
    queue_timeout_seconds: int
    report_paths: list[str]
    max_concurrent_runs: int
    schedule: str | None
    next_run_at: str | None
    sandbox: str
    network: bool
    limits: PlanLimits = Field(description="What the plan sets; null: the server's default.")
    code_version: int
    status: PlanStatus
    created_at: str
    updated_at: str


class RunTrigger(ApiModel):
    branch: str | None = Field(None, max_length=255)
    ref: str | None = Field(None, max_length=255, description="Overrides the git source's "
                            "ref.")
    commit_sha: str | None = Field(None, max_length=64)
    env: EnvMap = Field(default_factory=dict, max_length=200)
    source: TriggerSource = "api"


# An executed run is a run: the same body as `GET /api/runs/{id}` (runs/schemas.py).
ExecutedRun = Run


class Signal(ApiModel):
    signal: str = Field(max_length=20, description="INT, TERM, HUP, KILL, QUIT, USR1 or USR2.")


class LogChunk(ApiModel):
    run_id: str
    text: str
    offset: int
    next_offset: int
    complete: bool


class Usage(ApiModel):
    team_id: str
    month: str
    budget_seconds: int | None
    used_seconds: int
    left_seconds: int | None
    projects: list[dict[str, Any]]


class BudgetUpdate(ApiModel):
    execution_budget_seconds: int | None = Field(None, ge=0, le=10**10, description="Runner-"
                                                 "seconds a calendar month; null or absent: no "
                                                 "limit.")


class RunnerTokenCreate(ApiModel):
    team_id: str = Field(max_length=40)
    project_id: str | None = Field(None, max_length=40, description="Serve only this project.")
    name: str = Field(min_length=1, max_length=200)


class RunnerToken(ApiModel):
    id: str
    team_id: str | None
    project_id: str | None
    name: str
    token_masked: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class RunnerTokenCreated(RunnerToken):
    token: str = Field(description="Shown only in this response.")


# -- the runner API ------------------------------------------------------------------------

class Claim(ApiModel):
    runner_id: str = Field(min_length=1, max_length=100)


class Lease(ApiModel):
    lease_token: str = Field(max_length=40)


class Heartbeat(Lease):
    process_started: bool = False


class LogAppend(Lease):
    offset: int = Field(ge=0)
    text: str = Field(max_length=4 * 1024 * 1024)


class ReportUpload(Lease):
    file_name: str = Field(max_length=500)
    content: str = Field(max_length=9 * 1024 * 1024)
    format: Literal["auto", "junit", "playwright-json", "ctrf"] = "auto"


class Finish(Lease):
    outcome: Literal["exited", "timeout", "cancelled", "blocked", "limit"]
    exit_code: int | None = None
    limit: Literal["cpu", "memory", "open_files"] | None = Field(
        None, description="With outcome `limit`: the resource limit that stopped it.")
    blocked_reason: Literal["source_unavailable", "command_not_started", "no_report",
                            "sandbox_unavailable"] | None = None
