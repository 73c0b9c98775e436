"""Retention: runs (with their results and suites) older than a project's
`dataRetentionDays` are deleted in small batches, each its own short transaction, so
ingestion is never blocked for long. Per-case statistics stay as they were (they describe the
last 50 results, which may reach further back); error-group rows whose last sighting is older
than the retention period go too.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import Engine, delete, select

from redline.server.db import WRITE
from redline.server.kit.clock import utcnow
from redline.server.kit.periodic import Periodic
from redline.server.runs.service import queue_blob_deletions
from redline.server.tables import artifacts, error_group_cases, error_groups, projects, runs

log = logging.getLogger("redline.retention")

BATCH = 20  # runs per transaction: a run can hold thousands of results


def purge_expired(engine: Engine, batch: int = BATCH) -> int:
    """Delete every run past its project's retention; returns how many were deleted."""
    deleted = 0
    now = utcnow()
    with engine.connect() as conn:
        settings = conn.execute(select(projects.c.id, projects.c.data_retention_days,
                                       projects.c.artifact_retention_days)).all()
    for project_id, days, by_outcome in settings:
        deleted_artifacts = _purge_artifacts(engine, project_id, by_outcome or {}, now, batch)
        cutoff = now - timedelta(days=days)
        while True:
            with engine.connect().execution_options(**WRITE) as conn, conn.begin():
                ids = conn.execute(select(runs.c.id).where(
                    runs.c.project_id == project_id, runs.c.created_at < cutoff)
                    .order_by(runs.c.created_at).limit(batch)).scalars().all()
                if not ids:
                    conn.execute(delete(error_group_cases).where(
                        error_group_cases.c.project_id == project_id,
                        error_group_cases.c.last_seen < cutoff))
                    conn.execute(delete(error_groups).where(
                        error_groups.c.project_id == project_id,
                        error_groups.c.last_seen < cutoff))
                    break
                queue_blob_deletions(conn, artifacts.c.run_id.in_(ids))
                conn.execute(delete(runs).where(runs.c.id.in_(ids)))
                deleted += len(ids)
        if deleted_artifacts:
            log.info("retention: deleted %d artifacts of project %s", deleted_artifacts,
                     project_id)
    if deleted:
        log.info("retention: deleted %d runs past their projects' retention", deleted)
    return deleted


def _purge_artifacts(engine: Engine, project_id: str, by_outcome: dict, now,
                     batch: int) -> int:
    """Artifacts kept for fewer days than their run, by their test's outcome."""
    deleted = 0
    for outcome, days in by_outcome.items():
        cutoff = now - timedelta(days=days)
        while True:
            with engine.connect().execution_options(**WRITE) as conn, conn.begin():
                ids = conn.execute(select(artifacts.c.id).where(
                    artifacts.c.project_id == project_id, artifacts.c.test_status == outcome,
                    artifacts.c.created_at < cutoff).limit(batch * 50)).scalars().all()
                if not ids:
                    break
                queue_blob_deletions(conn, artifacts.c.id.in_(ids))
                conn.execute(delete(artifacts).where(artifacts.c.id.in_(ids)))
                deleted += len(ids)
    return deleted


class RetentionLoop(Periodic):
    """Runs `purge_expired` at once and then every `interval` seconds (the embedded worker
    of `redline serve`), until stopped."""

    def __init__(self, engine: Engine, interval: float = 3600.0):
        super().__init__("redline-retention", interval, first_at_start=True)
        self.engine = engine

    def run_once(self) -> None:
        purge_expired(self.engine)
