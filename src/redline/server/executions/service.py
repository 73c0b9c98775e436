"""Executed runs (DESIGN.md section 8): plans, the runs triggered from them, runners that take
them under a lease, logs, credits and schedules.

- A plan's run is a row of `runs` (status `queued`) with the executed-run columns. A runner
  claims it (`running`) under a lease it renews by heartbeat; the heartbeat's answer carries a
  cancel request and the signals to deliver. The runner streams the log (chunks at byte
  offsets: a chunk sent twice is stored once), uploads the reports its command wrote (the
  import service stores them in the run) and finishes it with the exit code.
- `finish` decides the status: `cancelled` when it was cancelled; `failed` with
  `cancelReason: "timeout"` on a timeout; `blocked` when there is no real verdict (no source,
  no process, no report, no results); else the run's completion (runs/completion.py) by its
  results, `failed` whatever they say when the command exited non-zero.
- A lease that expires (the runner died) is swept (`sweep`, the worker's loop): the run is
  queued again once, then `failed` with `cancelReason: "runner_lost"`.
- Secret env values are sealed (kit/secrets.py) and opened only for the runner that runs them.
"""

from __future__ import annotations

import io
import re
import secrets as random_tokens
import tempfile
from datetime import datetime, timedelta

from croniter import croniter
from sqlalchemy import Connection

from redline.server.artifacts import service as artifacts
from redline.server.auth import (
    Principal,
    require_in_project,
    require_project,
    require_team_role,
    require_user,
)
from redline.server.executions import repository as repo
from redline.server.http_errors import ApiError, not_found, validation_error
from redline.server.imports import service as imports
from redline.server.kit import tokens
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_id
from redline.server.kit.secrets import SecretBox, SecretError, box_for
from redline.server.runs import service as runs
from redline.server.runs.scope import resolve_project
from redline.server.webhooks import service as webhooks
from redline.server.worker import outbox

RUNNER_TOKEN_PREFIX = "rlr_"
SIGNALS = ("INT", "TERM", "HUP", "KILL", "QUIT", "USR1", "USR2")
TERMINAL = ("passed", "failed", "blocked", "cancelled")
# What the plan runs: a change of any of these bumps its codeVersion.
RUN_FIELDS = ("command", "source", "env", "timeout_seconds", "report_paths", "sandbox",
              "network", "limits")
# a plan's limits: its field -> the settings of its default and its maximum
LIMITS = {"cpuSeconds": ("run_default_cpu_seconds", "run_max_cpu_seconds"),
          "memoryMb": ("run_default_memory_mb", "run_max_memory_mb"),
          "openFiles": ("run_default_open_files", "run_max_open_files"),
          "outputBytes": ("run_default_output_bytes", "run_max_output_bytes")}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_LOG_READ = 1024 * 1024
KEEP_LOG = "executions.keep_log"
KEEP_LOG_CHUNK = 4 * 1024 * 1024


def secret_box(settings) -> SecretBox:
    return box_for(settings.resolved_secret_key, "plan-env")


# -- plans -----------------------------------------------------------------------------------

def _plan_status(row, flights: list[tuple[str, str]]) -> str:
    if not row.command:
        return "draft"
    if flights:
        return "running" if any(status == "running" for _, status in flights) else "queued"
    return row.last_status or "ready"


def _env_json(env: dict) -> dict:
    return {name: ({"value": None, "secret": True} if "sealed" in entry
                   else {"value": entry.get("value"), "secret": False})
            for name, entry in (env or {}).items()}


def plan_json(row, flights: list[tuple[str, str]]) -> dict:
    return {"id": row.id, "projectId": row.project_id, "name": row.name,
            "command": row.command, "source": row.source, "env": _env_json(row.env),
            "timeoutSeconds": row.timeout_seconds,
            "queueTimeoutSeconds": row.queue_timeout_seconds,
            "reportPaths": list(row.report_paths or []),
            "maxConcurrentRuns": row.max_concurrent_runs, "schedule": row.schedule,
            "nextRunAt": iso(row.next_due_at), "sandbox": row.sandbox,
            "network": row.network,
            "limits": {name: (row.limits or {}).get(name) for name in LIMITS},
            "codeVersion": row.code_version,
            "status": _plan_status(row, flights), "createdAt": iso(row.created_at),
            "updatedAt": iso(row.updated_at)}


