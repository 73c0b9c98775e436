"""The SQL of executed runs: plans, the queue of runs, leases, logs, runner tokens, usage.
Where SQLite and PostgreSQL differ (claiming, a schedule's once-only key), both are here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, DateTime, and_, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from redline.server.tables import (
    plans,
    projects,
    run_logs,
    runner_tokens,
    runs,
    schedule_fires,
    teams,
)

IN_FLIGHT = ("queued", "running")


# -- plans ---------------------------------------------------------------------------------

def insert_plan(conn: Connection, **values) -> None:
    conn.execute(insert(plans).values(**values))


def get_plan(conn: Connection, plan_id: str, for_update: bool = False):
    query = select(plans).where(plans.c.id == plan_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def list_plans(conn: Connection, project_id: str, limit: int, offset: int):
    where = plans.c.project_id == project_id
    total = conn.execute(select(func.count()).select_from(plans).where(where)).scalar_one()
    rows = conn.execute(select(plans).where(where).order_by(plans.c.id)
                        .limit(limit).offset(offset)).all()
    return rows, total


def update_plan(conn: Connection, plan_id: str, **values) -> None:
    conn.execute(update(plans).where(plans.c.id == plan_id).values(**values))


def delete_plan(conn: Connection, plan_id: str) -> None:
    conn.execute(delete(plans).where(plans.c.id == plan_id))


def in_flight(conn: Connection, plan_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """The plans' runs in flight, oldest first: plan id -> [(run id, status)]."""
    if not plan_ids:
        return {}
    rows = conn.execute(select(runs.c.plan_id, runs.c.id, runs.c.status)
                        .where(runs.c.plan_id.in_(plan_ids), runs.c.status.in_(IN_FLIGHT))
                        .order_by(runs.c.id)).all()
    found: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        found.setdefault(row.plan_id, []).append((row.id, row.status))
    return found


def latest_runs(conn: Connection, plan_ids: list[str]) -> dict:
    """Each plan's newest run (ids sort by creation): plan id -> its row, in one query."""
    if not plan_ids:
        return {}
    newest = (select(func.max(runs.c.id).label("id")).where(runs.c.plan_id.in_(plan_ids))
              .group_by(runs.c.plan_id).subquery())
    rows = conn.execute(select(runs).join(newest, runs.c.id == newest.c.id)).all()
    return {row.plan_id: row for row in rows}


def due_plans(conn: Connection, now: datetime, limit: int = 100):
    return conn.execute(select(plans).where(plans.c.next_due_at <= now)
                        .order_by(plans.c.next_due_at).limit(limit)).all()


