from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from redline.server.schemas import ApiModel, DurationMs, Int32

ResultStatus = Literal["passed", "failed", "skipped", "flaky"]


class TestError(ApiModel):
    model_config = ConfigDict(extra="allow")  # (merged with ApiModel's)
    message: str = Field(max_length=100_000)
    stack: str | None = Field(None, max_length=1_000_000)
    type: str | None = Field(None, max_length=255)
    expected: str | None = Field(None, max_length=100_000)
    actual: str | None = Field(None, max_length=100_000)
    location: dict[str, Any] | None = None


class Step(ApiModel):
    model_config = ConfigDict(extra="allow")  # (merged with ApiModel's)
    title: str = Field(max_length=10_000)
    category: str | None = Field(None, max_length=64)
    status: Literal["passed", "failed", "skipped"] | None = None
    duration: DurationMs | None = Field(None, ge=0)
    error: dict[str, Any] | None = None
    steps: list[Step] = Field(default_factory=list)


class Annotation(ApiModel):
    model_config = ConfigDict(extra="allow")  # (merged with ApiModel's)
    type: str = Field(max_length=255)
    description: str | None = Field(None, max_length=10_000)


class ResultFields(ApiModel):
    """One test result as reporters send it (used alone and in batches)."""

    title: str = Field(min_length=1, max_length=10_000)
    full_title: str = Field(min_length=1, max_length=20_000)
    file_path: str | None = Field(None, max_length=1000)
    line_number: Int32 | None = Field(None, ge=0)
    variant: str | None = Field(None, max_length=255, description="e.g. the Playwright "
                                "project; part of the test's identity")
    suite_path: list[str] = Field(default_factory=list, max_length=50,
                                  description="Describe blocks, outermost first.")
    status: ResultStatus
    duration: DurationMs = Field(ge=0, description="Milliseconds.")
    retries: Int32 = Field(0, ge=0, le=1000)
    attempt: Int32 = Field(1, ge=1, le=1001)
    is_flaky: bool = Field(False, description="True with status passed means passed on a "
                           "retry: stored as `flaky`.")
    tags: list[str] = Field(default_factory=list, max_length=100)
    annotations: list[Annotation] = Field(default_factory=list, max_length=100)
    error: TestError | None = None
    steps: list[Step] = Field(default_factory=list, max_length=10_000)
    stdout: str = Field("", max_length=5_000_000)
    stderr: str = Field("", max_length=5_000_000)


class TestCreate(ResultFields):
    run_id: str = Field(min_length=1, max_length=40)
    project_id: str | None = Field(None, max_length=40, description="Implied by the run.")


class TestBatch(ApiModel):
    tests: list[ResultFields] = Field(min_length=1, max_length=1000)


class TestCreated(ApiModel):
    id: str
    run_id: str
    project_id: str
    test_case_id: str
    title: str
    full_title: str
    status: str
    duration: int
    is_flaky: bool
    created_at: str


class BatchCreated(ApiModel):
    run_id: str
    created: int
    ids: list[str]


class TestListItem(ApiModel):
    id: str
    run_id: str
    test_case_id: str
    title: str
    full_title: str
    file_path: str | None
    variant: str | None
    status: str
    duration: int
    is_flaky: bool
    error: dict[str, Any] | None
    created_at: str


class TestDetail(ApiModel):
    id: str
    run_id: str
    project_id: str
    test_case_id: str
    suite_id: str | None
    title: str
    full_title: str
    file_path: str | None
    line_number: int | None
    variant: str | None
    status: str
    duration: int
    retries: int
    attempt: int
    is_flaky: bool
    tags: list[str]
    annotations: list[dict[str, Any]]
    error: dict[str, Any] | None
    stdout: str
    stderr: str
    extra: dict[str, Any]
    created_at: str


class StepList(ApiModel):
    data: list[dict[str, Any]]


class SuiteCreate(ApiModel):
    run_id: str = Field(min_length=1, max_length=40)
    project_id: str | None = Field(None, max_length=40)
    title: str = Field(min_length=1, max_length=1000)
    file_path: str | None = Field(None, max_length=1000)
    parent_suite_id: str | None = Field(None, max_length=40)


class Suite(ApiModel):
    id: str
    run_id: str
    project_id: str
    title: str
    file_path: str | None
    parent_suite_id: str | None
    created_at: str


class SuiteNode(ApiModel):
    id: str
    title: str
    file_path: str | None
    parent_suite_id: str | None
    children: list[SuiteNode]


class SuiteTree(ApiModel):
    data: list[SuiteNode]