def seal_env(env: dict, box: SecretBox, stored: dict | None = None,
             field: str = "env") -> dict:
    """The env as stored: {"value": v} or, for a secret, {"sealed": ...}. A secret sent
    without a value keeps the stored one (so a plan read back can be sent back)."""
    sealed: dict = {}
    for name, entry in env.items():
        if not _ENV_NAME.match(name):
            raise validation_error(f"{field}.{name}", "invalid", "Env names are letters, "
                                   "digits and _, not starting with a digit")
        if isinstance(entry, str):
            sealed[name] = {"value": entry}
        elif entry.value is None:
            kept = (stored or {}).get(name, {})
            if not entry.secret or "sealed" not in kept:
                raise validation_error(f"{field}.{name}", "required",
                                       f"Env {name} needs a value")
            sealed[name] = kept
        elif entry.secret:
            sealed[name] = {"sealed": box.seal(entry.value)}
        else:
            sealed[name] = {"value": entry.value}
    return sealed


def open_env(env: dict | None, box: SecretBox) -> dict[str, str]:
    opened = {}
    for name, entry in (env or {}).items():
        if "sealed" in entry:
            try:
                opened[name] = box.open_text(entry["sealed"])
            except SecretError:
                continue  # sealed under another secret key: left out rather than garbled
        else:
            opened[name] = entry.get("value") or ""
    return opened


def next_due(schedule: str, after: datetime) -> datetime:
    return croniter(schedule, after).get_next(datetime)


def _check_schedule(schedule: str | None) -> None:
    if schedule and (len(schedule.split()) != 5 or not croniter.is_valid(schedule)):
        raise validation_error("schedule", "invalid", "schedule must be a 5-field cron "
                               "expression, e.g. '0 3 * * *' (UTC)")


def _check_limits(limits, settings) -> dict | None:
    """A plan's limits as stored (only those it sets), each within its maximum."""
    if limits is None:
        return None
    stored = {name: value for name, value in limits.model_dump(by_alias=True).items()
              if value is not None}
    for name, value in stored.items():
        most = getattr(settings, LIMITS[name][1])
        if value > most:
            raise validation_error(f"limits.{name}", "too_large", f"limits.{name} may be at "
                                   f"most {most} on this server (REDLINE_"
                                   f"{LIMITS[name][1].upper()})")
    return stored or None


def run_limits(plan, settings) -> dict:
    """The limits a run of the plan gets: the plan's, else the server's defaults."""
    limits = {name: (plan.limits or {}).get(name) or getattr(settings, default)
              for name, (default, _most) in LIMITS.items()}
    if limits["cpuSeconds"] is None:
        limits["cpuSeconds"] = plan.timeout_seconds + 60
    return limits


def _check_source(source: dict | None) -> dict | None:
    if source is None:
        return None
    return {k: v for k, v in source.items() if v is not None}


def _load_plan(conn: Connection, principal: Principal, plan_id: str, scope: str,
               for_update: bool = False):
    row = repo.get_plan(conn, plan_id, for_update)
    return require_in_project(conn, principal, row, scope, "Plan", plan_id)


def create_plan(conn: Connection, principal: Principal, body, settings) -> dict:
    project_id = resolve_project(principal, body.project_id)
    require_project(conn, principal, project_id, "project:admin")
    if body.executor != "local":
        raise ApiError("UNSUPPORTED", "The Kubernetes executor is planned, not in this "
                       "version: plans run on Redline's runners (executor \"local\")",
                       {"feature": "executions", "executor": body.executor})
    _check_schedule(body.schedule)
    now = utcnow()
    plan_id = new_id("plan")
    repo.insert_plan(
        conn, id=plan_id, project_id=project_id, name=body.name, command=body.command,
        source=_check_source(body.source.model_dump() if body.source else None),
        env=seal_env(body.env, secret_box(settings)), timeout_seconds=body.timeout_seconds,
        queue_timeout_seconds=body.queue_timeout_seconds, report_paths=body.report_paths,
        max_concurrent_runs=body.max_concurrent_runs, schedule=body.schedule or None,
        sandbox=body.sandbox, network=body.network,
        limits=_check_limits(body.limits, settings), code_version=1,
        next_due_at=next_due(body.schedule, now) if body.schedule else None,
        created_by=principal.user_id, created_at=now, updated_at=now)
    return plan_json(repo.get_plan(conn, plan_id), [])


def list_plans(conn: Connection, principal: Principal, project_id: str | None, page) -> dict:
    project_id = resolve_project(principal, project_id)
    require_project(conn, principal, project_id, "runs:read")
    rows, total = repo.list_plans(conn, project_id, page.limit, page.offset)
    flights = repo.in_flight(conn, [row.id for row in rows])
    return page.page([plan_json(row, flights.get(row.id, [])) for row in rows], total)


