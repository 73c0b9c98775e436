"""The durable job outbox: background work as rows of the `jobs` table.

- `enqueue` writes a job in the caller's transaction, so the job exists exactly when the
  change that caused it was committed (a rolled-back request leaves no job behind).
- `claim` takes due jobs under a lease: `FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number
  of workers on any hosts never take the same job; on SQLite the claiming transaction is
  `BEGIN IMMEDIATE`, which admits one claimer at a time. A job whose lease expired (its worker
  crashed or was killed) is due again: the next claim takes it with attempts + 1.
- `complete` / `fail` end an attempt, but only for the worker that still holds the lease.
  `fail` schedules a retry with exponential backoff and jitter, or moves the job to the `dead`
  state after its last attempt, keeping every attempt's error.

Handlers must be idempotent: a job may run again after a crash between its effect and
`complete`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from redline.server.db import WRITE
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_id
from redline.server.tables import jobs

DEFAULT_LEASE = timedelta(seconds=60)
BASE_DELAY = 5.0  # seconds before the first retry
MAX_DELAY = 6 * 3600.0


@dataclass
class Job:
    id: str
    kind: str
    payload: dict
    attempts: int
    max_attempts: int


def enqueue(conn: Connection, kind: str, payload: dict, run_after: datetime | None = None,
            max_attempts: int = 10) -> str:
    """Queue a job in the caller's transaction; returns its id."""
    now = utcnow()
    job_id = new_id("job")
    conn.execute(insert(jobs).values(
        id=job_id, kind=kind, payload=payload, status="queued", attempts=0,
        max_attempts=max_attempts, run_after=run_after or now, errors=[], created_at=now,
        updated_at=now))
    return job_id


def _due(now: datetime):
    return or_(and_(jobs.c.status == "queued", jobs.c.run_after <= now),
               and_(jobs.c.status == "running", jobs.c.lease_until < now))


def claim(engine: Engine, worker_id: str, limit: int = 1,
          lease: timedelta = DEFAULT_LEASE) -> list[Job]:
    """Take up to `limit` due jobs for `worker_id`, each under a lease."""
    now = utcnow()
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        query = (select(jobs.c.id, jobs.c.kind, jobs.c.payload, jobs.c.attempts,
                        jobs.c.max_attempts, jobs.c.status)
                 .where(_due(now)).order_by(jobs.c.run_after, jobs.c.id).limit(limit))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        taken = []
        for row in rows:
            if row.status == "running" and row.attempts >= row.max_attempts:
                # its last attempt died with its worker: nothing left to try
                conn.execute(update(jobs).where(jobs.c.id == row.id).values(
                    status="dead", locked_by=None, lease_until=None, updated_at=now,
                    last_error="lease expired on the last attempt"))
                continue
            conn.execute(update(jobs).where(jobs.c.id == row.id).values(
                status="running", attempts=row.attempts + 1, locked_by=worker_id,
                lease_until=now + lease, updated_at=now))
            taken.append(Job(row.id, row.kind, row.payload, row.attempts + 1,
                             row.max_attempts))
    return taken


def complete(engine: Engine, job: Job, worker_id: str) -> bool:
    """Mark a job done; False when this worker had lost its lease (another took the job)."""
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        result = conn.execute(update(jobs).where(
            jobs.c.id == job.id, jobs.c.locked_by == worker_id, jobs.c.status == "running")
            .values(status="done", locked_by=None, lease_until=None, updated_at=utcnow()))
    return result.rowcount == 1


def retry_delay(attempt: int, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Exponential backoff with full jitter: a random delay up to base * 4^(attempt-1)."""
    return random.uniform(0.5, 1.0) * min(cap, base * 4 ** (attempt - 1))


def fail(engine: Engine, job: Job, worker_id: str, error: str,
         delay: float | None = None) -> str:
    """End a failed attempt: schedule the next one, or dead-letter the job. Returns the new
    status (or "lost" when this worker no longer held the lease)."""
    now = utcnow()
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        row = conn.execute(select(jobs.c.errors, jobs.c.locked_by, jobs.c.status)
                           .where(jobs.c.id == job.id)).first()
        if row is None or row.locked_by != worker_id or row.status != "running":
            return "lost"
        errors = list(row.errors or []) + [{"attempt": job.attempts, "at": iso(now),
                                            "error": error[:2000]}]
        if job.attempts >= job.max_attempts:
            status, run_after = "dead", now
        else:
            status = "queued"
            wait = retry_delay(job.attempts) if delay is None else delay
            run_after = now + timedelta(seconds=wait)
        conn.execute(update(jobs).where(jobs.c.id == job.id).values(
            status=status, run_after=run_after, locked_by=None, lease_until=None,
            last_error=error[:2000], errors=errors, updated_at=now))
    return status


def release(engine: Engine, job: Job, worker_id: str) -> None:
    """Give a claimed job back untouched (a worker shutting down): due again at once, and
    the attempt it did not make is not counted."""
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        conn.execute(update(jobs).where(jobs.c.id == job.id, jobs.c.locked_by == worker_id)
                     .values(status="queued", attempts=jobs.c.attempts - 1, locked_by=None,
                             lease_until=None, updated_at=utcnow()))
