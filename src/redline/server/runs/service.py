"""Runs: one execution of a suite, with aggregates that always come from its results.

Reported runs go `running` -> `passed` | `failed` | `cancelled`. Counts are computed from the
stored results (one GROUP BY per change, never a query per result), so a run's counts equal
what the runner printed for the same report. A client that reports only aggregates (no
results) may PATCH the counts itself.

Shards: runs created with the same `(projectId, ciBuildId)` and a `shardTotal` are one run;
each shard reports completion (`PATCH` with `shardCurrent`, or an import of that shard), and
the run completes when all have.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from redline.server.auth import Principal, require_in_project, require_project
from redline.server.http_errors import ApiError, validation_error
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_id
from redline.server.runs import repository as repo
from redline.server.runs.completion import complete_run
from redline.server.runs.scope import resolve_project
from redline.server.tables import artifacts, projects
from redline.server.worker import outbox

TERMINAL = {"passed", "failed", "cancelled"}
METADATA_FIELDS = ("branch", "commit_sha", "commit_message", "commit_author", "ci_provider",
                   "ci_build_id", "ci_build_url", "playwright_version", "workers",
                   "shard_current", "shard_total", "browser", "os", "viewport", "hostname",
                   "run_title")


def pass_rate(passed: int, total: int) -> float:
    return round(passed / total * 100, 2) if total else 0.0


def execution_json(row) -> dict:
    """The executed-run fields every run carries (null for a reported or imported run)."""
    return {"planId": row.plan_id, "queuedAt": iso(row.queued_at),
            "startedAt": iso(row.started_at), "finishedAt": iso(row.finished_at),
            "exitCode": row.exit_code, "runnerId": row.runner_id,
            "blockedReason": row.blocked_reason, "cancelReason": row.cancel_reason,
            "cancelRequested": row.cancel_requested_at is not None, "attempt": row.attempt}


def run_json(row) -> dict:
    return {
        "id": row.id, "projectId": row.project_id, "status": row.status, "source": row.source,
        "branch": row.branch, "commitSha": row.commit_sha, "commitMessage": row.commit_message,
        "commitAuthor": row.commit_author, "ciProvider": row.ci_provider,
        "ciBuildId": row.ci_build_id, "ciBuildUrl": row.ci_build_url,
        "playwrightVersion": row.playwright_version, "workers": row.workers,
        "shardCurrent": row.shard_current, "shardTotal": row.shard_total,
        "browser": row.browser, "os": row.os, "viewport": row.viewport,
        "hostname": row.hostname, "totalTests": row.total_tests,
        "passedTests": row.passed_tests, "failedTests": row.failed_tests,
        "skippedTests": row.skipped_tests, "flakyTests": row.flaky_tests,
        "passRate": pass_rate(row.passed_tests, row.total_tests), "duration": row.duration,
        "runTitle": row.run_title, "tags": row.tags or [], "grepPatterns": row.grep_patterns or [],
        "verdict": row.verdict, "quarantinedFailures": row.quarantined_failures,
        "missingShards": row.missing_shards,
        **execution_json(row),
        "createdAt": iso(row.created_at), "updatedAt": iso(row.updated_at),
        "completedAt": iso(row.completed_at),
    }


def run_summary_json(row) -> dict:
    return {"id": row.id, "projectId": row.project_id, "status": row.status,
            "source": row.source, "branch": row.branch, "commitSha": row.commit_sha,
            "ciBuildId": row.ci_build_id, "ciBuildUrl": row.ci_build_url,
            "runTitle": row.run_title,
            "totalTests": row.total_tests, "passedTests": row.passed_tests,
            "failedTests": row.failed_tests, "skippedTests": row.skipped_tests,
            "flakyTests": row.flaky_tests,
            "passRate": pass_rate(row.passed_tests, row.total_tests),
            "duration": row.duration, "verdict": row.verdict,
            "quarantinedFailures": row.quarantined_failures, **execution_json(row),
            "createdAt": iso(row.created_at), "completedAt": iso(row.completed_at)}


def load_run(conn: Connection, principal: Principal, run_id: str, scope: str,
             for_update: bool = False):
    """The run, if the caller may act on it with `scope`; another tenant's is NOT_FOUND."""
    row = repo.get_run(conn, run_id, for_update)
    return require_in_project(conn, principal, row, scope, "Run", run_id)


