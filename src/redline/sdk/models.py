"""Response models: the server's JSON, typed (camelCase on the wire, snake_case here).

Models accept fields they do not know (a newer server may add some) and keep them, so
`model_dump(by_alias=True)` gives back what the server sent. Timestamps stay the server's
ISO 8601 strings (`...Z`); `redline.sdk.models.parse_time` turns one into a `datetime`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
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
    # defer_build: a model's validator is built the first time it is used, not at import (the
    # CLI starts faster: a command uses two or three of these models)
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow",
                              serialize_by_alias=True, defer_build=True)

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

    def __iter__(self):  # type: ignore[override]  # iterate the items, not the fields
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

class ImportSummary(Model):
    """What an import read: the format detected, the files and the results."""

    format: str
    files: int
    tests: int


class Run(Model):
    """A run. `GET /api/runs/{id}` sends every field; a list sends a summary (the counts,
    branch, commit, verdict); `POST /api/runs/import` adds `imported`."""

    id: str
    project_id: str | None = None
    status: str = Field(description="running, passed, failed or cancelled (queued and blocked "
                        "for executed runs)")
    verdict: str | None = Field(None, description="What CI gates on, set when the run "
                                "completes: failures of cases quarantined when it started do "
                                "not count")
    quarantined_failures: int | None = None
    source: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    commit_message: str | None = None
    commit_author: str | None = None
    ci_provider: str | None = None
    ci_build_id: str | None = None
    ci_build_url: str | None = None
    run_title: str | None = None
    shard_current: int | None = None
    shard_total: int | None = None
    missing_shards: list[int] | None = Field(None, description="Shards that never reported "
                                             "before the server's shard timeout completed "
                                             "the run.")
    total_tests: int | None = None
    passed_tests: int | None = None
    failed_tests: int | None = None
    skipped_tests: int | None = None
    flaky_tests: int | None = None
    pass_rate: float | None = None
    duration: int | None = Field(None, description="Milliseconds.")
    tags: list[str] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    completed_at: str | None = None
    imported: ImportSummary | None = None
    # An executed run's fields (all null for a reported or imported run).
    plan_id: str | None = Field(None, description="The plan that executed it.")
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = Field(None, description="The command's exit status (negative: "
                                  "killed by that signal).")
    runner_id: str | None = None
    blocked_reason: str | None = Field(None, description="Why a `blocked` run got no "
                                       "verdict: source_unavailable, command_not_started, "
                                       "no_report, queue_timeout, insufficient_credits, ...")
    cancel_reason: str | None = Field(None, description="Why it was stopped: timeout, "
                                      "runner_lost, or who cancelled it.")
    cancel_requested: bool | None = None
    attempt: int | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def is_executed(self) -> bool:
        """A run of a plan (executed by a runner), not a reported or imported one."""
        return self.plan_id is not None

    @property
    def outcome(self) -> str:
        """The verdict CI gates on: `verdict` (quarantine honoured) when the server sends one,
        else the status."""
        return self.verdict or self.status


class RunUpdated(Model):
    """What `PATCH /api/runs/{id}` answers: the status and recomputed counts."""

    id: str
    status: str
    total_tests: int | None = None
    passed_tests: int | None = None
    failed_tests: int | None = None
    skipped_tests: int | None = None
    flaky_tests: int | None = None
    duration: int | None = None
    updated_at: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


class TestError(Model):
    __test__ = False  # not a pytest test class

    message: str | None = None
    stack: str | None = None
    type: str | None = None
    expected: Any = None
    actual: Any = None
    location: dict[str, Any] | None = Field(None, description="`file`, `line`, `column`")


class TestStep(Model):
    __test__ = False  # not a pytest test class

    title: str
    category: str | None = None
    status: str | None = None
    duration: int | None = None
    error: TestError | None = Field(None, description="A step's error; some reporters send "
                                    "only its text, kept as `error.message`")
    steps: list[TestStep] = []

    @field_validator("error", mode="before")
    @classmethod
    def _error_text(cls, value: Any) -> Any:
        return {"message": value} if isinstance(value, str) else value


class StepList(Model):
    """A result's steps, outermost first; a step may hold steps."""

    data: list[TestStep]

    def __iter__(self):  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def walk(self):
        """Every step, depth first, as `(depth, step)`."""
        def visit(steps, depth):
            for step in steps:
                yield depth, step
                yield from visit(step.steps, depth + 1)
        yield from visit(self.data, 0)


