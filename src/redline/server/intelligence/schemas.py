from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from redline.server.schemas import ApiModel


class QuarantineInfo(ApiModel):
    reason: str | None
    owner: str | None
    by: str | None
    at: str | None
    expires_at: str | None


class TestCase(ApiModel):
    id: str
    project_id: str
    title: str
    full_title: str
    file_path: str | None
    variant: str | None
    status: str = Field(description="new, stable, flaky or broken (fails every time)")
    flakiness_score: float
    total_runs: int
    flaky_runs: int
    failed_runs: int
    failure_rate: float
    avg_duration: int
    last_status: str | None
    last_run_at: str | None
    last_flaky_at: str | None
    tags: list[str]
    is_quarantined: bool
    quarantine: QuarantineInfo | None
    created_at: str


class Evidence(ApiModel):
    run_id: str
    commit_sha: str | None
    status: str
    at: str
    kind: str = Field(description="`retry`: flaky within a run; `same-commit`: a pass and a "
                      "fail on one commit")


class FailedIn(ApiModel):
    run_id: str
    commit_sha: str | None
    at: str


class QuarantineEvent(ApiModel):
    action: str
    automatic: bool
    reason: str | None
    owner: str | None
    by: str | None
    expires_at: str | None
    at: str


class TestCaseDetail(TestCase):
    evidence: list[Evidence]
    failed_in: list[FailedIn]
    score_formula: str
    quarantine_history: list[QuarantineEvent]


class HistoryItem(ApiModel):
    run_id: str
    test_id: str
    status: str
    duration: int
    branch: str | None
    commit_sha: str | None
    created_at: str


class History(ApiModel):
    data: list[HistoryItem]
    total: int


class FlakyTest(ApiModel):
    test_id: str
    test_title: str
    full_title: str
    file_path: str | None
    variant: str | None
    flakiness_score: float
    total_runs: int
    flaky_runs: int
    last_flaky_at: str | None
    last_status: str | None = Field(None, description="The status of its newest result")
    is_quarantined: bool
    status: str


class FlakinessSummary(ApiModel):
    total_flaky_tests: int
    quarantined_tests: int
    average_flakiness_score: float
    threshold: float


class FlakinessPage(ApiModel):
    data: list[FlakyTest]
    summary: FlakinessSummary
    total: int
    limit: int
    offset: int
    next_cursor: str | None


class QuarantineRequest(ApiModel):
    test_id: str = Field(min_length=1, max_length=40, description="A test case id, or the id "
                         "of one of its results")
    project_id: str | None = Field(None, max_length=40)
    is_quarantined: bool
    reason: str | None = Field(None, max_length=2000)
    owner: str | None = Field(None, max_length=255, description="Who is fixing it")
    expires_at: datetime | None = Field(None, strict=False, description="The quarantine lifts "
                                        "by itself then")


class QuarantineResult(ApiModel):
    test_id: str
    is_quarantined: bool
    reason: str | None
    owner: str | None
    quarantined_by: str | None
    expires_at: str | None
    updated_at: str | None


class ErrorGroup(ApiModel):
    fingerprint: str
    message: str
    error_type: str | None
    occurrences: int = Field(description="Failures in the period")
    total_occurrences: int
    affected_tests: int
    first_seen: str
    last_seen: str


class TrendPoint(ApiModel):
    key: str
    at: str | None
    runs: int
    total_tests: int
    passed_tests: int
    failed_tests: int
    skipped_tests: int
    flaky_tests: int
    pass_rate: float
    duration: int


class SlowTest(ApiModel):
    test_id: str
    full_title: str
    file_path: str | None
    avg_duration: int


class Trends(ApiModel):
    project_id: str
    group_by: str
    branch: str | None
    days: int
    points: list[TrendPoint]
    slowest_tests: list[SlowTest]


class CompareItem(ApiModel):
    test_case_id: str
    test_id: str
    full_title: str
    file_path: str | None
    status: str
    base_status: str | None


class Comparison(ApiModel):
    run_id: str
    base_run_id: str | None = Field(description="The run compared with; null when no base "
                                    "was named and none was found (the lists are empty)")
    base_branch: str | None = Field(description="The base run's branch")
    base_reason: Literal["requested", "previousOnBranch", "defaultBranch", "none"] = Field(
        description="requested: the base query parameter; previousOnBranch: the completed run "
        "of the run's branch before it; defaultBranch: its branch has none, so the newest "
        "earlier completed run of the default branch (main, else master); none: no base")
    base_title: str | None = Field(description="The base run as people name it: its title, "
                                   "else its CI build, else its branch and commit")
    summary: dict[str, int]
    new_failures: list[CompareItem]
    fixed: list[CompareItem]
    still_failing: list[CompareItem]
    new_tests: list[CompareItem]
    removed_tests: list[CompareItem]