def run_row(conn: Connection, run_id: str):
    """A run's row, for a caller that has checked access already (None: no such run)."""
    return repo.get_run(conn, run_id)


def find_open_shard_run(conn: Connection, project_id: str, ci_build_id: str):
    """The newest run of a CI build (the one its shards join), locked on PostgreSQL."""
    return repo.find_open_shard_run(conn, project_id, ci_build_id)


def set_duration(conn: Connection, run_id: str, duration: int) -> None:
    repo.update_run(conn, run_id, duration=duration)


def create_run(conn: Connection, principal: Principal, fields: dict) -> tuple[dict, bool]:
    """Create a run, or join the open run of the same sharded CI build. Returns (run, created)."""
    project_id = resolve_project(principal, fields.pop("project_id", None))
    require_project(conn, principal, project_id, "runs:write")
    if fields.get("shard_total") and fields.get("ci_build_id"):
        existing = repo.find_open_shard_run(conn, project_id, fields["ci_build_id"])
        if existing is not None and existing.shard_total:
            # a shard joining is news: the shard timeout counts from the last news
            repo.update_run(conn, existing.id, updated_at=utcnow())
            return run_json(repo.get_run(conn, existing.id)), False
    run_id = new_run(conn, project_id, fields)
    return run_json(repo.get_run(conn, run_id)), True


def new_run(conn: Connection, project_id: str, fields: dict) -> str:
    now = utcnow()
    run_id = new_id("run")
    status = fields.pop("status", "running")
    values = {name: fields.get(name) for name in METADATA_FIELDS}
    repo.insert_run(conn, id=run_id, project_id=project_id, status="running",
                    source=fields.get("source") or "api", tags=fields.get("tags") or [],
                    grep_patterns=fields.get("grep_patterns") or [], shards_done=[],
                    total_tests=0, passed_tests=0, failed_tests=0, skipped_tests=0,
                    flaky_tests=0, duration=0, created_at=now, updated_at=now, **values)
    if status in TERMINAL:
        finish(conn, run_id, status)
    return run_id


def refresh_counts(conn: Connection, run_id: str, added_duration: int = 0) -> None:
    """Recompute a run's aggregates from its results (one GROUP BY)."""
    counts = repo.status_counts(conn, run_id)
    get = lambda status: counts.get(status, (0, 0))[0]
    values = {"total_tests": sum(c for c, _ in counts.values()), "passed_tests": get("passed"),
              "failed_tests": get("failed"), "skipped_tests": get("skipped"),
              "flaky_tests": get("flaky"), "updated_at": utcnow()}
    if added_duration:
        run = repo.get_run(conn, run_id)
        values["duration"] = run.duration + added_duration
    repo.update_run(conn, run_id, **values)


def finish(conn: Connection, run_id: str, requested: str | None = None,
           outcomes: list | None = None) -> None:
    """Complete a run: its status, statistics, quarantine, error groups and events
    (runs/completion.py). `outcomes`: all of the run's results, from the import that made it
    (`stats.apply_run`)."""
    complete_run(conn, run_id, requested, outcomes)


def complete_shard(conn: Connection, run_id: str, shard: int | None) -> bool:
    """Record that a shard finished; True when that completes the run."""
    run = repo.get_run(conn, run_id)
    if not run.shard_total or shard is None:
        return True
    done = sorted(set(run.shards_done or []) | {shard})
    repo.update_run(conn, run_id, shards_done=done, updated_at=utcnow())
    return len(done) >= run.shard_total


