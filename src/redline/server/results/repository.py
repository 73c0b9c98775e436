"""Queries for test results, test cases and suites; bulk paths are set-based."""

from __future__ import annotations

from sqlalchemy import Connection, func, insert, or_, select

from redline.server.tables import suites, test_cases, test_results

LOOKUP_CHUNK = 500


def case_ids(conn: Connection, project_id: str, identities: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(identities), LOOKUP_CHUNK):
        chunk = identities[start:start + LOOKUP_CHUNK]
        found.update(conn.execute(select(test_cases.c.identity, test_cases.c.id).where(
            test_cases.c.project_id == project_id, test_cases.c.identity.in_(chunk))).all())
    return found


def insert_cases(conn: Connection, rows: list[dict]) -> None:
    """Insert new test cases; ones a concurrent import just made are skipped, not errors."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    conn.execute(dialect_insert(test_cases).on_conflict_do_nothing(
        index_elements=["project_id", "identity"]), rows)


def insert_results(conn: Connection, rows: list[dict]) -> None:
    if rows:
        conn.execute(insert(test_results), rows)


def run_suites(conn: Connection, run_id: str):
    return conn.execute(select(suites).where(suites.c.run_id == run_id)
                        .order_by(suites.c.id)).all()


def insert_suites(conn: Connection, rows: list[dict]) -> None:
    if rows:
        conn.execute(insert(suites), rows)


def get_suite(conn: Connection, suite_id: str):
    return conn.execute(select(suites).where(suites.c.id == suite_id)).first()


def get_result(conn: Connection, result_id: str):
    return conn.execute(select(test_results).where(test_results.c.id == result_id)).first()


_list_columns = (test_results.c.id, test_results.c.run_id, test_results.c.test_case_id,
                 test_results.c.title, test_results.c.full_title, test_results.c.file_path,
                 test_results.c.variant, test_results.c.status, test_results.c.duration,
                 test_results.c.is_flaky, test_results.c.error, test_results.c.created_at)


def list_results(conn: Connection, project_id: str, run_id: str | None, status: str | None,
                 search: str | None, limit: int, offset: int):
    where = [test_results.c.project_id == project_id]
    if run_id:
        where.append(test_results.c.run_id == run_id)
    if status:
        where.append(test_results.c.status == status)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(or_(test_results.c.full_title.ilike(pattern, escape="\\"),
                         test_results.c.file_path.ilike(pattern, escape="\\")))
    total = conn.execute(select(func.count()).select_from(test_results).where(*where)
                         ).scalar_one()
    # failed first, then by position in the run (ids are time-sortable)
    order = [test_results.c.created_at.desc(), test_results.c.id] if not run_id else [
        test_results.c.id]
    rows = conn.execute(select(*_list_columns).where(*where).order_by(*order)
                        .limit(limit).offset(offset)).all()
    return rows, total