class TestResult(Model):
    """A test result. Lists send `id`, `run_id`, `test_case_id`, titles, `file_path`,
    `variant`, `status`, `duration`, `is_flaky`, `error`; `GET /api/tests/{id}` adds the rest
    (`suite_id`, `line_number`, `retries`, `attempt`, `tags`, `annotations`, `stdout`,
    `stderr`, `extra`)."""

    __test__ = False  # not a pytest test class

    id: str
    run_id: str | None = None
    project_id: str | None = None
    test_case_id: str | None = None
    suite_id: str | None = None
    title: str | None = None
    full_title: str | None = None
    file_path: str | None = None
    line_number: int | None = None
    variant: str | None = None
    status: str
    duration: int | None = None
    retries: int | None = None
    attempt: int | None = None
    is_flaky: bool | None = None
    tags: list[str] | None = None
    annotations: list[dict[str, Any]] | None = None
    error: TestError | None = None
    stdout: str | None = None
    stderr: str | None = None
    extra: dict[str, Any] | None = None
    created_at: str | None = None


class BatchResult(Model):
    """What `POST /api/runs/{id}/tests/batch` answers: the ids, in the order sent."""

    run_id: str | None = None
    created: int
    ids: list[str] = []


class HistoryEntry(Model):
    run_id: str
    test_id: str | None = Field(None, description="The result in that run (test_...)")
    status: str
    duration: int | None = None
    branch: str | None = None
    commit_sha: str | None = None
    created_at: str | None = None


class History(Model):
    """A test case's last 20 results across runs, newest first."""

    data: list[HistoryEntry]
    total: int | None = None

    def __iter__(self):  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class Suite(Model):
    """A suite (`POST /api/test-suites`), or a node of a run's suite tree."""

    id: str
    title: str
    run_id: str | None = None
    project_id: str | None = None
    file_path: str | None = None
    parent_suite_id: str | None = None
    children: list[Suite] = []
    created_at: str | None = None


class SuiteTree(Model):
    """A run's suites: the top-level ones, each with its `children`."""

    data: list[Suite]

    def __iter__(self):  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def walk(self):
        """Every suite, depth first, as `(depth, suite)`."""
        def visit(suites, depth):
            for suite in suites:
                yield depth, suite
                yield from visit(suite.children, depth + 1)
        yield from visit(self.data, 0)


# Test intelligence ----------------------------------------------------------------------------

class QuarantineInfo(Model):
    reason: str | None = None
    owner: str | None = None
    by: str | None = Field(None, description="The user who quarantined it (None: automatic)")
    at: str | None = None
    expires_at: str | None = None


class TestCase(Model):
    """A test's identity across runs (file + full title + variant) with its statistics over
    its last 50 results."""

    __test__ = False  # not a pytest test class

    id: str
    project_id: str | None = None
    title: str | None = None
    full_title: str
    file_path: str | None = None
    variant: str | None = None
    status: str = Field(description="new, stable, flaky or broken (fails every time)")
    flakiness_score: float = 0.0
    total_runs: int = 0
    flaky_runs: int = 0
    failed_runs: int = 0
    failure_rate: float = 0.0
    avg_duration: int | None = None
    last_status: str | None = None
    last_run_at: str | None = None
    last_flaky_at: str | None = None
    tags: list[str] = []
    is_quarantined: bool = False
    quarantine: QuarantineInfo | None = None
    created_at: str | None = None


class Evidence(Model):
    run_id: str
    commit_sha: str | None = None
    status: str
    at: str | None = None
    kind: str = Field(description="`retry`: flaky within a run; `same-commit`: a pass and a "
                      "fail on one commit")


class FailedIn(Model):
    run_id: str
    commit_sha: str | None = None
    at: str | None = None


class QuarantineEvent(Model):
    action: str = Field(description="quarantine or unquarantine")
    automatic: bool = False
    reason: str | None = None
    owner: str | None = None
    by: str | None = None
    expires_at: str | None = None
    at: str | None = None


class TestCaseDetail(TestCase):
    """A test case with why it is (or is not) flaky: the runs that were evidence, the runs it
    failed in, the score's formula and its quarantine history (newest first)."""

    evidence: list[Evidence] = []
    failed_in: list[FailedIn] = []
    score_formula: str | None = None
    quarantine_history: list[QuarantineEvent] = []


class FlakyTest(Model):
    """One row of `GET /api/flakiness`. `test_id` is the test case's id (`tc_...`)."""

    test_id: str
    test_title: str | None = None
    full_title: str | None = None
    file_path: str | None = None
    variant: str | None = None
    flakiness_score: float
    total_runs: int | None = None
    flaky_runs: int | None = None
    last_flaky_at: str | None = None
    is_quarantined: bool = False
    status: str | None = None

    @property
    def test_case_id(self) -> str:
        return self.test_id


class FlakinessSummary(Model):
    total_flaky_tests: int | None = None
    quarantined_tests: int | None = None
    average_flakiness_score: float | None = None
    threshold: float | None = Field(None, description="The project's flakiness threshold")


class FlakinessPage(Page[FlakyTest]):
    """Flaky tests, highest score first, one page, with the project's summary."""

    summary: FlakinessSummary | None = None