def last_runs(conn: Connection, principal: Principal, project_id: str,
              plan_ids: list[str]) -> dict[str, dict]:
    """The newest run of each of the project's plans, as `GET /api/runs` lists a run (for the
    dashboard's plans page: one query whatever the number of plans)."""
    require_project(conn, principal, project_id, "runs:read")
    return {plan_id: runs.run_summary_json(row)
            for plan_id, row in repo.latest_runs(conn, plan_ids).items()
            if row.project_id == project_id}


def get_plan(conn: Connection, principal: Principal, plan_id: str) -> dict:
    row = _load_plan(conn, principal, plan_id, "runs:read")
    return plan_json(row, repo.in_flight(conn, [plan_id]).get(plan_id, []))


def update_plan(conn: Connection, principal: Principal, plan_id: str, body,
                if_match: str | None, settings) -> dict:
    row = _load_plan(conn, principal, plan_id, "project:admin", for_update=True)
    sent = body.code_version
    if if_match is not None:
        try:
            sent = int(if_match.strip().strip('"').removeprefix("W/").strip('"'))
        except ValueError:
            raise validation_error("If-Match", "invalid", "If-Match takes the plan's "
                                   "codeVersion, a whole number") from None
    if sent is not None and sent != row.code_version:
        raise ApiError("PRECONDITION_FAILED", f"The plan is at codeVersion {row.code_version}; "
                       f"this change was made against {sent}",
                       {"current": row.code_version, "sent": sent, "planId": plan_id})
    changes = body.model_dump(by_alias=False, exclude_unset=True, exclude={"code_version"})
    values: dict = {}
    for name, value in changes.items():
        if name == "env":
            if value is None:
                continue
            value = seal_env(body.env, secret_box(settings), row.env)
        elif name == "source":
            value = _check_source(value)
        elif name == "limits":
            if value is None:
                continue
            value = _check_limits(body.limits, settings)
        elif name == "schedule":
            _check_schedule(value)
            value = value or None
            values["next_due_at"] = next_due(value, utcnow()) if value else None
        elif value is None and name not in ("source",):
            continue
        values[name] = value
    bump = any(name in values and values[name] != getattr(row, name) for name in RUN_FIELDS)
    now = utcnow()
    repo.update_plan(conn, plan_id, updated_at=now,
                     code_version=row.code_version + (1 if bump else 0), **values)
    return get_plan(conn, principal, plan_id)


def delete_plan(conn: Connection, principal: Principal, plan_id: str) -> None:
    """Queued runs of the plan are cancelled with it; running ones get a cancel request."""
    _load_plan(conn, principal, plan_id, "project:admin", for_update=True)
    for run_id, _status in repo.in_flight(conn, [plan_id]).get(plan_id, []):
        _cancel(conn, run_id, "plan_deleted")
    repo.delete_plan(conn, plan_id)


# -- runs of a plan --------------------------------------------------------------------------

def executed_run_json(row) -> dict:
    """An executed run answers as any run does (`GET /api/runs/{id}`)."""
    return runs.run_json(row)


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _used_seconds(conn: Connection, team_id: str, now: datetime) -> dict[str, float]:
    """Runner-seconds by project this month: each run from its real start to its finish (or
    now), plus the time of its attempts whose runner was lost."""
    used: dict[str, float] = {}
    for row in repo.started_runs(conn, team_id, _month_start(now)):
        seconds = row.lost_runner_seconds or 0.0
        if row.started_at is not None:
            seconds += max(((row.finished_at or now) - row.started_at).total_seconds(), 0.0)
        used[row.project_id] = used.get(row.project_id, 0.0) + seconds
    return used


def credits_left(conn: Connection, team_id: str, now: datetime) -> float | None:
    budget = repo.team_budget(conn, team_id)
    if budget is None:
        return None
    return budget - sum(_used_seconds(conn, team_id, now).values())


def trigger(conn: Connection, principal: Principal, plan_id: str, body, settings) -> dict:
    row = _load_plan(conn, principal, plan_id, "executions:write", for_update=True)
    return enqueue_run(conn, row, body.source, body.branch, body.ref, body.commit_sha,
                       seal_env(body.env, secret_box(settings)))


