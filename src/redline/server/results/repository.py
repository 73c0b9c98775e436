"""Queries for test results, test cases and suites; bulk paths are set-based.

The hot path of ingestion (looking up an import's cases, inserting new cases and results,
retagging cases) talks to the driver directly, through `ingestion_writer(conn)`: one writer
per database (`SqliteIngestion`, `PostgresIngestion`) behind the interface of
`IngestionWriter`. Its rows are `NewCase` and `ResultRow`, named tuples whose fields are
columns of `tables.test_cases` and `tables.test_results` (the table definitions decide their
names, their order and which hold JSON).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from sqlalchemy import JSON, Connection, func, insert, or_, select
from sqlalchemy.exc import DBAPIError

from redline.server.db import is_nul_in_text
from redline.server.kit.bulk import (
    PG_ARRAY,
    driver_connection,
    pg_copy_rows,
    pg_execute_arrays,
    pg_rows,
    plain_tuples,
    row_type,
    sqlite_datetime,
)
from redline.server.kit.like import icontains
from redline.server.tables import suites, test_cases, test_results

LOOKUP_CHUNK = 2500  # identities per lookup statement

log = logging.getLogger("redline.results")

if TYPE_CHECKING:
    # Named tuples whose fields are read from the tables: mypy cannot know them.
    ResultRow = Any
    NewCase = Any
else:
    # A result as stored: every column of `test_results`, in the table's order
    # (`ResultRow.of`: by keyword).
    ResultRow = row_type("ResultRow", test_results)
    # A new case as an import creates it: these columns of `test_cases` (the others take
    # their defaults: not quarantined, no quarantine history).
    NewCase = row_type("NewCase", test_cases, (
        "id", "project_id", "identity", "file_path", "full_title", "title", "variant", "tags",
        "created_at", "bucket_id", "slot", "status"))


def _json_columns(table, names: Sequence[str]) -> frozenset[str]:
    """The columns among `names` that hold JSON (their text is written as such)."""
    return frozenset(name for name in names if isinstance(table.c[name].type, JSON))


JSON_COLUMNS = _json_columns(test_results, ResultRow._fields)
_CASE_JSON = _json_columns(test_cases, NewCase._fields)
_JSON_AT = frozenset(i for i, column in enumerate(ResultRow._fields) if column in JSON_COLUMNS)


class KnownCase(NamedTuple):
    """A stored case as an import needs it: its id, its tags as JSON text (see
    `tags_differ`), where its window lives, and its identity."""

    id: str
    tags: object
    bucket_id: int
    slot: int
    identity: str


class ResultOutcome(NamedTuple):
    """A result of a run, as a comparison of two runs needs it."""

    test_case_id: str
    status: str
    id: str


# PostgreSQL: one probe of the unique (project, identity) index per identity (the LIMIT keeps
# the planner from turning the lateral subquery into a join of its choice). Without
# statistics for the table (see `_analyze_cases_if_unknown`), the plain
# "project_id = %s AND identity = ANY(%s)" read every case of the project (a bitmap scan on
# project_id): 50-80 ms a chunk of 500 at 100k cases, against 2-7 ms for this. The identities
# go as one array in binary (kit/bulk.py PG_ARRAY). The tags come as JSON text, as on SQLite:
# decoding every case's (an empty list nearly always) was a twentieth of a repeated import.
_PG_CASE_LOOKUP = (
    f"SELECT c.id, c.tags::text, c.bucket_id, c.slot, w.identity "
    f"FROM unnest({PG_ARRAY}::text[]) "
    "AS w(identity) CROSS JOIN LATERAL (SELECT id, tags, bucket_id, slot FROM test_cases "
    "WHERE project_id = %s AND identity = w.identity LIMIT 1) AS c")


# PostgreSQL: a chunk of new cases in one INSERT (`NewCase`'s columns, one array each).
_PG_CASE_TYPES = {"id": "text", "project_id": "text", "identity": "text", "file_path": "text",
                  "full_title": "text", "title": "text", "variant": "text", "tags": "jsonb",
                  "created_at": "timestamp", "bucket_id": "int4", "slot": "int4",
                  "status": "text"}
_PG_INSERT_CASES = (
    f"INSERT INTO test_cases ({', '.join(NewCase._fields)}) SELECT * FROM "
    f"{pg_rows(NewCase._fields, tuple(_PG_CASE_TYPES[name] for name in NewCase._fields))} "
    "ON CONFLICT (project_id, identity) DO NOTHING")


class IngestionWriter:
    """The driver-level reads and writes of ingestion on one connection, inside the caller's
    transaction (`ingestion_writer` gives the one of the connection's database). A 10k-test
    import looks up 10k identities: SQLAlchemy's row handling was most of it."""

    mark = "?"  # the driver's placeholder

    def __init__(self, conn: Connection):
        self.conn = conn

    def driver_time(self, value: datetime):
        """A time as the driver-level inserts pass it."""
        return value

    def _json_mark(self) -> str:
        return self.mark

    def known_cases(self, project_id: str, identities: list[str]) -> dict[str, KnownCase]:
        """identity -> the project's case of that identity, for those among `identities`."""
        found: dict[str, KnownCase] = {}
        cursor = driver_connection(self.conn).cursor()
        try:
            for start in range(0, len(identities), LOOKUP_CHUNK):
                self._lookup(cursor, project_id, identities[start:start + LOOKUP_CHUNK])
                found.update((case.identity, case)
                             for case in map(KnownCase._make, cursor.fetchall()))
        finally:
            cursor.close()
        return found

    def _lookup(self, cursor, project_id: str, chunk: list[str]) -> None:
        cursor.execute(
            "SELECT id, tags, bucket_id, slot, identity FROM test_cases "
            f"WHERE project_id = ? AND identity IN ({', '.join('?' * len(chunk))})",
            [project_id, *chunk])

    def insert_cases(self, rows: Sequence[NewCase]) -> bool:
        """Insert new test cases; ones a concurrent import just made are skipped, not errors.
        Answers whether every row was inserted (else the caller reads back which won)."""
        if not rows:
            return True
        columns = NewCase._fields
        marks = ", ".join(self._json_mark() if column in _CASE_JSON else self.mark
                          for column in columns)
        inserted = self.conn.exec_driver_sql(
            f"INSERT INTO test_cases ({', '.join(columns)}) VALUES ({marks}) "
            "ON CONFLICT (project_id, identity) DO NOTHING", list(plain_tuples(rows))).rowcount
        return inserted == len(rows)  # (sqlite3 sums an executemany's changes)

    def update_case_tags(self, rows: list[tuple[str | None, str]]) -> None:
        """(tags as JSON text, case id) pairs."""
        if rows:
            self.conn.exec_driver_sql(
                f"UPDATE test_cases SET tags = {self._json_mark()} WHERE id = {self.mark}", rows)

    def insert_results(self, rows: Sequence[ResultRow]) -> None:
        """Bulk insert of results (JSON already encoded): one executemany."""
        if rows:
            columns = ResultRow._fields
            self.conn.exec_driver_sql(
                f"INSERT INTO test_results ({', '.join(columns)}) "
                f"VALUES ({', '.join([self.mark] * len(columns))})", list(plain_tuples(rows)))

    def run_outcomes(self, run_id: str) -> list[ResultOutcome]:
        cursor = driver_connection(self.conn).cursor()
        try:
            cursor.execute("SELECT test_case_id, status, id FROM test_results "
                           f"WHERE run_id = {self.mark}", (run_id,))
            return [ResultOutcome(*row) for row in cursor.fetchall()]
        finally:
            cursor.close()


class SqliteIngestion(IngestionWriter):
    """SQLite: `?` parameters, times as the text SQLAlchemy stores, executemany."""

    def driver_time(self, value: datetime):
        return sqlite_datetime(value)


class PostgresIngestion(IngestionWriter):
    """PostgreSQL: `%s` parameters, identities as one binary array, results by COPY, JSON
    cast to jsonb, and the cases' table analyzed once when the planner knows nothing of it."""

    mark = "%s"

    def _json_mark(self) -> str:
        return "%s::jsonb"

    def _lookup(self, cursor, project_id: str, chunk: list[str]) -> None:
        cursor.execute(_PG_CASE_LOOKUP, (chunk, project_id))

    def insert_cases(self, rows: Sequence[NewCase]) -> bool:
        """One statement for the whole chunk, its rows as one array per column: an
        executemany of 100,000 new cases (a big suite's first import) made 100,000 statements
        in the pipeline, about a fifth of the import's CPU and as long again waiting for the
        server (issue 21)."""
        if not rows:
            return True
        inserted = pg_execute_arrays(self.conn, _PG_INSERT_CASES, rows)
        self._analyze_cases_if_unknown()
        return inserted == len(rows)

    def _analyze_cases_if_unknown(self) -> None:
        """PostgreSQL plans by a table's statistics, and a new database's `test_cases` has
        none until something analyzes it: autovacuum, after an import's commit, where it runs
        at all. Without them the planner guesses the selectivity of project_id and identity
        alike and, for a lookup by (project, identity), may read every case of the project
        through any index that starts with project_id, once per chunk of identities. Analyzed
        once, inside the transaction (where this import's own new cases count), the planner
        knows the columns and the rows' density, and its estimates follow the table's size
        from then on. Another transaction analyzing it at the same moment is left to it: its
        lock is not waited for."""
        conn = self.conn
        believed = conn.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE oid = 'test_cases'::regclass").scalar()
        assert believed is not None  # (the table exists)
        if believed > 0:  # -1: never analyzed; 0: analyzed (or indexed) while empty
            return
        try:
            with conn.begin_nested():
                conn.exec_driver_sql("SET LOCAL lock_timeout = '100ms'")
                conn.exec_driver_sql("ANALYZE test_cases")
                conn.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")
        except DBAPIError:
            log.info("test_cases is being analyzed by another transaction; not waiting for it")

    def insert_results(self, rows: Sequence[ResultRow]) -> None:
        """By COPY. PostgreSQL's text cannot hold U+0000, which a test's output sometimes does
        (a test that prints binary): a chunk refused for one is written again with U+FFFD in
        its place, rather than the whole import refused. The savepoint keeps the transaction
        usable after the refusal; the usual chunk pays its two round trips and nothing else."""
        if not rows:
            return
        columns = ResultRow._fields
        try:
            with self.conn.begin_nested():
                pg_copy_rows(self.conn, "test_results", columns, rows)
        except Exception as exc:
            if not is_nul_in_text(exc):
                raise
            pg_copy_rows(self.conn, "test_results", columns,
                         [_without_nul(row) for row in rows])


def ingestion_writer(conn: Connection) -> IngestionWriter:
    """The ingestion writer of the connection's database."""
    if conn.dialect.name == "postgresql":
        return PostgresIngestion(conn)
    return SqliteIngestion(conn)


# For callers with one statement to run (a writer is made per call).

def known_cases(conn: Connection, project_id: str,
                identities: list[str]) -> dict[str, KnownCase]:
    return ingestion_writer(conn).known_cases(project_id, identities)


def insert_cases(conn: Connection, rows: Sequence[NewCase]) -> bool:
    """Insert new test cases (`NewCase`s, or tuples in its fields' order); answers whether
    all were (none was made meanwhile by a concurrent import)."""
    return ingestion_writer(conn).insert_cases(rows)


def insert_results(conn: Connection, rows: Sequence[ResultRow]) -> None:
    ingestion_writer(conn).insert_results(rows)


def run_outcomes(conn: Connection, run_id: str) -> list[ResultOutcome]:
    """Every result of a run (case, status, id), at the driver level: a run holds thousands
    of results, and these are all a comparison needs."""
    return ingestion_writer(conn).run_outcomes(run_id)


def tags_differ(stored, tags: list | None, encoded: str | None) -> bool:
    """Whether a case's stored tags (as `known_cases` gives them) differ from a result's
    (`tags`, and `encoded` by `encode_json`). The text is compared first: on SQLite it was
    written by the same encoder, nearly always; PostgreSQL spells a non-empty list its own
    way, which is then decoded."""
    if isinstance(stored, str):
        return stored != encoded and json.loads(stored) != tags
    return stored != tags


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


def _without_nul(row: ResultRow) -> ResultRow:
    """A result row with every U+0000 replaced by U+FFFD, in its text and in its JSON (where
    it is written as the escape \\u0000: decoded, replaced in every string, encoded again)."""
    cleaned = []
    for index, value in enumerate(row):
        if index in _JSON_AT and value is not None and "\\u0000" in value:
            value = encode_json(_replace_nul(json.loads(value)))
        elif isinstance(value, str):
            value = value.replace("\x00", "\ufffd")
        cleaned.append(value)
    return ResultRow._make(cleaned)


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
        where.append(or_(icontains(test_results.c.full_title, search),
                         icontains(test_results.c.file_path, search)))
    total = conn.execute(select(func.count()).select_from(test_results).where(*where)
                         ).scalar_one()
    # failed first, then by position in the run (ids are time-sortable)
    order = [test_results.c.created_at.desc(), test_results.c.id] if not run_id else [
        test_results.c.id]
    rows = conn.execute(select(*_list_columns).where(*where).order_by(*order)
                        .limit(limit).offset(offset)).all()
    return rows, total
