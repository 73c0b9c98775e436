"""The database schema (SQLAlchemy Core). Alembic migrations in `migrations/` must produce
exactly this; `tests/test_migrations.py` compares the two."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

Json = JSON().with_variant(JSONB(), "postgresql")


def _id(prefix_len: int = 40) -> Column:
    return Column("id", String(prefix_len), primary_key=True)


def _fk(name: str, target: str, nullable: bool = False, ondelete: str = "CASCADE") -> Column:
    return Column(name, String(40), ForeignKey(target, ondelete=ondelete), nullable=nullable)


users = Table(
    "users", metadata,
    _id(),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# Dashboard cookie sessions and personal tokens (`rlu_...`) are both sign-ins of a user.
sessions = Table(
    "sessions", metadata,
    _id(),
    _fk("user_id", "users.id"),
    Column("kind", String(10), nullable=False),  # cookie | token
    Column("lookup", String(16), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
)

teams = Table(
    "teams", metadata,
    _id(),
    Column("name", String(200), nullable=False),
    # runner-seconds of executed runs a calendar month may use (executions/); NULL: no limit
    Column("execution_budget_seconds", BigInteger),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

team_members = Table(
    "team_members", metadata,
    _id(),
    _fk("team_id", "teams.id"),
    _fk("user_id", "users.id"),
    Column("role", String(10), nullable=False),
    Column("joined_at", DateTime, nullable=False),
    UniqueConstraint("team_id", "user_id"),
    Index(None, "user_id"),
)

invitations = Table(
    "invitations", metadata,
    _id(),
    _fk("team_id", "teams.id"),
    Column("email", String(320), nullable=False),
    Column("role", String(10), nullable=False),
    Column("status", String(10), nullable=False),  # pending | accepted | revoked
    Column("secret_hash", String(64), nullable=False),
    _fk("invited_by", "users.id", nullable=True, ondelete="SET NULL"),
    Column("expires_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("accepted_at", DateTime),
    Index(None, "team_id"),
)

projects = Table(
    "projects", metadata,
    _id(),
    _fk("team_id", "teams.id"),
    Column("name", String(200), nullable=False),
    Column("data_retention_days", Integer, nullable=False, default=90),
    Column("flakiness_threshold", Float, nullable=False, default=0.3),
    Column("auto_quarantine_enabled", Boolean, nullable=False, default=True),
    # days to keep artifacts by their test's outcome: {"passed": 7, "failed": 30, ...};
    # an outcome not named keeps them as long as the run (dataRetentionDays)
    Column("artifact_retention_days", Json),
    Column("settings_updated_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index(None, "team_id"),
)

api_keys = Table(
    "api_keys", metadata,
    _id(),
    _fk("project_id", "projects.id"),
    _fk("created_by", "users.id"),
    Column("name", String(200), nullable=False),
    Column("lookup", String(16), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("scopes", Json, nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("expires_at", DateTime),
    Column("last_used_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index(None, "project_id"),
)

# One row per (credential, key): claimed before the request runs, completed in the same
# transaction as the request's own writes (so the effect and the record exist together).
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(10), nullable=False),  # running | done
    Column("response_status", Integer),
    Column("response_headers", Json),
    Column("response_body", LargeBinary),
    Column("created_at", DateTime, nullable=False),
    Column("locked_at", DateTime, nullable=False),
    Index(None, "created_at"),
)



# -- results -------------------------------------------------------------------------------

runs = Table(
    "runs", metadata,
    _id(),
    _fk("project_id", "projects.id"),
    Column("status", String(12), nullable=False),  # running | passed | failed | cancelled
    Column("source", String(20), nullable=False),
    Column("branch", String(255)),
    Column("commit_sha", String(64)),
    Column("commit_message", Text),
    Column("commit_author", String(255)),
    Column("ci_provider", String(64)),
    Column("ci_build_id", String(255)),
    Column("ci_build_url", String(2048)),
    Column("playwright_version", String(32)),
    Column("workers", Integer),
    Column("shard_current", Integer),
    Column("shard_total", Integer),
    Column("shards_done", Json),  # shard numbers that reported completion
    # shard numbers that had not reported when the shard timeout completed the run
    Column("missing_shards", Json),
    Column("browser", String(64)),
    Column("os", String(64)),
    Column("viewport", String(32)),
    Column("hostname", String(255)),
    Column("run_title", String(500)),
    Column("tags", Json),
    Column("grep_patterns", Json),
    Column("total_tests", Integer, nullable=False, default=0),
    Column("passed_tests", Integer, nullable=False, default=0),
    Column("failed_tests", Integer, nullable=False, default=0),
    Column("skipped_tests", Integer, nullable=False, default=0),
    Column("flaky_tests", Integer, nullable=False, default=0),
    Column("duration", BigInteger, nullable=False, default=0),  # ms
    # the verdict CI gates on: failures of cases quarantined when the run started don't count
    Column("verdict", String(12)),
    Column("quarantined_failures", Integer, nullable=False, default=0),
    Column("stats_applied", Boolean, nullable=False, default=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("completed_at", DateTime),
    # Executed runs (executions/): a plan's run, queued -> running -> passed | failed |
    # blocked | cancelled, held by a runner under a lease it renews by heartbeat.
    # (no foreign key: a run outlives its plan, and SQLite could add one only by copying runs)
    Column("plan_id", String(40)),
    Column("queued_at", DateTime),
    Column("started_at", DateTime),  # a runner took it (usage counts from here)
    Column("process_started_at", DateTime),  # the command's process began
    Column("finished_at", DateTime),
    Column("exit_code", Integer),
    Column("runner_id", String(100)),
    Column("blocked_reason", String(40)),
    Column("cancel_reason", String(40)),
    Column("cancel_requested_at", DateTime),
    Column("pending_signals", Json),  # signal names the runner has not picked up yet
    Column("lease_token", String(40)),
    Column("lease_until", DateTime),
    Column("attempt", Integer),  # 1, or 2 once retried after its runner was lost
    # runner-seconds of attempts whose runner was lost (counted in the team's usage)
    Column("lost_runner_seconds", Float),
    Column("run_env", Json),  # the trigger's env overrides (secret values sealed)
    Column("git_ref", String(255)),
    Column("log_size", BigInteger),
    Index(None, "project_id", "created_at"),
    Index(None, "project_id", "ci_build_id"),
    Index(None, "plan_id", "status"),
    Index(None, "status", "queued_at"),
)

# The stable identity of a test across runs: project + file + full title (+ variant).
test_cases = Table(
    "test_cases", metadata,
    _id(),
    _fk("project_id", "projects.id"),
    Column("identity", String(40), nullable=False),  # hash of file, full title, variant
    Column("file_path", String(1000)),
    Column("full_title", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("variant", String(255)),
    Column("created_at", DateTime, nullable=False),
    # The status the lists filter by, kept up to date when a run completes
    # (intelligence/stats.py); it changes only when a case crosses the flakiness threshold or
    # starts or stops failing every time. A case is created `stable`, the status its first
    # pass or failure gives, and reads as `new` while it has no `test_case_windows` row (it
    # never ran; migration 0014), so a first import writes no status. What moves with runs
    # (the window, the score as its evidence ages, the counts) lives in `window_buckets` and
    # the narrow `test_case_windows`, so that a run rewrites short rows, not these wide ones.
    # On PostgreSQL the table's pages are half filled (migration 0007) so that rewriting the
    # status leaves the row on its page.
    Column("status", String(10), nullable=False, default="stable"),  # stable|flaky|broken
    Column("tags", Json),
    Column("is_quarantined", Boolean, nullable=False, default=False),
    Column("quarantine_reason", Text),
    Column("quarantine_owner", String(255)),
    _fk("quarantined_by", "users.id", nullable=True, ondelete="SET NULL"),
    Column("quarantined_at", DateTime),
    Column("quarantine_expires_at", DateTime),
    # a person quarantined or released it: automatic quarantine leaves it alone from then on
    Column("quarantine_manual", Boolean, nullable=False, default=False),
    # Where the case's window lives: a slot of a bucket of its file (`window_buckets`), given
    # when the case is created. The import reads it with the case, so that the run's
    # statistics need no second read of their cases (migration 0013). No foreign key: a
    # bucket goes only with its project, and so do its cases.
    Column("bucket_id", Integer, nullable=False),
    Column("slot", Integer, nullable=False),
    UniqueConstraint("project_id", "identity"),
    Index(None, "project_id", "is_quarantined"),
    Index(None, "quarantined_by"),
    Index(None, "bucket_id"),  # the cases of some buckets (the slowest tests)
)

# A case's window, the newest 50 results that ran packed in constant space
# (intelligence/scoring.py CaseWindow, 341 bytes), and the time of its last result live in a
# slot of a bucket: the windows of one test file's cases side by side in one value
# (`BUCKET_SLOTS` cases at most; a larger file takes further parts). Every run moves every
# window it touches, so a run rewrites a few buckets, not one row per case (migration 0012);
# the total runs, the average duration and the last run are read from the slot's header.
# A slot is given to a case when it is created; the state grows as windows are written (a
# slot past its end holds an empty window).
window_buckets = Table(
    "window_buckets", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _fk("project_id", "projects.id"),
    Column("file_path", String(1000), nullable=False),  # '' for cases without a file
    Column("part", Integer, nullable=False),
    Column("slots", Integer, nullable=False),  # slots given, each `scoring.SLOT` bytes
    Column("state", LargeBinary, nullable=False),
    UniqueConstraint("project_id", "file_path", "part"),
)

# The figures of a case that change only when its outcomes do (a failure comes or leaves the
# window, a flaky result, a pass after a failure, evidence that ages): readers filter and
# sort by them in SQL, and most cases of most runs leave them alone (a pass after a pass).
# A case that never ran has no row here (its score is 0). The case id is not checked against
# `test_cases` (migration 0015): only `stats.apply_run` inserts a row, for a case of the run it
# applies, and the rows go with their project (its foreign key cascades), as cases do.
test_case_windows = Table(
    "test_case_windows", metadata,
    Column("test_case_id", String(40), primary_key=True),
    _fk("project_id", "projects.id"),
    Column("flaky_runs", Integer, nullable=False, default=0),
    Column("failed_runs", Integer, nullable=False, default=0),
    Column("last_status", String(10)),
    Column("last_flaky_at", DateTime),
    Column("last_failed_at", DateTime),
    Column("flakiness_score", Float, nullable=False, default=0.0),
    # the flakiness list: a project's cases with evidence in their window
    Index(None, "project_id", "flaky_runs"),
)

quarantine_events = Table(
    "quarantine_events", metadata,
    _id(),
    _fk("project_id", "projects.id"),
    _fk("test_case_id", "test_cases.id"),
    Column("action", String(12), nullable=False),  # quarantine | unquarantine
    Column("automatic", Boolean, nullable=False, default=False),
    Column("reason", Text),
    Column("owner", String(255)),
    Column("expires_at", DateTime),
    _fk("actor_id", "users.id", nullable=True, ondelete="SET NULL"),
    Column("created_at", DateTime, nullable=False),
    Index(None, "test_case_id", "created_at"),
    Index(None, "actor_id"),
)

suites = Table(
    "suites", metadata,
    _id(),
    _fk("run_id", "runs.id"),
    _fk("project_id", "projects.id"),
    Column("title", String(1000), nullable=False),
    Column("file_path", String(1000), nullable=False, default=""),
    _fk("parent_suite_id", "suites.id", nullable=True),
    # NULL never equals NULL in a unique index: the parent as a plain string keeps it unique
    Column("parent_key", String(40), nullable=False, default=""),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("run_id", "title", "file_path", "parent_key"),
    Index(None, "parent_suite_id"),
)

test_results = Table(
    "test_results", metadata,
    _id(),
    _fk("run_id", "runs.id"),
    _fk("project_id", "projects.id"),
    _fk("test_case_id", "test_cases.id"),
    _fk("suite_id", "suites.id", nullable=True, ondelete="SET NULL"),
    Column("title", Text, nullable=False),
    Column("full_title", Text, nullable=False),
    Column("file_path", String(1000)),
    Column("line_number", Integer),
    Column("variant", String(255)),
    Column("status", String(10), nullable=False),  # passed | failed | skipped | flaky
    Column("duration", BigInteger, nullable=False),
    Column("retries", Integer, nullable=False, default=0),
    Column("attempt", Integer, nullable=False, default=1),
    Column("is_flaky", Boolean, nullable=False, default=False),
    Column("tags", Json),
    Column("annotations", Json),
    Column("error", Json),
    Column("steps", Json),
    Column("stdout", Text),
    Column("stderr", Text),
    Column("extra", Json),
    Column("error_fingerprint", String(40)),
    Column("created_at", DateTime, nullable=False),
    # A run's results by status; it also holds what a run's statistics and its counts read
    # of each result, so that SQLite reads those from the index alone (migration 0011).
    Index(None, "run_id", "status", "test_case_id", "duration", "created_at"),
    Index(None, "suite_id"),  # deleting suites sets this to NULL: without it, a full scan
    Index(None, "test_case_id", "created_at"),
    Index(None, "project_id", "created_at"),
)


# Failures grouped by their normalised error, kept up to date when runs complete.
error_groups = Table(
    "error_groups", metadata,
    _fk("project_id", "projects.id"),
    Column("fingerprint", String(40), nullable=False),
    Column("message", Text, nullable=False),
    Column("error_type", String(255)),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("occurrences", Integer, nullable=False),
    PrimaryKeyConstraint("project_id", "fingerprint"),
    Index(None, "project_id", "last_seen"),
)

error_group_cases = Table(
    "error_group_cases", metadata,
    _fk("project_id", "projects.id"),
    Column("fingerprint", String(40), nullable=False),
    _fk("test_case_id", "test_cases.id"),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("occurrences", Integer, nullable=False),
    PrimaryKeyConstraint("project_id", "fingerprint", "test_case_id"),
    Index(None, "test_case_id"),
)


# -- artifacts, webhooks and background jobs ------------------------------------------------

artifacts = Table(
    "artifacts", metadata,
    _id(),
    _fk("project_id", "projects.id"),
    _fk("run_id", "runs.id"),
    _fk("test_id", "test_results.id", nullable=True),
    Column("type", String(12), nullable=False),  # screenshot | video | trace | report
    Column("file_name", String(255), nullable=False),  # as uploaded, for display only
    Column("storage_key", String(255), nullable=False, unique=True),  # server-generated
    Column("file_size", BigInteger, nullable=False),
    Column("mime_type", String(100), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("test_status", String(10)),  # the test's outcome, for per-outcome retention
    Column("created_at", DateTime, nullable=False),
    Index(None, "run_id"),
    Index(None, "test_id"),
    Index(None, "project_id", "created_at"),
)

webhooks = Table(
    "webhooks", metadata,
    _id(),
    _fk("project_id", "projects.id"),
    Column("url", String(2048), nullable=False),
    Column("events", Json, nullable=False),
    Column("headers", Json, nullable=False),
    Column("secret", String(200), nullable=False),  # whsec_...: signs deliveries
    Column("is_active", Boolean, nullable=False, default=True),
    Column("disabled_reason", String(255)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index(None, "project_id"),
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    _id(),
    _fk("webhook_id", "webhooks.id"),
    _fk("project_id", "projects.id"),
    Column("event", String(40), nullable=False),
    Column("payload", Json, nullable=False),
    Column("status", String(12), nullable=False),  # pending | succeeded | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("response_code", Integer),
    Column("latency_ms", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index(None, "webhook_id", "created_at"),
    Index(None, "project_id"),
)

# The durable outbox: a job is a row written in the same transaction as the change that
# causes it, claimed by a worker under a lease (FOR UPDATE SKIP LOCKED on PostgreSQL).
jobs = Table(
    "jobs", metadata,
    _id(),
    Column("kind", String(40), nullable=False),
    Column("payload", Json, nullable=False),
    Column("status", String(12), nullable=False),  # queued | running | done | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=10),
    Column("run_after", DateTime, nullable=False),
    Column("locked_by", String(100)),
    Column("lease_until", DateTime),
    Column("last_error", Text),
    Column("errors", Json),  # the history of failed attempts
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index(None, "status", "run_after"),
    Index(None, "status", "lease_until"),
)


# -- executed runs (executions/) ----------------------------------------------------------

# How to execute a project's suite. `env` maps a name to {"value": ...} or, for a secret,
# {"sealed": ...} (kit/secrets.py SecretBox): a secret is never returned.
plans = Table(
    "plans", metadata,
    _id(),
    _fk("project_id", "projects.id"),
    Column("name", String(200), nullable=False),
    Column("command", Json),  # argv list; NULL: a draft
    Column("source", Json),
    Column("env", Json, nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("queue_timeout_seconds", Integer, nullable=False),
    Column("report_paths", Json, nullable=False),
    Column("max_concurrent_runs", Integer, nullable=False),
    Column("schedule", String(120)),
    Column("sandbox", String(12), nullable=False),  # auto | bubblewrap | none
    Column("network", Boolean, nullable=False),
    # resource limits the plan sets: {cpuSeconds, memoryMb, openFiles, outputBytes}, each
    # absent or null for the server's default (REDLINE_RUN_DEFAULT_*); NULL: all defaults
    Column("limits", Json),
    Column("code_version", Integer, nullable=False),
    # the status of its latest completed run that was not cancelled (NULL: none yet)
    Column("last_status", String(12)),
    Column("next_due_at", DateTime),  # the schedule's next due time
    _fk("created_by", "users.id", nullable=True, ondelete="SET NULL"),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index(None, "project_id"),
    Index(None, "next_due_at"),
    Index(None, "created_by"),
)

# A schedule's due time fired once, whatever the number of replicas: the key is unique.
schedule_fires = Table(
    "schedule_fires", metadata,
    _fk("plan_id", "plans.id"),
    Column("due_at", DateTime, nullable=False),
    Column("run_id", String(40)),
    Column("created_at", DateTime, nullable=False),
    PrimaryKeyConstraint("plan_id", "due_at"),
)

# Tokens of runners (`rlr_...`): a team's (or one project's), or the instance's own for the
# runner embedded in `redline serve` (team_id NULL). Stored as a hash, shown once.
runner_tokens = Table(
    "runner_tokens", metadata,
    _id(),
    _fk("team_id", "teams.id", nullable=True),
    _fk("project_id", "projects.id", nullable=True),
    Column("name", String(200), nullable=False),
    Column("lookup", String(16), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("last4", String(4), nullable=False),
    _fk("created_by", "users.id", nullable=True, ondelete="SET NULL"),
    Column("created_at", DateTime, nullable=False),
    Column("last_used_at", DateTime),
    Column("revoked_at", DateTime),
    Index(None, "team_id"),
    Index(None, "project_id"),
    Index(None, "created_by"),
)

# A run's output as the runner streamed it: chunks at byte offsets, appended once each.
run_logs = Table(
    "run_logs", metadata,
    _fk("run_id", "runs.id"),
    Column("offset", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("run_id", "offset"),
)