def enqueue_run(conn: Connection, plan, source: str, branch: str | None, ref: str | None,
                commit_sha: str | None, env: dict) -> dict:
    """Queue a run of the plan (the plan's row locked by the caller on PostgreSQL)."""
    if not plan.command:
        raise ApiError("CONFLICT", "The plan is a draft: give it a command first",
                       {"reason": "draft", "planId": plan.id})
    flights = repo.in_flight(conn, [plan.id]).get(plan.id, [])
    if len(flights) >= plan.max_concurrent_runs:
        raise ApiError("CONFLICT", f"The plan already has {len(flights)} run(s) in flight "
                       f"(maxConcurrentRuns {plan.max_concurrent_runs})",
                       {"reason": "run_in_flight", "runId": flights[-1][0], "planId": plan.id})
    now = utcnow()
    left = credits_left(conn, repo.team_of_project(conn, plan.project_id), now)
    if left is not None and left <= 0:
        raise ApiError("INSUFFICIENT_CREDITS", "The team's execution budget for this month "
                       "is spent", {"reason": "budget_spent", "leftSeconds": 0})
    run_id = runs.new_run(conn, plan.project_id, {"source": source, "branch": branch,
                                                  "commit_sha": commit_sha,
                                                  "run_title": plan.name})
    repo.update_run(conn, run_id, status="queued", plan_id=plan.id, queued_at=now,
                    attempt=1, run_env=env, git_ref=ref, log_size=0, pending_signals=[],
                    updated_at=now)
    run = repo.get_run(conn, run_id)
    webhooks.emit(conn, plan.project_id, "run.queued", _event(run))
    return executed_run_json(run)


def _event(run) -> dict:
    return {"runId": run.id, "projectId": run.project_id, "planId": run.plan_id,
            "status": run.status, "source": run.source, "branch": run.branch,
            "queuedAt": iso(run.queued_at), "startedAt": iso(run.started_at),
            "runnerId": run.runner_id, "attempt": run.attempt}


def _load_executed(conn: Connection, principal: Principal, run_id: str, scope: str,
                   for_update: bool = False):
    row = repo.get_run(conn, run_id, for_update)
    row = require_in_project(conn, principal, row, scope, "Run", run_id)
    return row


def _cancel(conn: Connection, run_id: str, reason: str) -> None:
    now = utcnow()
    if repo.update_if_status(conn, run_id, ("queued",), status="cancelled",
                             cancel_reason=reason, finished_at=now, completed_at=now,
                             updated_at=now):
        append_server_log(conn, run_id, f"cancelled while queued ({reason})")
        _ended(conn, run_id)
        return
    repo.request_cancel(conn, run_id, cancel_requested_at=now, cancel_reason=reason,
                        updated_at=now)


def cancel(conn: Connection, principal: Principal, run_id: str) -> dict:
    """Idempotent: a queued run is cancelled at once, a running one is asked to stop (its
    runner sends SIGTERM, then SIGKILL after the grace period), a finished one is left."""
    row = _load_executed(conn, principal, run_id, "executions:write", for_update=True)
    if row.plan_id is None and row.queued_at is None:
        raise ApiError("CONFLICT", "Only an executed run (a plan's) can be cancelled here; "
                       "a reported run is ended with PATCH /api/runs/{id}",
                       {"reason": "not_executed"})
    if row.status in ("queued", "running"):
        _cancel(conn, run_id, "cancelled")
    return executed_run_json(repo.get_run(conn, run_id))


def signal(conn: Connection, principal: Principal, run_id: str, name: str) -> dict:
    row = _load_executed(conn, principal, run_id, "executions:write", for_update=True)
    name = name.upper().removeprefix("SIG")
    if name not in SIGNALS:
        raise validation_error("signal", "invalid", f"signal must be one of "
                               f"{', '.join(SIGNALS)}")
    if row.status in TERMINAL:
        raise ApiError("CONFLICT", f"The run is {row.status}: its process has finished",
                       {"reason": "finished", "runId": run_id})
    if row.status != "running" or row.process_started_at is None:
        raise ApiError("CONFLICT", "The run's process has not started yet",
                       {"reason": "not_started", "runId": run_id})
    repo.update_run(conn, run_id, pending_signals=[*(row.pending_signals or []), name],
                    updated_at=utcnow())
    return {"runId": run_id, "signal": name, "queued": True}


def read_log(conn: Connection, principal: Principal, run_id: str, offset: int,
             limit: int) -> dict:
    row = _load_executed(conn, principal, run_id, "runs:read")
    size = row.log_size or 0
    data = repo.read_log(conn, run_id, offset, min(limit, MAX_LOG_READ)) if offset < size \
        else b""
    # a chunk that ends inside a UTF-8 character: that character waits for the next read
    cut = len(data)
    if offset + cut < size:
        while cut and (data[cut - 1] & 0xC0) == 0x80:
            cut -= 1
        if cut and data[cut - 1] >= 0xC0:
            cut -= 1
        cut = cut or len(data)
    data = data[:cut]
    next_offset = offset + len(data)
    return {"runId": run_id, "text": data.decode("utf-8", "replace"), "offset": offset,
            "nextOffset": next_offset,
            "complete": row.status in TERMINAL and next_offset >= size}


