"""Queries for test results, test cases and suites; bulk paths are set-based."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import orjson
from sqlalchemy import Connection, func, insert, or_, select
from sqlalchemy.exc import DBAPIError

from redline.server.db import is_nul_in_text
from redline.server.tables import suites, test_results

LOOKUP_CHUNK = 500

log = logging.getLogger("redline.results")


def driver_mark(conn: Connection) -> str:
    """The parameter placeholder of the driver under `conn` (for driver-level statements)."""
    return "%s" if conn.dialect.name == "postgresql" else "?"


# PostgreSQL: one probe of the unique (project, identity) index per identity (the LIMIT keeps
# the planner from turning the lateral subquery into a join of its choice). Without
# statistics for the table (see `_analyze_cases_if_unknown`), the plain
# "project_id = %s AND identity = ANY(%s)" read every case of the project (a bitmap scan on
# project_id): 50-80 ms a chunk of 500 at 100k cases, against 2-7 ms for this. The identities
# go as one array in binary (`%b`: intelligence/stats.py PG_ARRAY).
_PG_CASE_LOOKUP = (
    "SELECT w.identity, c.id, c.tags, c.bucket_id, c.slot FROM unnest(%b::text[]) AS "
    "w(identity) CROSS JOIN LATERAL (SELECT id, tags, bucket_id, slot FROM test_cases "
    "WHERE project_id = %s AND identity = w.identity LIMIT 1) AS c")


def known_cases(conn: Connection, project_id: str,
                identities: list[str]) -> dict[str, tuple[str, object, int, int]]:
    """identity -> (case id, its tags, the bucket and slot of its window) for the project's
    cases among `identities`; the tags as the driver gives them (JSON text on SQLite, decoded
    on PostgreSQL: see `tags_differ`). At the driver level (a 10k-test import looks up 10k
    identities; SQLAlchemy's row handling was most of it)."""
    found: dict[str, tuple[str, object, int, int]] = {}
    mark = driver_mark(conn)
    cursor = conn.connection.driver_connection.cursor()
    try:
        for start in range(0, len(identities), LOOKUP_CHUNK):
            chunk = identities[start:start + LOOKUP_CHUNK]
            if mark == "%s":
                cursor.execute(_PG_CASE_LOOKUP, (chunk, project_id))
            else:
                cursor.execute(
                    "SELECT identity, id, tags, bucket_id, slot FROM test_cases "
                    f"WHERE project_id = ? AND identity IN ({', '.join('?' * len(chunk))})",
                    [project_id, *chunk])
            found.update((row[0], row[1:]) for row in cursor.fetchall())
    finally:
        cursor.close()
    return found


def tags_differ(stored, tags: list | None, encoded: str | None) -> bool:
    """Whether a case's stored tags (as `known_cases` gives them) differ from a result's
    (`tags`, and `encoded` by `encode_json`). On SQLite the text is compared first: it was
    written by the same encoder, nearly always."""
    if isinstance(stored, str):
        return stored != encoded and json.loads(stored) != tags
    return stored != tags


def update_case_tags(conn: Connection, rows: list[tuple[str | None, str]]) -> None:
    """(tags as JSON text, case id) pairs."""
    if rows:
        conn.exec_driver_sql(
            f"UPDATE test_cases SET tags = {_json_mark(conn)} WHERE id = {driver_mark(conn)}",
            rows)


def _json_mark(conn: Connection) -> str:
    return "%s::jsonb" if conn.dialect.name == "postgresql" else "?"


def run_outcomes(conn: Connection, run_id: str) -> list[tuple[str, str, str]]:
    """(case id, status, result id) of every result of a run, at the driver level: a run
    holds thousands of results, and plain tuples are all a comparison needs."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute("SELECT test_case_id, status, id FROM test_results "
                       f"WHERE run_id = {driver_mark(conn)}", (run_id,))
        return cursor.fetchall()
    finally:
        cursor.close()


CASE_COLUMNS = ("id", "project_id", "identity", "file_path", "full_title", "title", "variant",
                "tags", "created_at", "bucket_id", "slot", "status")


def insert_cases(conn: Connection, rows: list[tuple]) -> None:
    """Insert new test cases (tuples in CASE_COLUMNS order); ones a concurrent import just
    made are skipped, not errors. Driver-level, like `insert_results`."""
    if not rows:
        return
    mark = driver_mark(conn)
    marks = [_json_mark(conn) if column == "tags" else mark for column in CASE_COLUMNS]
    conn.exec_driver_sql(
        f"INSERT INTO test_cases ({', '.join(CASE_COLUMNS)}) VALUES ({', '.join(marks)}) "
        "ON CONFLICT (project_id, identity) DO NOTHING", rows)
    if conn.dialect.name == "postgresql":
        _analyze_cases_if_unknown(conn)


def _analyze_cases_if_unknown(conn: Connection) -> None:
    """PostgreSQL plans by a table's statistics, and a new database's `test_cases` has none
    until something analyzes it: autovacuum, after an import's commit, where it runs at all.
    Without them the planner guesses the selectivity of project_id and identity alike and,
    for a lookup by (project, identity), may read every case of the project through any
    index that starts with project_id, once per chunk of identities. Analyzed once, inside
    the transaction (where this import's own new cases count), the planner knows the columns
    and the rows' density, and its estimates follow the table's size from then on. Another
    transaction analyzing it at the same moment is left to it: its lock is not waited for."""
    believed = conn.exec_driver_sql(
        "SELECT reltuples FROM pg_class WHERE oid = 'test_cases'::regclass").scalar()
    if believed > 0:  # -1: never analyzed; 0: analyzed (or indexed) while empty
        return
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("SET LOCAL lock_timeout = '100ms'")
            conn.exec_driver_sql("ANALYZE test_cases")
            conn.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")
    except DBAPIError:
        log.info("test_cases is being analyzed by another transaction; not waiting for it")


def driver_datetime(conn: Connection, value: datetime):
    """A timestamp as the driver-level inserts pass it."""
    return value if conn.dialect.name == "postgresql" else sqlite_datetime(value)


RESULT_COLUMNS = ("id", "run_id", "project_id", "test_case_id", "suite_id", "title",
                  "full_title", "file_path", "line_number", "variant", "status", "duration",
                  "retries", "attempt", "is_flaky", "tags", "annotations", "error", "steps",
                  "stdout", "stderr", "extra", "error_fingerprint", "created_at")
JSON_COLUMNS = {"tags", "annotations", "error", "steps", "extra"}
# The JSON columns of a result (its steps above all) are encoded by orjson: a third of the
# time of the standard library's encoder on a Playwright report's results (23 against 71 ms
# for 10,000). What orjson refuses (an integer beyond 64 bits, nesting deeper than 255, a lone
# surrogate) the standard library encodes as before: one encoder for those, as json.dumps
# with arguments builds a new JSONEncoder per call; the values are trees fresh from a parser
# or a request body, never cyclic, so its check for cycles is left out.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS  # keys that are numbers become strings, as in json
_encode_fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                    check_circular=False).encode


def encode_json(value) -> str | None:
    """JSON text for a JSON column (written by the driver directly on the hot path)."""
    if value is None:
        return None
    if not value and isinstance(value, (list, dict)):
        return "[]" if isinstance(value, list) else "{}"
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # (orjson.JSONEncodeError is one)
        return _encode_fallback(value)


def sqlite_datetime(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime type stores (so reads parse it the same)."""
    return f"{value:%Y-%m-%d %H:%M:%S.%f}"


def insert_results(conn: Connection, rows: list[tuple]) -> None:
    """Bulk insert of result rows (tuples in RESULT_COLUMNS order, JSON already encoded).

    The hot path of ingestion talks to the driver directly: COPY on PostgreSQL, one
    executemany on SQLite. Both run inside the caller's transaction."""
    if not rows:
        return
    columns = ", ".join(RESULT_COLUMNS)
    if conn.dialect.name == "postgresql":
        # PostgreSQL's text cannot hold U+0000, which a test's output sometimes does (a test
        # that prints binary): a chunk refused for one is written again with U+FFFD in its
        # place, rather than the whole import refused. The savepoint keeps the transaction
        # usable after the refusal; the usual chunk pays its two round trips and nothing else.
        try:
            with conn.begin_nested():
                copy_rows(conn, "test_results", columns, rows)
        except Exception as exc:
            if not is_nul_in_text(exc):
                raise
            copy_rows(conn, "test_results", columns, [_without_nul(row) for row in rows])
    else:
        marks = ", ".join("?" * len(RESULT_COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO test_results ({columns}) VALUES ({marks})", rows)


def copy_rows(conn: Connection, table: str, columns: str, rows: list[tuple]) -> None:
    """PostgreSQL: `rows` into `table` by COPY (`columns`: their names, comma-separated)."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()


_JSON_AT = frozenset(i for i, column in enumerate(RESULT_COLUMNS) if column in JSON_COLUMNS)


def _without_nul(row: tuple) -> tuple:
    """A result row with every U+0000 replaced by U+FFFD, in its text and in its JSON (where
    it is written as the escape \\u0000: decoded, replaced in every string, encoded again)."""
    cleaned = []
    for index, value in enumerate(row):
        if index in _JSON_AT and value is not None and "\\u0000" in value:
            value = encode_json(_replace_nul(json.loads(value)))
        elif isinstance(value, str):
            value = value.replace("\x00", "\ufffd")
        cleaned.append(value)
    return tuple(cleaned)


def _replace_nul(value):
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_replace_nul(item) for item in value]
    if isinstance(value, dict):
        return {_replace_nul(key): _replace_nul(item) for key, item in value.items()}
    return value


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
