from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from redline.server.schemas import ApiModel, DurationMs, Int32

RunStatus = Literal["running", "passed", "failed", "cancelled"]
# What `GET /api/runs?status=` takes: a reported run's statuses and an executed run's
# (`queued` -> `running` -> `passed` | `failed` | `blocked` | `cancelled`).
ListedStatus = Literal["queued", "running", "passed", "failed", "blocked", "cancelled"]
Source = Literal["api", "cli", "portal", "mcp", "schedule", "github_action", "reporter"]

_S: dict[str, Any] = {"max_length": 255}


class RunCreate(ApiModel):
    project_id: str | None = Field(None, max_length=40, description="Implied by a project API "
                                   "key; required with a personal token.")
    status: Literal["running", "passed", "failed"]
    source: Source = "api"
    branch: str | None = Field(None, **_S)
    commit_sha: str | None = Field(None, max_length=64)
    commit_message: str | None = Field(None, max_length=10_000)
    commit_author: str | None = Field(None, **_S)
    ci_provider: str | None = Field(None, max_length=64)
    ci_build_id: str | None = Field(None, **_S)
    ci_build_url: str | None = Field(None, max_length=2048)
    playwright_version: str | None = Field(None, max_length=32)
    workers: Int32 | None = Field(None, ge=0, le=100_000)
    shard_current: Int32 | None = Field(None, ge=1, le=10_000)
    shard_total: Int32 | None = Field(None, ge=1, le=10_000)
    browser: str | None = Field(None, max_length=64)
    os: str | None = Field(None, max_length=64)
    viewport: str | None = Field(None, max_length=32)
    hostname: str | None = Field(None, **_S)
    run_title: str | None = Field(None, max_length=500)
    tags: list[str] = Field(default_factory=list, max_length=100)
    grep_patterns: list[str] = Field(default_factory=list, max_length=100)


class RunUpdate(ApiModel):
    status: RunStatus | None = None
    total_tests: Int32 | None = Field(None, ge=0)
    passed_tests: Int32 | None = Field(None, ge=0)
    failed_tests: Int32 | None = Field(None, ge=0)
    skipped_tests: Int32 | None = Field(None, ge=0)
    flaky_tests: Int32 | None = Field(None, ge=0)
    duration: DurationMs | None = Field(None, ge=0, description="Milliseconds.")
    shard_current: Int32 | None = Field(None, ge=1, le=10_000, description="Which shard "
                                      "finished, for a sharded run.")


class RunSummary(ApiModel):
    """A run as lists show it; `Run` adds the rest of what was reported about it."""

    id: str
    project_id: str
    status: str
    source: str
    branch: str | None
    commit_sha: str | None
    ci_build_id: str | None = None
    ci_build_url: str | None
    run_title: str | None
    total_tests: int
    passed_tests: int
    failed_tests: int
    skipped_tests: int
    flaky_tests: int
    pass_rate: float
    duration: int
    verdict: str | None = Field(description="What CI gates on, set when the run completes: "
                                "`failed` when a test failed whose case was not quarantined "
                                "when the run started, else `passed` (or `cancelled`).")
    quarantined_failures: int = Field(description="Failures ignored by the verdict because "
                                      "their case was quarantined when the run started.")
    plan_id: str | None = Field(description="The plan that executed it (null for a "
                                "reported or imported run).")
    queued_at: str | None = Field(description="Executed runs: when it was queued.")
    started_at: str | None = Field(description="Executed runs: when a runner took it.")
    finished_at: str | None = Field(description="Executed runs: when its command ended.")
    exit_code: int | None = Field(description="Executed runs: the command's exit code.")
    runner_id: str | None = Field(description="Executed runs: the runner that ran it.")
    blocked_reason: str | None = Field(description="Why a `blocked` run has no verdict: "
                                       "`source_unavailable`, `command_not_started`, "
                                       "`sandbox_unavailable`, `no_report`, `no_results`, "
                                       "`queue_timeout`, `insufficient_credits`.")
    cancel_reason: str | None = Field(description="`cancelled` (by a user), `timeout`, "
                                      "`runner_lost`, `plan_deleted`, or a resource limit "
                                      "(`cpu_limit`, `memory_limit`, `open_files_limit`).")
    cancel_requested: bool = Field(description="A cancel was asked and the runner is "
                                   "stopping the command.")
    attempt: int | None = Field(description="Executed runs: 2 when it was retried after "
                                "its first runner was lost.")
    created_at: str
    completed_at: str | None = Field(description="When the run finished (null while "
                                     "running).")


class Run(RunSummary):
    commit_message: str | None
    commit_author: str | None
    ci_provider: str | None
    playwright_version: str | None
    workers: int | None
    shard_current: int | None
    shard_total: int | None
    browser: str | None
    os: str | None
    viewport: str | None
    hostname: str | None
    tags: list[str]
    grep_patterns: list[str]
    missing_shards: list[int] | None = Field(None, description="Sharded runs completed by "
                                             "the shard timeout: the shards that never "
                                             "reported (null otherwise).")
    updated_at: str


class RunUpdated(ApiModel):
    id: str
    status: str
    total_tests: int
    passed_tests: int
    failed_tests: int
    skipped_tests: int
    flaky_tests: int
    duration: int
    updated_at: str


class ImportSummary(ApiModel):
    format: str
    files: int
    tests: int


class ImportedRun(Run):
    imported: ImportSummary