def append_server_log(conn: Connection, run_id: str, line: str) -> None:
    """A line Redline itself writes into a run's log (never a secret)."""
    row = repo.get_run(conn, run_id)
    data = f"[redline] {line}\n".encode()
    size = row.log_size or 0
    repo.append_log(conn, run_id, size, data)
    repo.update_run(conn, run_id, log_size=size + len(data))


def _ended(conn: Connection, run_id: str) -> None:
    """A run of a plan ended, however it ended: its whole log is kept as the run's artifact
    (type `log`) by a job queued in the same transaction (`keep_log`)."""
    outbox.enqueue(conn, KEEP_LOG, {"runId": run_id})


def keep_log(engine, settings, run_id: str) -> str | None:
    """Store an ended run's whole log as its artifact (type `log`, `<run>.log`), under the
    artifact rules (artifacts/service.py): deleted with the run, or after the project's days
    for the run's outcome. The log's rows stay, so `GET /api/runs/{id}/log` keeps
    answering. Idempotent (the job may run twice)."""
    with tempfile.TemporaryFile() as copy:  # (a log may be up to 1 GiB: never whole in memory)
        with engine.connect() as conn:
            run = repo.get_run(conn, run_id)
            if run is None or run.status not in TERMINAL:
                return None
            offset, size = 0, run.log_size or 0
            while offset < size:
                chunk = repo.read_log(conn, run_id, offset, KEEP_LOG_CHUNK)
                if not chunk:
                    break
                copy.write(chunk)
                offset += len(chunk)
        copy.seek(0)
        outcome = run.status if run.status in ("passed", "failed") else None
        return artifacts.keep_generated(engine, settings, run.project_id, run_id, "log",
                                        f"{run_id}.log", "text/plain; charset=utf-8", copy,
                                        outcome)


# -- credits ---------------------------------------------------------------------------------

def usage(conn: Connection, principal: Principal, team_id: str) -> dict:
    require_team_role(conn, principal, team_id, "viewer")
    now = utcnow()
    used = _used_seconds(conn, team_id, now)
    budget = repo.team_budget(conn, team_id)
    total = int(sum(used.values()))
    return {"teamId": team_id, "month": now.strftime("%Y-%m"), "budgetSeconds": budget,
            "usedSeconds": total, "leftSeconds": None if budget is None
            else max(budget - total, 0),
            "projects": [{"projectId": project_id, "usedSeconds": int(seconds)}
                         for project_id, seconds in sorted(used.items())]}


def set_budget(conn: Connection, principal: Principal, team_id: str,
               seconds: int | None) -> dict:
    require_team_role(conn, principal, team_id, "admin")  # (another tenant's: NOT_FOUND)
    require_user(principal)
    repo.set_team_budget(conn, team_id, seconds, utcnow())
    return usage(conn, principal, team_id)


# -- runner tokens ---------------------------------------------------------------------------

def runner_token_json(row) -> dict:
    return {"id": row.id, "teamId": row.team_id, "projectId": row.project_id,
            "name": row.name, "tokenMasked": f"{RUNNER_TOKEN_PREFIX}****...****{row.last4}",
            "createdAt": iso(row.created_at), "lastUsedAt": iso(row.last_used_at),
            "revokedAt": iso(row.revoked_at)}


def _new_runner_token(conn: Connection, team_id: str | None, project_id: str | None,
                      name: str, created_by: str | None) -> dict:
    made = tokens.make_token(RUNNER_TOKEN_PREFIX)
    token_id = new_id("runner")
    repo.insert_runner_token(conn, id=token_id, team_id=team_id, project_id=project_id,
                             name=name, lookup=made.lookup, secret_hash=made.secret_hash,
                             last4=made.last4, created_by=created_by, created_at=utcnow())
    return {**runner_token_json(repo.get_runner_token(conn, token_id)), "token": made.token}


def create_runner_token(conn: Connection, principal: Principal, team_id: str,
                        project_id: str | None, name: str) -> dict:
    require_team_role(conn, principal, team_id, "admin")
    require_user(principal)
    if project_id is not None:
        access = require_project(conn, principal, project_id, "project:admin")
        if access.team_id != team_id:
            raise not_found("Project", project_id)
    return _new_runner_token(conn, team_id, project_id, name, principal.user_id)


def instance_runner_token(conn: Connection, name: str) -> dict:
    """The embedded runner's token: it serves every team of this server."""
    return _new_runner_token(conn, None, None, name, None)


def revoke_instance_token(conn: Connection, token_id: str) -> None:
    repo.update_runner_token(conn, token_id, revoked_at=utcnow())