FlakinessReport = FlakinessPage  # the earlier name


class QuarantineResult(Model):
    test_id: str = Field(description="The test case (tc_...)")
    is_quarantined: bool
    reason: str | None = None
    owner: str | None = None
    quarantined_by: str | None = None
    expires_at: str | None = None
    updated_at: str | None = None


class ErrorGroup(Model):
    """Failures sharing a normalised error (numbers, ids, paths and times stripped)."""

    fingerprint: str
    message: str
    error_type: str | None = None
    occurrences: int = Field(description="Failures in the period asked for")
    total_occurrences: int | None = None
    affected_tests: int | None = None
    first_seen: str | None = None
    last_seen: str | None = None


class TrendPoint(Model):
    key: str = Field(description="The day (YYYY-MM-DD) or the run id")
    at: str | None = None
    runs: int
    total_tests: int
    passed_tests: int
    failed_tests: int
    skipped_tests: int
    flaky_tests: int
    pass_rate: float
    duration: int


class SlowTest(Model):
    test_id: str = Field(description="The test case (tc_...)")
    full_title: str
    file_path: str | None = None
    avg_duration: int


class Trends(Model):
    project_id: str
    group_by: str
    branch: str | None = None
    days: int
    points: list[TrendPoint]
    slowest_tests: list[SlowTest] = []


class CompareItem(Model):
    test_case_id: str
    test_id: str = Field(description="The result in the compared run (or the base run, for "
                         "removed tests)")
    full_title: str
    file_path: str | None = None
    status: str
    base_status: str | None = None


class Comparison(Model):
    """A run (head) against a base run: what a pull request needs to know."""

    run_id: str
    #: None when no base was named and the server found none (then the lists are empty)
    base_run_id: str | None
    base_branch: str | None = None
    #: requested, previousOnBranch, defaultBranch (a new branch: the default branch's newest
    #: earlier run) or none
    base_reason: str | None = None
    #: the base run as people name it (its title, else CI build, else branch and commit)
    base_title: str | None = None
    summary: dict[str, int]
    new_failures: list[CompareItem] = []
    fixed: list[CompareItem] = []
    still_failing: list[CompareItem] = []
    new_tests: list[CompareItem] = []
    removed_tests: list[CompareItem] = []


class Artifact(Model):
    """An artifact (screenshot, video, trace, report); `url` is a signed link until
    `expires_at`. `test_id` is the test it belongs to (None: the whole run)."""

    id: str
    type: str
    project_id: str | None = None
    run_id: str | None = None
    test_id: str | None = None
    test_status: str | None = None
    sha256: str | None = None
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


class Delivery(Model):
    """One delivery of a webhook event: `status` pending, succeeded or failed."""

    id: str
    webhook_id: str | None = None
    event: str | None = None
    status: str | None = None
    attempts: int | None = None
    response_code: int | None = None
    latency_ms: int | None = None
    last_error: str | None = None
    payload: dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Record(Model):
    """A resource whose shape this SDK does not pin (executed-run plans): its fields are kept
    as sent."""

    id: str | None = None


# Executed runs ------------------------------------------------------------------------------

class EnvValue(Model):
    value: str | None = Field(None, description="null for a secret (never returned).")
    secret: bool = False


class Plan(Model):
    """How to run a project's suite: `command` (argv), `source`, `env`, timeouts, reports.
    `code_version` goes up with every change of what it runs; send it back as `if_match`."""

    id: str
    project_id: str
    name: str
    command: list[str] | None = None
    source: dict[str, Any] | None = None
    env: dict[str, EnvValue] = {}
    timeout_seconds: int | None = None
    queue_timeout_seconds: int | None = None
    report_paths: list[str] = []
    max_concurrent_runs: int | None = None
    schedule: str | None = None
    next_run_at: str | None = None
    sandbox: str | None = None
    network: bool | None = None
    code_version: int
    status: str = Field(description="draft, ready, queued, running, passed, failed, blocked, "
                        "cancelled or unknown")
    created_at: str | None = None
    updated_at: str | None = None


class LogChunk(Model):
    """A window of a run's output: `text` from byte `offset`; pass `next_offset` back."""

    run_id: str
    text: str
    offset: int
    next_offset: int
    complete: bool = Field(description="The run has finished and this is the end of its log.")


class SignalSent(Model):
    run_id: str
    signal: str
    queued: bool = True


class ProjectUsage(Model):
    project_id: str | None = None
    used_seconds: int | None = None


class Usage(Model):
    """A team's runner-seconds this calendar month (UTC); `budget_seconds` null: no limit."""

    team_id: str
    month: str
    budget_seconds: int | None = None
    used_seconds: int
    left_seconds: int | None = None
    projects: list[ProjectUsage] = []
