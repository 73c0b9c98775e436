from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from redline.server.schemas import ApiModel, DurationMs, Int32

RunStatus = Literal["running", "passed", "failed", "cancelled"]
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


class Run(ApiModel):
    id: str
    project_id: str
    status: str
    source: str
    branch: str | None
    commit_sha: str | None
    commit_message: str | None
    commit_author: str | None
    ci_provider: str | None
    ci_build_id: str | None
    ci_build_url: str | None
    playwright_version: str | None
    workers: int | None
    shard_current: int | None
    shard_total: int | None
    browser: str | None
    os: str | None
    viewport: str | None
    hostname: str | None
    total_tests: int
    passed_tests: int
    failed_tests: int
    skipped_tests: int
    flaky_tests: int
    pass_rate: float
    duration: int
    run_title: str | None
    tags: list[str]
    grep_patterns: list[str]
    verdict: str | None = Field(description="What CI gates on, set when the run completes: "
                                "`failed` when a test failed whose case was not quarantined "
                                "when the run started, else `passed` (or `cancelled`).")
    quarantined_failures: int = Field(description="Failures ignored by the verdict because "
                                      "their case was quarantined when the run started.")
    created_at: str
    updated_at: str
    completed_at: str | None


class RunSummary(ApiModel):
    id: str
    project_id: str
    status: str
    source: str
    branch: str | None
    commit_sha: str | None
    ci_build_url: str | None
    run_title: str | None
    total_tests: int
    passed_tests: int
    failed_tests: int
    skipped_tests: int
    flaky_tests: int
    pass_rate: float
    duration: int
    verdict: str | None
    quarantined_failures: int
    created_at: str
    completed_at: str | None = Field(description="When the run finished (null while "
                                     "running).")


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