def list_runner_tokens(conn: Connection, principal: Principal, team_id: str, page) -> dict:
    require_team_role(conn, principal, team_id, "admin")
    require_user(principal)
    rows, total = repo.list_runner_tokens(conn, team_id, page.limit, page.offset)
    return page.page([runner_token_json(row) for row in rows], total)


def revoke_runner_token(conn: Connection, principal: Principal, token_id: str) -> None:
    row = repo.get_runner_token(conn, token_id)
    if row is None or row.team_id is None:
        raise not_found("Runner token", token_id)
    try:
        require_team_role(conn, principal, row.team_id, "admin")
    except ApiError as exc:
        if exc.code == "NOT_FOUND":
            raise not_found("Runner token", token_id) from None
        raise
    require_user(principal)
    if row.revoked_at is None:
        repo.update_runner_token(conn, token_id, revoked_at=utcnow())


# -- the runner API --------------------------------------------------------------------------

class RunnerCaller:
    """A runner, by its token: the runs of a team (or one project; or, for the embedded
    runner, every team)."""

    def __init__(self, token_id: str, team_id: str | None, project_id: str | None):
        self.token_id = token_id
        self.team_id = team_id
        self.project_id = project_id


def authenticate_runner(conn: Connection, authorization: str | None) -> RunnerCaller:
    if not authorization:
        raise ApiError("AUTH_REQUIRED", "A runner sends its token: 'Authorization: Bearer "
                       "rlr_...'", {})
    scheme, _, token = authorization.partition(" ")
    lookup = tokens.parse_token(token.strip(), RUNNER_TOKEN_PREFIX)
    if scheme.lower() != "bearer" or lookup is None:
        raise ApiError("AUTH_INVALID", "The runner token is malformed", {"reason": "malformed"})
    row = repo.runner_token_by_lookup(conn, lookup)
    if row is None or not tokens.token_matches(token.strip(), row.secret_hash):
        raise ApiError("AUTH_INVALID", "The runner token is unknown", {"reason": "unknown"})
    if row.revoked_at is not None:
        raise ApiError("AUTH_INVALID", "The runner token is revoked", {"reason": "revoked"})
    return RunnerCaller(row.id, row.team_id, row.project_id)


def has_queued(conn: Connection, runner: RunnerCaller) -> bool:
    return repo.has_queued(conn, runner.team_id, runner.project_id)


def claim(conn: Connection, runner: RunnerCaller, runner_id: str, settings) -> dict | None:
    """Take the oldest queued run this runner may serve, under a lease; None when there is
    none. A run whose queue timeout passed is `blocked` instead, and so is one whose team
    has no credits left."""
    now = utcnow()
    for run_id in repo.claim_candidates(conn, runner.team_id, runner.project_id):
        run = repo.get_run(conn, run_id)
        plan = repo.get_plan(conn, run.plan_id) if run.plan_id else None
        if plan is None:
            _block(conn, run_id, "command_not_started", "the plan was deleted", now)
            continue
        if run.queued_at + timedelta(seconds=plan.queue_timeout_seconds) < now:
            _block(conn, run_id, "queue_timeout", "waited past the plan's "
                   f"queueTimeoutSeconds ({plan.queue_timeout_seconds} s)", now)
            continue
        left = credits_left(conn, repo.team_of_project(conn, run.project_id), now)
        if left is not None and left <= 0:
            _block(conn, run_id, "insufficient_credits", "the team's execution budget "
                   "for this month is spent", now)
            continue
        lease_token = random_tokens.token_hex(16)
        if not repo.claim(conn, run_id, runner_id=runner_id, lease_token=lease_token,
                          lease_until=now + timedelta(seconds=settings.runner_lease_seconds),
                          started_at=now, updated_at=now):
            continue  # (SQLite: another claim took it first)
        repo.update_runner_token(conn, runner.token_id, last_used_at=now)
        run = repo.get_run(conn, run_id)
        webhooks.emit(conn, run.project_id, "run.started", _event(run))
        box = secret_box(settings)
        source = dict(plan.source) if plan.source else None
        if source and run.git_ref and "git" in source:
            source["ref"] = run.git_ref
        return {"runId": run.id, "projectId": run.project_id, "planId": plan.id,
                "leaseToken": lease_token, "leaseSeconds": settings.runner_lease_seconds,
                "attempt": run.attempt, "command": list(plan.command), "source": source,
                "env": {**open_env(plan.env, box), **open_env(run.run_env, box)},
                "timeoutSeconds": plan.timeout_seconds,
                "reportPaths": list(plan.report_paths or []), "sandbox": plan.sandbox,
                "network": plan.network, "limits": run_limits(plan, settings),
                "logOffset": run.log_size or 0,
                "cancelGraceSeconds": settings.runner_cancel_grace_seconds,
                "branch": run.branch, "codeVersion": plan.code_version}
    return None


