"""Queries for runs and their aggregates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update

from redline.server.tables import runs, test_results

_INSERT_RUN = insert(runs)


def insert_run(conn: Connection, **values) -> None:
    # Values as parameters of one statement, not baked into a new one: SQLAlchemy compiles
    # this once per set of columns instead of coercing and hashing 30 values on every call.
    conn.execute(_INSERT_RUN, values)


# Built once: on the hot path (every read of a run) building the statement cost more than
# running it. SQLite has no row locks: there FOR UPDATE is left out (its writer holds the
# whole database).
_RUN_BY_ID = select(runs).where(runs.c.id == bindparam("run_id"))
_RUN_BY_ID_FOR_UPDATE = _RUN_BY_ID.with_for_update()


def get_run(conn: Connection, run_id: str, for_update: bool = False):
    return conn.execute(_RUN_BY_ID_FOR_UPDATE if for_update else _RUN_BY_ID,
                        {"run_id": run_id}).first()


def find_open_shard_run(conn: Connection, project_id: str, ci_build_id: str):
    """The newest run of a CI build. On PostgreSQL the caller's transaction first takes a lock
    on the build (released when it ends), so shards starting together make one run: the first
    creates it, the others wait and then find it. (SQLite's writers queue already.)"""
    if conn.dialect.name == "postgresql":
        build = f"redline-shard-run:{project_id}:{ci_build_id}"
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(build, 0))))
    query = (select(runs).where(runs.c.project_id == project_id,
                                runs.c.ci_build_id == ci_build_id)
             .order_by(runs.c.id.desc()).limit(1))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def update_run(conn: Connection, run_id: str, **values) -> None:
    conn.execute(update(runs).where(runs.c.id == run_id).values(**values))


def delete_run(conn: Connection, run_id: str) -> None:
    conn.execute(delete(runs).where(runs.c.id == run_id))


def list_runs(conn: Connection, project_id: str, status: str | None, branch: str | None,
              limit: int, offset: int, plan_id: str | None = None):
    where = [runs.c.project_id == project_id]
    if plan_id:
        where.append(runs.c.plan_id == plan_id)
    if status:
        where.append(runs.c.status == status)
    if branch:
        where.append(runs.c.branch == branch)
    total = conn.execute(select(func.count()).select_from(runs).where(*where)).scalar_one()
    rows = conn.execute(select(runs).where(*where).order_by(runs.c.created_at.desc(),
                                                            runs.c.id.desc())
                        .limit(limit).offset(offset)).all()
    return rows, total


def status_counts(conn: Connection, run_id: str) -> dict[str, tuple[int, int]]:
    """status -> (results, summed duration) for one run, in one query."""
    rows = conn.execute(select(test_results.c.status, func.count(),
                               func.coalesce(func.sum(test_results.c.duration), 0))
                        .where(test_results.c.run_id == run_id)
                        .group_by(test_results.c.status)).all()
    return {status: (count, int(duration)) for status, count, duration in rows}


def stale_reporter_run_ids(conn: Connection, quiet_since: datetime,
                           limit: int = 100) -> list[str]:
    """Runs still running with no news since `quiet_since` that a live reporter or a
    sharded build left open (never an executed run: its runner's lease covers it)."""
    return list(conn.execute(
        select(runs.c.id).where(runs.c.status == "running", runs.c.plan_id.is_(None),
                                or_(runs.c.shard_total.is_not(None),
                                    runs.c.source == "reporter"),
                                runs.c.updated_at < quiet_since)
        .order_by(runs.c.updated_at).limit(limit)).scalars())