def take_schedule_fire(conn: Connection, plan_id: str, due_at: datetime, now: datetime) -> bool:
    """Record that a plan's due time fired; False when another replica did it first (the
    key (plan, due time) is unique)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(schedule_fires).values(
        plan_id=plan_id, due_at=due_at, created_at=now).on_conflict_do_nothing()
    return conn.execute(statement.returning(schedule_fires.c.plan_id)).first() is not None


def set_fire_run(conn: Connection, plan_id: str, due_at: datetime, run_id: str) -> None:
    conn.execute(update(schedule_fires).where(schedule_fires.c.plan_id == plan_id,
                                              schedule_fires.c.due_at == due_at)
                 .values(run_id=run_id))


# -- runs ----------------------------------------------------------------------------------

def get_run(conn: Connection, run_id: str, for_update: bool = False):
    query = select(runs).where(runs.c.id == run_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def update_run(conn: Connection, run_id: str, **values) -> None:
    conn.execute(update(runs).where(runs.c.id == run_id).values(**values))


def update_run_if(conn: Connection, run_id: str, condition, **values) -> bool:
    """Update the run only while `condition` holds; True when it did."""
    return conn.execute(update(runs).where(runs.c.id == run_id, condition)
                        .values(**values)).rowcount == 1


def update_if_status(conn: Connection, run_id: str, statuses: tuple[str, ...],
                     **values) -> bool:
    """Update the run only while its status is one of `statuses`; True when it did."""
    return update_run_if(conn, run_id, runs.c.status.in_(statuses), **values)


def request_cancel(conn: Connection, run_id: str, **values) -> bool:
    """Mark a running run for cancel (once: the first request's reason stays)."""
    return update_run_if(conn, run_id, (runs.c.status == "running")
                         & runs.c.cancel_requested_at.is_(None), **values)


def update_if_lease_expired(conn: Connection, run_id: str, now: datetime, **values) -> bool:
    return update_run_if(conn, run_id, (runs.c.status == "running")
                         & (runs.c.lease_until < now), **values)


def _scope(query, team_id: str | None, project_id: str | None):
    if project_id is not None:
        return query.where(runs.c.project_id == project_id)
    if team_id is not None:
        return query.join(projects, projects.c.id == runs.c.project_id).where(
            projects.c.team_id == team_id)
    return query


def has_queued(conn: Connection, team_id: str | None, project_id: str | None) -> bool:
    query = _scope(select(runs.c.id).where(runs.c.status == "queued",
                                           runs.c.plan_id.is_not(None)),
                   team_id, project_id).limit(1)
    return conn.execute(query).first() is not None


def claim_candidates(conn: Connection, team_id: str | None, project_id: str | None,
                     limit: int = 5) -> list[str]:
    """The oldest queued runs a runner may take. On PostgreSQL they are locked and the rows
    other claimers hold are skipped (`FOR UPDATE SKIP LOCKED`); on SQLite the claiming
    transaction is the only writer, and `claim` updates only a run still queued."""
    query = _scope(select(runs.c.id).where(runs.c.status == "queued",
                                           runs.c.plan_id.is_not(None)),
                   team_id, project_id).order_by(runs.c.queued_at, runs.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=runs, skip_locked=True)
    return list(conn.execute(query).scalars())


def claim(conn: Connection, run_id: str, **values) -> bool:
    """Take a queued run: one UPDATE that succeeds only while it is still queued."""
    return update_run_if(conn, run_id, runs.c.status == "queued", status="running", **values)


def expired_leases(conn: Connection, now: datetime, limit: int = 100):
    return conn.execute(select(runs.c.id, runs.c.attempt, runs.c.cancel_requested_at,
                               runs.c.started_at, runs.c.lease_until,
                               runs.c.lost_runner_seconds).where(
        runs.c.status == "running", runs.c.plan_id.is_not(None),
        runs.c.lease_until < now).limit(limit)).all()


def expired_queue(conn: Connection, now: datetime, limit: int = 100):
    """Queued runs that waited past their plan's queueTimeoutSeconds."""
    waited: ColumnElement
    if conn.dialect.name == "postgresql":
        waited = func.extract("epoch", literal(now, DateTime) - runs.c.queued_at)
    else:
        waited = (func.julianday(literal(now, DateTime)) - func.julianday(runs.c.queued_at)) * 86400
    return conn.execute(select(runs.c.id, runs.c.queued_at, plans.c.queue_timeout_seconds)
                        .join(plans, plans.c.id == runs.c.plan_id)
                        .where(runs.c.status == "queued",
                               waited > plans.c.queue_timeout_seconds)
                        .order_by(runs.c.queued_at).limit(limit)).all()


# -- logs ----------------------------------------------------------------------------------

def append_log(conn: Connection, run_id: str, offset: int, data: bytes) -> None:
    conn.execute(insert(run_logs).values(run_id=run_id, offset=offset, data=data))


def read_log(conn: Connection, run_id: str, offset: int, limit: int) -> bytes:
    """Up to `limit` bytes of the log from byte `offset`."""
    start = conn.execute(select(func.max(run_logs.c.offset)).where(
        run_logs.c.run_id == run_id, run_logs.c.offset <= offset)).scalar()
    rows = conn.execute(select(run_logs.c.offset, run_logs.c.data).where(
        run_logs.c.run_id == run_id, run_logs.c.offset >= (start or 0),
        run_logs.c.offset < offset + limit).order_by(run_logs.c.offset)).all()
    data = b"".join(bytes(row.data) for row in rows)
    first = rows[0].offset if rows else offset
    return data[offset - first:offset - first + limit]


# -- teams and usage -----------------------------------------------------------------------

def team_of_project(conn: Connection, project_id: str) -> str:
    return conn.execute(select(projects.c.team_id).where(
        projects.c.id == project_id)).scalar_one()


def team_budget(conn: Connection, team_id: str) -> int | None:
    return conn.execute(select(teams.c.execution_budget_seconds).where(
        teams.c.id == team_id)).scalar()


def set_team_budget(conn: Connection, team_id: str, seconds: int | None, now) -> None:
    conn.execute(update(teams).where(teams.c.id == team_id).values(
        execution_budget_seconds=seconds, updated_at=now))


def started_runs(conn: Connection, team_id: str, since: datetime):
    """(project id, started, finished, lost runner-seconds) of the team's runs that held a
    runner since `since`: started by one, or retried after losing one (those are queued
    again with no start until the next runner takes them)."""
    return conn.execute(select(runs.c.project_id, runs.c.started_at, runs.c.finished_at,
                               runs.c.lost_runner_seconds)
                        .join(projects, projects.c.id == runs.c.project_id)
                        .where(projects.c.team_id == team_id,
                               func.coalesce(runs.c.started_at, runs.c.queued_at) >= since,
                               runs.c.started_at.is_not(None)
                               | (runs.c.lost_runner_seconds > 0))).all()


# -- runner tokens ---------------------------------------------------------------------------

def insert_runner_token(conn: Connection, **values) -> None:
    conn.execute(insert(runner_tokens).values(**values))


def get_runner_token(conn: Connection, token_id: str):
    return conn.execute(select(runner_tokens).where(runner_tokens.c.id == token_id)).first()


def runner_token_by_lookup(conn: Connection, lookup: str):
    return conn.execute(select(runner_tokens).where(runner_tokens.c.lookup == lookup)).first()


def list_runner_tokens(conn: Connection, team_id: str, limit: int, offset: int):
    where = and_(runner_tokens.c.team_id == team_id)
    total = conn.execute(select(func.count()).select_from(runner_tokens)
                         .where(where)).scalar_one()
    rows = conn.execute(select(runner_tokens).where(where).order_by(runner_tokens.c.id)
                        .limit(limit).offset(offset)).all()
    return rows, total


def update_runner_token(conn: Connection, token_id: str, **values) -> None:
    conn.execute(update(runner_tokens).where(runner_tokens.c.id == token_id).values(**values))