def _block(conn: Connection, run_id: str, reason: str, why: str, now: datetime) -> None:
    if repo.update_if_status(conn, run_id, ("queued", "running"),
                             status="blocked", blocked_reason=reason, finished_at=now,
                          completed_at=now, lease_token=None, lease_until=None,
                          updated_at=now):
        append_server_log(conn, run_id, f"blocked: {why}")
        run = repo.get_run(conn, run_id)
        if run.plan_id:
            repo.update_plan(conn, run.plan_id, last_status="blocked")
        _ended(conn, run_id)


def _leased(conn: Connection, runner: RunnerCaller, run_id: str, lease_token: str):
    run = repo.get_run(conn, run_id, for_update=True)
    if run is None or not _in_scope(runner, run):
        raise not_found("Run", run_id)
    if run.status != "running" or run.lease_token != lease_token:
        raise ApiError("CONFLICT", "This runner no longer holds the run's lease",
                       {"reason": "lease_lost", "runId": run_id, "status": run.status})
    return run


def _in_scope(runner: RunnerCaller, run) -> bool:
    if runner.project_id is not None:
        return run.project_id == runner.project_id
    return True  # a team's token reached the run through its team's queue, by id


def heartbeat(conn: Connection, runner: RunnerCaller, run_id: str, lease_token: str,
              process_started: bool, settings) -> dict:
    """Renew the lease; the answer says whether to cancel and which signals to deliver."""
    run = _leased(conn, runner, run_id, lease_token)
    now = utcnow()
    values: dict = {"lease_until": now + timedelta(seconds=settings.runner_lease_seconds)}
    if process_started and run.process_started_at is None:
        values["process_started_at"] = now
    signals = list(run.pending_signals or [])
    if signals:
        values["pending_signals"] = []
    repo.update_run(conn, run_id, **values)
    return {"cancel": run.cancel_requested_at is not None, "signals": signals,
            "leaseSeconds": settings.runner_lease_seconds}


def append_log(conn: Connection, runner: RunnerCaller, run_id: str, lease_token: str,
               offset: int, text: str) -> dict:
    """Append output at byte `offset`; what the log already holds is not written twice (a
    chunk resent after a lost answer)."""
    run = _leased(conn, runner, run_id, lease_token)
    size = run.log_size or 0
    data = text.encode("utf-8", "replace")
    if offset > size:
        raise ApiError("CONFLICT", f"The log holds {size} bytes; a chunk at {offset} would "
                       "leave a gap", {"reason": "log_gap", "size": size})
    data = data[size - offset:]
    if data:
        repo.append_log(conn, run_id, size, data)
        repo.update_run(conn, run_id, log_size=size + len(data))
    return {"nextOffset": size + len(data)}


def upload_report(conn: Connection, runner: RunnerCaller, run_id: str, lease_token: str,
                  file_name: str, content: str, report_format: str) -> dict:
    """A report the command wrote, imported into the run as `POST /api/runs/import` would."""
    run = _leased(conn, runner, run_id, lease_token)
    imported = imports.import_into_run(conn, run.id, [(file_name, io.BytesIO(content.encode()))],
                                       report_format)
    return {"runId": run_id, "imported": imported}


def finish(conn: Connection, runner: RunnerCaller, run_id: str, body) -> dict:
    run = _leased(conn, runner, run_id, body.lease_token)
    now = utcnow()
    common = {"finished_at": now, "exit_code": body.exit_code, "lease_token": None,
              "lease_until": None, "updated_at": now}
    if body.outcome == "blocked":
        repo.update_run(conn, run_id, **common)
        _block(conn, run_id, body.blocked_reason or "command_not_started",
               body.blocked_reason or "the command did not run", now)
        return executed_run_json(repo.get_run(conn, run_id))
    runs.refresh_counts(conn, run_id)
    run = repo.get_run(conn, run_id)
    if body.outcome == "cancelled" or (run.cancel_requested_at is not None
                                       and body.outcome != "timeout"):
        repo.update_run(conn, run_id, **common)
        runs.finish(conn, run_id, "cancelled")
    elif body.outcome == "timeout":
        repo.update_run(conn, run_id, cancel_reason="timeout", **common)
        runs.finish(conn, run_id, "failed")
    elif body.outcome == "limit":  # stopped by a resource limit: no real pass
        repo.update_run(conn, run_id, cancel_reason=f"{body.limit or 'resource'}_limit",
                        **common)
        runs.finish(conn, run_id, "failed")
    elif run.total_tests == 0:
        repo.update_run(conn, run_id, **common)
        reason = body.blocked_reason or "no_results"
        _block(conn, run_id, reason, "no report matched reportPaths" if reason == "no_report"
               else "its reports held no results", now)
        return executed_run_json(repo.get_run(conn, run_id))
    else:
        repo.update_run(conn, run_id, **common)
        runs.finish(conn, run_id, None if body.exit_code == 0 else "failed")
    run = repo.get_run(conn, run_id)
    if run.status != "cancelled" and run.plan_id:
        repo.update_plan(conn, run.plan_id, last_status=run.status)
    _ended(conn, run_id)
    return executed_run_json(run)


