"""Artifact rows."""

from __future__ import annotations

from sqlalchemy import Connection, Text, cast, delete, func, insert, select

from redline.server.tables import artifacts, jobs, test_results


def insert_artifact(conn: Connection, values: dict) -> None:
    conn.execute(insert(artifacts).values(**values))


def get_artifact(conn: Connection, artifact_id: str):
    return conn.execute(select(artifacts).where(artifacts.c.id == artifact_id)).first()


def list_artifacts(conn: Connection, project_id: str, run_id: str | None, test_id: str | None,
                   artifact_type: str | None, limit: int, offset: int):
    where = [artifacts.c.project_id == project_id]
    if run_id is not None:
        where.append(artifacts.c.run_id == run_id)
    if test_id is not None:
        where.append(artifacts.c.test_id == test_id)
    if artifact_type is not None:
        where.append(artifacts.c.type == artifact_type)
    total = conn.execute(select(func.count()).select_from(artifacts).where(*where)).scalar_one()
    rows = conn.execute(select(artifacts).where(*where)
                        .order_by(artifacts.c.created_at, artifacts.c.id)
                        .limit(limit).offset(offset)).all()
    return rows, total


def delete_artifact(conn: Connection, artifact_id: str) -> None:
    conn.execute(delete(artifacts).where(artifacts.c.id == artifact_id))


def keys_in_use(conn: Connection, keys: list[str]) -> set[str]:
    used: set[str] = set()
    for start in range(0, len(keys), 500):
        batch = keys[start:start + 500]
        used.update(conn.execute(select(artifacts.c.storage_key)
                                 .where(artifacts.c.storage_key.in_(batch))).scalars())
    return used


def storage_keys(conn: Connection, *where) -> list[str]:
    return list(conn.execute(select(artifacts.c.storage_key).where(*where)).scalars())


def results_with_attachment(conn: Connection, run_id: str, file_name: str):
    """(id, status, extra) of the run's results whose stored attachments may name this file.

    The text match narrows the scan in SQL; the caller checks the JSON itself. Names the
    JSON text may spell differently (escaped characters) fall back to the run's results
    that have any extra data."""
    where = [test_results.c.run_id == run_id, test_results.c.extra.is_not(None)]
    if file_name.isascii() and file_name.isprintable() and not any(c in file_name for c in
                                                                    '"\\'):
        where.append(cast(test_results.c.extra, Text).contains(file_name, autoescape=True))
    return conn.execute(select(test_results.c.id, test_results.c.status, test_results.c.extra)
                        .where(*where)).all()


def drop_job(conn: Connection, job_id: str) -> None:
    """Cancel a queued job in the caller's transaction (a guard whose reason went away)."""
    conn.execute(delete(jobs).where(jobs.c.id == job_id, jobs.c.status == "queued"))