def list_runs(conn: Connection, principal: Principal, project_id: str | None,
              status: str | None, branch: str | None, page,
              plan_id: str | None = None) -> dict:
    project_id = resolve_project(principal, project_id)
    require_project(conn, principal, project_id, "runs:read")
    rows, total = repo.list_runs(conn, project_id, status, branch, page.limit, page.offset,
                                 plan_id)
    return page.page([run_summary_json(r) for r in rows], total)


def get_run(conn: Connection, principal: Principal, run_id: str) -> dict:
    return run_json(load_run(conn, principal, run_id, "runs:read"))


def update_run(conn: Connection, principal: Principal, run_id: str, changes: dict) -> dict:
    run = load_run(conn, principal, run_id, "runs:write", for_update=True)
    status = changes.pop("status", None)
    shard = changes.pop("shard_current", None)
    counts = {k: v for k, v in changes.items() if v is not None}
    duration = counts.pop("duration", None)
    if counts:
        stored = repo.status_counts(conn, run_id)
        if stored:
            # Results are the truth; reported counts must agree with them.
            actual = {"total_tests": sum(c for c, _ in stored.values())} | {
                f"{s}_tests": stored.get(s, (0, 0))[0]
                for s in ("passed", "failed", "skipped", "flaky")}
            wrong = [k for k, v in counts.items() if actual[k] != v]
            if wrong:
                raise validation_error(
                    _camel(wrong[0]), "disagrees_with_results",
                    f"{_camel(wrong[0])} is {counts[wrong[0]]} but the run's results say "
                    f"{actual[wrong[0]]}; counts come from the stored results")
        else:
            repo.update_run(conn, run_id, **counts)
    if duration is not None:
        repo.update_run(conn, run_id, duration=duration)
    if status is not None and status != run.status:
        if run.status in TERMINAL and status == "running":
            raise ApiError("CONFLICT", f"The run is {run.status} already; it cannot restart",
                           {"reason": "completed"})
        if status in TERMINAL and run.status not in TERMINAL and (
                status == "cancelled" or complete_shard(conn, run_id, shard)):
            finish(conn, run_id, status)
    repo.update_run(conn, run_id, updated_at=utcnow())
    row = repo.get_run(conn, run_id)
    return {"id": row.id, "status": row.status, "totalTests": row.total_tests,
            "passedTests": row.passed_tests, "failedTests": row.failed_tests,
            "skippedTests": row.skipped_tests, "flakyTests": row.flaky_tests,
            "duration": row.duration, "updatedAt": iso(row.updated_at)}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def queue_blob_deletions(conn: Connection, condition) -> int:
    """Before rows of `artifacts` go (with a run or a project), queue the deletion of their
    blobs through the outbox, in the same transaction: the files go only if the rows do."""
    keys = conn.execute(select(artifacts.c.storage_key).where(condition)).scalars().all()
    for key in keys:
        outbox.enqueue(conn, "artifacts.delete_blob", {"storageKey": key})
    return len(keys)


def queue_project_blob_deletions(conn: Connection, project_id: str) -> int:
    """`queue_blob_deletions` of a project's artifacts (before the project goes)."""
    return queue_blob_deletions(conn, artifacts.c.project_id == project_id)


def queue_team_blob_deletions(conn: Connection, team_id: str) -> int:
    """`queue_blob_deletions` of the artifacts of a team's projects (before the team goes)."""
    return queue_blob_deletions(conn, artifacts.c.project_id.in_(
        select(projects.c.id).where(projects.c.team_id == team_id)))


def delete_run(conn: Connection, principal: Principal, run_id: str) -> None:
    """Deletes the run with its results, suites and artifacts (admins: `project:admin`)."""
    load_run(conn, principal, run_id, "project:admin")
    queue_blob_deletions(conn, artifacts.c.run_id == run_id)
    repo.delete_run(conn, run_id)