# -- the worker's sweep ----------------------------------------------------------------------

def sweep(conn: Connection, now: datetime | None = None) -> dict:
    """Runs whose runner was lost (its lease expired): queued again once, else `failed`
    with `cancelReason: "runner_lost"`; queued runs past their queue timeout: `blocked`."""
    now = now or utcnow()
    retried = lost = expired = 0
    for row in _batches(lambda: repo.expired_leases(conn, now)):
        if row.cancel_requested_at is not None:  # asked to stop: not run again
            if repo.update_if_lease_expired(conn, row.id, now, finished_at=now,
                                            lease_token=None, lease_until=None,
                                            updated_at=now):
                append_server_log(conn, row.id, "the runner was lost while the run was "
                                  "being cancelled: cancelled")
                runs.refresh_counts(conn, row.id)
                runs.finish(conn, row.id, "cancelled")
                _ended(conn, row.id)
            continue
        if (row.attempt or 1) < 2:
            # the lost attempt held its runner from its start until its lease ran out
            held = (min(row.lease_until, now) - row.started_at).total_seconds() \
                if row.started_at is not None else 0.0
            if repo.update_if_lease_expired(conn, row.id, now,
                                            status="queued", attempt=2, runner_id=None,
                                            started_at=None, lost_runner_seconds=(
                                                row.lost_runner_seconds or 0.0)
                                            + max(held, 0.0),
                                  lease_token=None, lease_until=None,
                                  process_started_at=None, pending_signals=[],
                                  updated_at=now):
                append_server_log(conn, row.id, "the runner was lost (its lease expired): "
                                  "the run is queued again, once")
                retried += 1
        elif repo.update_if_lease_expired(conn, row.id, now,
                                          cancel_reason="runner_lost", finished_at=now,
                                lease_token=None, lease_until=None, updated_at=now):
            append_server_log(conn, row.id, "the runner was lost again: the run failed")
            runs.refresh_counts(conn, row.id)
            runs.finish(conn, row.id, "failed")
            run = repo.get_run(conn, row.id)
            if run.plan_id:
                repo.update_plan(conn, run.plan_id, last_status="unknown")
            _ended(conn, row.id)
            lost += 1
    for row in _batches(lambda: repo.expired_queue(conn, now)):
        _block(conn, row.id, "queue_timeout", "waited past the plan's "
               f"queueTimeoutSeconds ({row.queue_timeout_seconds} s)", now)
        expired += 1
    return {"retried": retried, "lost": lost, "queueTimeouts": expired}


def work_due(conn: Connection, now: datetime | None = None) -> bool:
    """Whether `sweep` or `fire_schedules` has anything to do (three reads: an idle server
    opens no write transaction for them)."""
    now = now or utcnow()
    return bool(repo.expired_leases(conn, now, limit=1) or repo.expired_queue(conn, now, 1)
                or repo.due_plans(conn, now, limit=1))


def _batches(read):
    """The rows of `read()` again and again until it gives none (each row it gives is
    changed so that it is not read again)."""
    while True:
        rows = read()
        if not rows:
            return
        yield from rows


def fire_schedules(conn: Connection, now: datetime | None = None) -> list[str]:
    """Trigger the plans whose schedule is due, once per due time whatever the number of
    replicas doing this (a unique (plan, due time) key); returns the runs queued."""
    now = now or utcnow()
    queued = []
    for plan in repo.due_plans(conn, now):
        due_at = plan.next_due_at
        repo.update_plan(conn, plan.id, next_due_at=next_due(plan.schedule, now)
                         if plan.schedule else None)
        if not repo.take_schedule_fire(conn, plan.id, due_at, now):
            continue
        try:
            # (it refuses before it writes anything: nothing to undo)
            run = enqueue_run(conn, plan, "schedule", None, None, None, {})
        except ApiError as exc:  # in flight, no credits, a draft: this due time is skipped
            skipped = exc.details.get("reason", exc.code)
            repo.set_fire_run(conn, plan.id, due_at, f"skipped:{skipped}"[:40])
            continue
        repo.set_fire_run(conn, plan.id, due_at, run["id"])
        queued.append(run["id"])
    return queued
