"""Response models: the server's JSON, typed (camelCase on the wire, snake_case here).

Models accept fields they do not know (a newer server may add some) and keep them, so
`model_dump(by_alias=True)` gives back what the server sent. Timestamps stay the server's
ISO 8601 strings (`...Z`); `redline.sdk.models.parse_time` turns one into a `datetime`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")

#: the statuses after which a run no longer changes
TERMINAL_RUN_STATUSES = frozenset({"passed", "failed", "blocked", "cancelled"})


def parse_time(value: str | None) -> datetime | None:
    """`2026-03-19T10:00:00Z` -> an aware `datetime` in UTC (None stays None)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow",
                              serialize_by_alias=True)

    def to_json(self) -> dict[str, Any]:
        """The wire form (camelCase, extra fields kept)."""
        return self.model_dump(mode="json", by_alias=True)


class Page(Model, Generic[T]):
    """One page of a list: `data` plus `total`, `limit`, `offset` and `next_cursor`."""

    data: list[T]
    total: int | None = None
    limit: int | None = None
    offset: int | None = None
    next_cursor: str | None = None

    def __iter__(self):  # type: ignore[override] - iterate the items, not the fields
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class Deleted(Model):
    success: bool
    message: str | None = None


# Accounts -----------------------------------------------------------------------------------

class User(Model):
    id: str
    email: str
    name: str | None = None
    created_at: str | None = None


class LoginResult(Model):
    token: str = Field(description="Personal token (`rlu_...`), shown once.")
    expires_at: str | None = None
    csrf_token: str | None = None
    user: User


class Membership(Model):
    team_id: str
    team_name: str
    role: str


class Me(Model):
    id: str
    email: str
    name: str | None = None
    created_at: str | None = None
    kind: str = Field(description="`user` for a personal token, `key` for an API key")
    key_id: str | None = None
    project_id: str | None = None
    scopes: list[str] = []
    teams: list[Membership] = []


# Setup --------------------------------------------------------------------------------------

class Team(Model):
    id: str
    name: str
    created_at: str | None = None


class Project(Model):
    id: str
    name: str
    team_id: str
    created_at: str | None = None
    updated_at: str | None = None


class SetupKey(Model):
    id: str
    key: str
    name: str
    scopes: list[str] = []


class SetupResult(Model):
    user: User
    team: Team
    project: Project
    api_key: SetupKey


# Teams --------------------------------------------------------------------------------------

class Member(Model):
    id: str
    user_id: str
    team_id: str
    role: str
    name: str | None = None
    email: str | None = None
    avatar_url: str | None = None
    joined_at: str | None = None


class Invitation(Model):
    id: str
    team_id: str
    email: str
    role: str
    status: str
    expires_at: str | None = None
    created_at: str | None = None
    accept_token: str | None = None
    accept_url: str | None = None


class Accepted(Model):
    member: Member
    token: str | None = None


# Projects -----------------------------------------------------------------------------------

class ProjectSettings(Model):
    project_id: str
    data_retention_days: int
    flakiness_threshold: float
    auto_quarantine_enabled: bool
    updated_at: str | None = None
    #: the version read (the response's ETag): pass it as `if_match` to update safely
    etag: str | None = Field(None, exclude=True)


class ApiKey(Model):
    id: str
    name: str
    project_id: str
    masked_key: str | None = None
    scopes: list[str] = []
    is_active: bool
    expires_at: str | None = None
    last_used_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ApiKeyUpdated(Model):
    id: str
    name: str
    is_active: bool
    updated_at: str | None = None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The whole key; shown only once.")


# Runs and results ---------------------------------------------------------------------------

class Run(Model):
    id: str
    project_id: str | None = None
    status: str
    verdict: str | None = None
    source: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    commit_message: str | None = None
    commit_author: str | None = None
    ci_provider: str | None = None
    ci_build_id: str | None = None
    ci_build_url: str | None = None
    run_title: str | None = None
    total_tests: int | None = None
    passed_tests: int | None = None
    failed_tests: int | None = None
    skipped_tests: int | None = None
    flaky_tests: int | None = None
    quarantined_failures: int | None = None
    pass_rate: float | None = None
    duration: int | None = None
    tags: list[str] | None = None
    url: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    completed_at: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def outcome(self) -> str:
        """The verdict CI gates on: `verdict` (quarantine honoured) when the server sends one,
        else the status."""
        return self.verdict or self.status


class TestError(Model):
    __test__ = False  # not a pytest test class

    message: str | None = None
    stack: str | None = None
    type: str | None = None
    expected: Any = None
    actual: Any = None


class TestStep(Model):
    __test__ = False  # not a pytest test class

    title: str
    category: str | None = None
    status: str | None = None
    duration: int | None = None
    error: TestError | None = None
    steps: list[TestStep] | None = None


class TestResult(Model):
    __test__ = False  # not a pytest test class

    id: str
    run_id: str | None = None
    project_id: str | None = None
    test_case_id: str | None = None
    title: str | None = None
    full_title: str | None = None
    file_path: str | None = None
    line_number: int | None = None
    status: str
    duration: int | None = None
    retries: int | None = None
    attempt: int | None = None
    is_flaky: bool | None = None
    is_quarantined: bool | None = None
    tags: list[str] | None = None
    error: TestError | None = None
    created_at: str | None = None


class HistoryEntry(Model):
    run_id: str
    status: str
    duration: int | None = None
    branch: str | None = None
    commit_sha: str | None = None
    created_at: str | None = None


class Suite(Model):
    id: str
    title: str
    run_id: str | None = None
    project_id: str | None = None
    file_path: str | None = None
    parent_suite_id: str | None = None
    children: list[Suite] | None = None
    created_at: str | None = None


class BatchResult(Model):
    """What `POST /api/runs/{id}/tests/batch` answers (shape kept open)."""

    created: int | None = None
    run_id: str | None = None
    ids: list[str] = []


class FlakyTest(Model):
    test_id: str | None = None
    test_case_id: str | None = None
    test_title: str | None = None
    full_title: str | None = None
    file_path: str | None = None
    flakiness_score: float
    total_runs: int | None = None
    flaky_runs: int | None = None
    last_flaky_at: str | None = None
    is_quarantined: bool = False
    quarantine_reason: str | None = None


class FlakinessSummary(Model):
    total_flaky_tests: int | None = None
    quarantined_tests: int | None = None
    average_flakiness_score: float | None = None


class FlakinessReport(Model):
    data: list[FlakyTest]
    summary: FlakinessSummary | None = None
    total: int | None = None
    next_cursor: str | None = None


class QuarantineResult(Model):
    test_id: str | None = None
    test_case_id: str | None = None
    is_quarantined: bool
    updated_at: str | None = None


class Artifact(Model):
    id: str
    type: str
    file_name: str | None = None
    file_size: int | None = None
    mime_type: str | None = None
    url: str | None = None
    expires_at: str | None = None
    created_at: str | None = None


class Webhook(Model):
    id: str
    project_id: str | None = None
    url: str
    events: list[str] = []
    headers: dict[str, str] | None = None
    is_active: bool | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Record(Model):
    """A resource whose shape this SDK does not pin yet (test cases, error groups, trends,
    comparisons): its fields are kept as sent."""

    id: str | None = None
