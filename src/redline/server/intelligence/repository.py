"""The SQL of test intelligence: what `stats.apply_run` reads and writes when a run completes,
the reads of the windows' slots, and the reads of the intelligence service (cases, history,
flakiness, error groups, trends: at the end, dialect-neutral).

`statistics_store(conn)` gives the store of the connection's database: `SqliteStatistics` or
`PostgresStatistics`, one writer per dialect behind the one interface of `StatisticsStore`;
nothing outside this module asks which database it talks to. A run touches thousands of
cases: its reads and writes go to the driver directly, set-based (SQLite with executemany,
its per-row cost being its b-tree work; PostgreSQL with one statement per batch from one
array per column, or COPY), and their rows are the named tuples below, whose fields name the
columns they are written to or read from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, Text, and_, cast, func, insert, or_, select, update
from sqlalchemy import case as case_when

from redline.server.intelligence.scoring import WindowCodec
from redline.server.kit.bulk import (
    PG_ARRAY,
    column_names,
    driver_connection,
    pg_copy_rows,
    pg_execute_arrays,
    pg_rows,
    plain_tuples,
    sqlite_datetime,
)
from redline.server.kit.like import icontains
from redline.server.tables import (
    error_group_cases,
    error_groups,
    projects,
    quarantine_events,
    runs,
    test_case_windows,
    test_cases,
    test_results,
    window_buckets,
)

CHUNK = 500  # ids per IN list


# -- the rows -------------------------------------------------------------------------------

class RunOutcome(NamedTuple):
    """One result of a run as its statistics take it: its case, where the case's window lives
    (a slot of its file's bucket), the result's status, duration and time (in the driver's
    form: SQLite's text sorts as the times do)."""

    case_id: str
    bucket_id: int
    slot: int
    status: str
    duration: int
    created_at: object


class WindowFigures(NamedTuple):
    """The `test_case_windows` figures of a window whose outcomes moved. A time of the last
    evidence or failure is kept while one stays in the window (`keep_*`) unless this run gave
    a newer one (`*_at`), so that the figures are written without being read first."""

    flaky_runs: int
    failed_runs: int
    last_status: str | None
    keep_flaky: bool
    flaky_at: object
    keep_failed: bool
    failed_at: object
    flakiness_score: float
    test_case_id: str


class FirstFigures(NamedTuple):
    """The `test_case_windows` row of a window that got its first result (its columns)."""

    flaky_runs: int
    failed_runs: int
    last_status: str | None
    last_flaky_at: object
    last_failed_at: object
    flakiness_score: float
    test_case_id: str
    project_id: str


_FIRST_COLUMNS = column_names(test_case_windows, FirstFigures._fields)


class StatusChange(NamedTuple):
    """A case's new `test_cases.status`."""

    status: str
    id: str


class CaseStanding(NamedTuple):
    """What judging a case's new status needs of its `test_cases` row (times in the driver's
    form)."""

    status: str
    is_quarantined: bool
    quarantine_manual: bool
    quarantine_expires_at: object


class BucketTail(NamedTuple):
    """A file's last bucket: its id, its part (0, 1, ... as the file's cases fill buckets)
    and the slots it has given."""

    id: int
    part: int
    slots: int


class Failure(NamedTuple):
    """A failure of a run, as its error group counts it (its error as the driver gives it)."""

    test_case_id: str
    created_at: object
    error: object
    error_fingerprint: str


@dataclass(slots=True)
class ErrorGroupCount:
    """An `error_groups` row as a run adds to it (the fields are its columns)."""

    project_id: str
    fingerprint: str
    message: str
    error_type: str | None
    first_seen: Any  # (times in the driver's form)
    last_seen: Any
    occurrences: int


@dataclass(slots=True)
class ErrorGroupCaseCount:
    """An `error_group_cases` row as a run adds to it (the fields are its columns)."""

    project_id: str
    fingerprint: str
    test_case_id: str
    first_seen: Any
    last_seen: Any
    occurrences: int


class StoredWindow(NamedTuple):
    """A case's window as stored: its figures' row, its status, its slot and bucket."""

    figures: Any  # the `test_case_windows` row
    status: str
    slot: int
    bucket: bytearray  # the bucket's slots (`WindowCodec.load_bucket`)


# -- the store ------------------------------------------------------------------------------

class StatisticsStore:
    """The statistics' reads and writes on one connection. The statements common to both
    databases are here; a subclass gives each database's own (`statistics_store`)."""

    mark = "?"  # the driver's placeholder

    def __init__(self, conn: Connection):
        self.conn = conn

    def _cursor(self, binary: bool = False):
        return driver_connection(self.conn).cursor()

    def _in(self, column: str, values: Sequence) -> tuple[str, tuple]:
        """`column IN (values)` at the driver level, and its parameters."""
        return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)

    def driver_time(self, moment: datetime):
        """A time as the driver-level statements pass and compare it."""
        return moment

    @staticmethod
    def day_of(moment):
        """The day of a time column, as text `YYYY-MM-DD`."""
        raise NotImplementedError

    # the run and its project

    def run(self, run_id: str):
        return self.conn.execute(select(runs).where(runs.c.id == run_id)).first()

    def project_rules(self, project_id: str) -> tuple[float, bool]:
        """(flakiness threshold, automatic quarantine enabled) of a project."""
        return tuple(self.conn.execute(
            select(projects.c.flakiness_threshold, projects.c.auto_quarantine_enabled)
            .where(projects.c.id == project_id)).one())

    def set_verdict(self, run_id: str, verdict: str, quarantined_failures: int) -> None:
        self.conn.execute(update(runs).where(runs.c.id == run_id).values(
            verdict=verdict, quarantined_failures=quarantined_failures, stats_applied=True))

    def lock_project(self, project_id: str) -> None:
        """One transaction at a time per project gives slots or completes a run (which
        rewrites whole buckets), until it ends. (SQLite has one writer: nothing to do.)"""

    # reads of a run's cases

    def run_outcomes(self, run_id: str) -> Iterator[RunOutcome]:
        """The run's results, by bucket then case, each case's in arrival order (SQLite: the
        rowid, in every index, stands for it), streamed by SQLite's own stepping."""
        cursor = self._cursor()
        try:
            cursor.execute(_results_by_case_sql("?", "r.rowid"), (run_id,))
            yield from map(RunOutcome._make, cursor)
        finally:
            cursor.close()

    def case_standings(self, case_ids: list[str]) -> dict[str, CaseStanding]:
        found: dict[str, CaseStanding] = {}
        cursor = self._cursor()
        try:
            for start in range(0, len(case_ids), CHUNK):
                condition, params = self._in("id", case_ids[start:start + CHUNK])
                cursor.execute("SELECT id, status, is_quarantined, quarantine_manual, "
                               f"quarantine_expires_at FROM test_cases WHERE {condition}",
                               params)
                found.update((row[0], CaseStanding(*row[1:])) for row in cursor.fetchall())
        finally:
            cursor.close()
        return found

    def quarantined_at(self, case_ids: list[str], moment: datetime) -> set[str]:
        """The cases among `case_ids` that were quarantined at `moment` (from the quarantine
        history: the last event of each at or before it)."""
        quarantined: set[str] = set()
        when = self.driver_time(moment)
        cursor = self._cursor()
        try:
            for start in range(0, len(case_ids), CHUNK):
                condition, params = self._in("test_case_id", case_ids[start:start + CHUNK])
                cursor.execute(
                    "SELECT test_case_id, action, expires_at FROM quarantine_events "
                    f"WHERE {condition} AND created_at <= {self.mark} ORDER BY created_at, id",
                    (*params, when))
                last: dict[str, tuple] = {}
                for case_id, action, expires in cursor.fetchall():  # oldest first: last wins
                    last[case_id] = (action, expires)
                quarantined |= {case for case, (action, expires) in last.items()
                                if action == "quarantine" and (expires is None or expires > when)}
        finally:
            cursor.close()
        return quarantined

    # buckets

    def file_tails(self, project_id: str, paths: list[str]) -> dict[str, BucketTail]:
        """file path -> its last bucket, for the files among `paths` that have buckets."""
        tails: dict[str, BucketTail] = {}
        for start in range(0, len(paths), CHUNK):
            condition, params = self._in("file_path", paths[start:start + CHUNK])
            for path, bucket_id, part, slots in self.conn.exec_driver_sql(
                    f"SELECT file_path, id, part, slots FROM window_buckets "
                    f"WHERE project_id = {self.mark} AND {condition} ORDER BY part",
                    (project_id, *params)):
                tails[path] = BucketTail(bucket_id, part, slots)
        return tails

    def set_slots(self, slots: dict[int, int]) -> None:
        """bucket id -> the slots it has given now."""
        if slots:
            self.conn.exec_driver_sql(
                f"UPDATE window_buckets SET slots = {self.mark} WHERE id = {self.mark}",
                [(count, bucket_id) for bucket_id, count in slots.items()])

    def create_buckets(self, project_id: str,
                       fresh: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Insert empty buckets ((file, part) -> slots given): (file, part) -> id. One
        statement per 400 buckets (a first import of 100,000 tests makes 2,000 of them)."""
        created: dict[tuple[str, int], int] = {}
        empty = WindowCodec.empty_bucket()
        values = [(project_id, path, part, slots, empty) for (path, part), slots in fresh.items()]
        for start in range(0, len(values), 400):
            for bucket_id, path, part in self._insert_buckets(values[start:start + 400]):
                created[path, part] = bucket_id
        return created

    def _insert_buckets(self, rows: list[tuple]):
        # (RETURNING gives no order: each row says which bucket it is)
        return self.conn.exec_driver_sql(
            "INSERT INTO window_buckets (project_id, file_path, part, slots, state) VALUES "
            f"{', '.join(['(?, ?, ?, ?, ?)'] * len(rows))} RETURNING id, file_path, part",
            tuple(value for row in rows for value in row))

    def load_buckets(self, ids: list[int]) -> Iterator[tuple[int, bytearray]]:
        """(id, its slots: `WindowCodec.load_bucket`) of the buckets with these ids."""
        cursor = self._cursor(binary=True)
        try:
            for start in range(0, len(ids), CHUNK):
                condition, params = self._in("id", ids[start:start + CHUNK])
                cursor.execute(f"SELECT id, state FROM window_buckets WHERE {condition}",
                               params)
                for bucket_id, state in cursor.fetchall():
                    yield bucket_id, WindowCodec.load_bucket(state)
        finally:
            cursor.close()

    def write_buckets(self, buckets: dict[int, bytearray]) -> None:
        """Store these buckets' slots (id -> slots), whole."""
        if buckets:
            self.conn.exec_driver_sql(
                f"UPDATE window_buckets SET state = {self.mark} WHERE id = {self.mark}",
                [(WindowCodec.dump_bucket(buckets[i]), i) for i in sorted(buckets)])

    # the figures and statuses a run changed

    def write_figures(self, figures: list[WindowFigures], first: list[FirstFigures],
                      changed: list[StatusChange]) -> None:
        for statement, rows in ((_SQLITE_UPDATE_FIGURES, figures),
                                (_SQLITE_INSERT_FIGURES, first),
                                (_SQLITE_UPDATE_STATUS, changed)):
            if rows:
                self.conn.exec_driver_sql(statement, list(plain_tuples(rows)))

    # error groups

    def run_failures(self, run_id: str) -> Iterator[Failure]:
        """The run's failures that have a fingerprint (only failures have one: the status
        narrows the scan of the (run, status) index to them)."""
        for row in self.conn.exec_driver_sql(_failures_sql(self.mark, "error"), (run_id,)):
            yield Failure(*row)

    @staticmethod
    def decode_error(error) -> dict:
        return (json.loads(error) if isinstance(error, str) else error) or {}

    def merge_error_groups(self, groups: list[ErrorGroupCount],
                           cases: list[ErrorGroupCaseCount]) -> None:
        """Add a run's counts to its error groups and their cases, creating those not there."""
        for table, key, rows in _error_tables(groups, cases):
            columns = column_names(table, _fields(rows[0]))
            self.conn.exec_driver_sql(
                f"INSERT INTO {table.name} ({', '.join(columns)}) "
                f"VALUES ({', '.join([self.mark] * len(columns))}) "
                f"{_merge_counts(table.name, key, 'max')}",
                [_values(row) for row in rows])

    # quarantine

    def add_quarantine_events(self, rows: list[dict]) -> None:
        self.conn.execute(insert(quarantine_events), rows)

    def set_quarantine_flags(self, case_ids: list[str], values: dict) -> None:
        for start in range(0, len(case_ids), CHUNK):
            self.conn.execute(update(test_cases).where(
                test_cases.c.id.in_(case_ids[start:start + CHUNK])).values(**values))

    def case_titles(self, case_ids: list[str]) -> Iterator:
        """(id, full_title, file_path) of these cases, by id, read a chunk at a time (as an
        event's payload is built)."""
        for start in range(0, len(case_ids), CHUNK):
            yield from self.conn.execute(
                select(test_cases.c.id, test_cases.c.full_title, test_cases.c.file_path)
                .where(test_cases.c.id.in_(case_ids[start:start + CHUNK]))
                .order_by(test_cases.c.id))

    # reads of stored windows

    def case_threshold(self, case_id: str) -> float:
        return self.conn.execute(
            select(projects.c.flakiness_threshold).join(
                test_cases, test_cases.c.project_id == projects.c.id)
            .where(test_cases.c.id == case_id)).scalar_one()

    def window_results(self, case_id: str, limit: int) -> Sequence:
        """The case's newest `limit` results that ran, from runs whose statistics are
        applied, newest first, with their run's commit and counts."""
        return self.conn.execute(
            select(test_results.c.status, test_results.c.duration, test_results.c.created_at,
                   runs.c.id.label("run_id"), runs.c.commit_sha,
                   runs.c.failed_tests, runs.c.total_tests, runs.c.skipped_tests)
            .join(runs, runs.c.id == test_results.c.run_id)
            .where(test_results.c.test_case_id == case_id, test_results.c.status != "skipped",
                   runs.c.stats_applied.is_(True))
            .order_by(test_results.c.created_at.desc(), test_results.c.id.desc())
            .limit(limit)).all()

    def stored_window(self, case_id: str) -> StoredWindow | None:
        row = self.conn.execute(
            select(test_case_windows, test_cases.c.status, test_cases.c.slot,
                   window_buckets.c.state)
            .join(test_cases, test_cases.c.id == test_case_windows.c.test_case_id)
            .join(window_buckets, window_buckets.c.id == test_cases.c.bucket_id)
            .where(test_case_windows.c.test_case_id == case_id)).first()
        if row is None:
            return None
        return StoredWindow(row, row.status, row.slot, WindowCodec.load_bucket(row.state))

    def slots_of_cases(self, case_ids: list[str]) -> Iterator[tuple[str, bytes]]:
        """(case id, the bytes of its window's slot, b'' for an empty one), the database
        cutting each slot out of its bucket (a page of cases)."""
        offset, length = WindowCodec.slot_range(0)
        slot_bytes = func.substr(window_buckets.c.state,
                                 test_cases.c.slot * length + offset + 1, length)
        version = func.substr(window_buckets.c.state, 1, WindowCodec.HEADER)
        for case_id, version_bytes, state in self.conn.execute(
                select(test_cases.c.id, version, slot_bytes)
                .join(window_buckets, window_buckets.c.id == test_cases.c.bucket_id)
                .where(test_cases.c.id.in_(case_ids))):
            WindowCodec.check_version(bytes(version_bytes or b""))
            # (an empty slot: its bytes end before it: NULL or b'')
            yield case_id, bytes(state or b"")

    def places_of_cases(self, case_ids: list[str]) -> Iterator:
        """(id, project_id, bucket_id, slot) of these cases."""
        for start in range(0, len(case_ids), CHUNK):
            yield from self.conn.execute(
                select(test_cases.c.id, test_cases.c.project_id, test_cases.c.bucket_id,
                       test_cases.c.slot)
                .where(test_cases.c.id.in_(case_ids[start:start + CHUNK])))

    def replace_figures(self, case_id: str, project_id: str, figures: dict) -> None:
        """Replace a case's figures' row and status with `figures` (`stats.recompute_case`'s
        keys; none for a case that never ran)."""
        self.conn.execute(test_case_windows.delete().where(
            test_case_windows.c.test_case_id == case_id))
        if figures["total_runs"]:
            self.conn.execute(insert(test_case_windows).values(
                test_case_id=case_id, project_id=project_id,
                **{name: figures[name] for name in (
                    "flaky_runs", "failed_runs", "last_status", "last_flaky_at",
                    "last_failed_at", "flakiness_score")}))
        self.conn.execute(update(test_cases).where(test_cases.c.id == case_id).values(
            status=figures["status"] if figures["total_runs"] else "stable"))

    def buckets_by_id(self, ids: list[int]) -> dict[int, bytearray]:
        return dict(self.load_buckets(ids))

    def project_buckets(self, project_id: str) -> Iterator[tuple[int, int, bytearray]]:
        """(id, slots given, its slots) of every bucket of a project."""
        for bucket_id, slots, state in self.conn.execute(
                select(window_buckets.c.id, window_buckets.c.slots, window_buckets.c.state)
                .where(window_buckets.c.project_id == project_id)):
            yield bucket_id, slots, WindowCodec.load_bucket(state)

    def cases_in_buckets(self, bucket_ids: list[int]) -> Iterator[tuple[str, int, int]]:
        """(case id, bucket id, slot) of the cases of these buckets."""
        for start in range(0, len(bucket_ids), CHUNK):
            yield from self.conn.execute(
                select(test_cases.c.id, test_cases.c.bucket_id, test_cases.c.slot)
                .where(test_cases.c.bucket_id.in_(bucket_ids[start:start + CHUNK])))


class SqliteStatistics(StatisticsStore):
    """SQLite: parameters `?`, times as the text SQLAlchemy stores, executemany."""

    @staticmethod
    def day_of(moment):
        return func.date(moment)

    def driver_time(self, moment: datetime):
        return sqlite_datetime(moment)  # (text that sorts as the times do)


class PostgresStatistics(StatisticsStore):
    """PostgreSQL: parameters `%s`, id lists and batches as arrays, a first import's figures
    by COPY, an advisory lock per project, a server-side cursor for a run's results."""

    mark = "%s"

    @staticmethod
    def day_of(moment):
        return func.to_char(moment, "YYYY-MM-DD")

    # A first import's first figures go by COPY from this many rows on: the arrays of 100,000
    # rows took 1.1 s to insert here, COPY 0.8 s (each element of an array is dumped in Python).
    COPY_FROM = 500

    def _cursor(self, binary: bool = False):
        # binary rows: the buckets arrive as bytes, not as hex text to decode
        return driver_connection(self.conn).cursor(binary=binary)

    def _in(self, column: str, values: Sequence) -> tuple[str, tuple]:
        return f"{column} = ANY({PG_ARRAY})", (list(values),)

    def lock_project(self, project_id: str) -> None:
        key = int.from_bytes(hashlib.blake2b(project_id.encode(), digest_size=8).digest(),
                             "big", signed=True)
        self.conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (key,))

    def run_outcomes(self, run_id: str) -> Iterator[RunOutcome]:
        # The sort of a large run's results spills to disk at the default work_mem (4 MB):
        # this transaction gets enough to sort it in memory.
        self.conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        cursor = driver_connection(self.conn).cursor(name=f"apply_{run_id}", binary=True)
        cursor.itersize = 2000
        try:
            cursor.execute(_results_by_case_sql("%s", "r.id"), (run_id,))
            yield from map(RunOutcome._make, cursor)
        finally:
            cursor.close()

    def _insert_buckets(self, rows: list[tuple]):
        return self.conn.exec_driver_sql(
            "INSERT INTO window_buckets (project_id, file_path, part, slots, state) SELECT * "
            "FROM " + pg_rows(("project_id", "file_path", "part", "slots", "state"),
                              ("text", "text", "int4", "int4", "bytea"))
            + " RETURNING id, file_path, part",
            tuple(list(column) for column in zip(*rows)))

    def write_figures(self, figures: list[WindowFigures], first: list[FirstFigures],
                      changed: list[StatusChange]) -> None:
        # each kind of row by one statement per batch, from one array per column: a run
        # writes them only for the cases whose outcomes moved, in one round trip each
        if len(first) >= self.COPY_FROM:
            pg_copy_rows(self.conn, "test_case_windows", _FIRST_COLUMNS, first)
            first = []
        for statement, rows in ((_PG_UPDATE_FIGURES, figures), (_PG_INSERT_FIGURES, first),
                                (_PG_UPDATE_STATUS, changed)):
            if rows:
                pg_execute_arrays(self.conn, statement, rows)

    def run_failures(self, run_id: str) -> Iterator[Failure]:
        # the error as text: only a new group's is decoded, not every failure's
        for row in self.conn.exec_driver_sql(_failures_sql("%s", "error::text"), (run_id,)):
            yield Failure(*row)

    def merge_error_groups(self, groups: list[ErrorGroupCount],
                           cases: list[ErrorGroupCaseCount]) -> None:
        for table, key, rows in _error_tables(groups, cases):
            columns = column_names(table, _fields(rows[0]))
            types = tuple(_PG_TYPES[name] for name in columns)
            pg_execute_arrays(self.conn, f"INSERT INTO {table.name} ({', '.join(columns)}) "
                                         f"SELECT * FROM {pg_rows(columns, types)} "
                                         f"{_merge_counts(table.name, key, 'greatest')}",
                              [_values(row) for row in rows])


def statistics_store(conn: Connection) -> StatisticsStore:
    """The statistics' store of the connection's database."""
    if conn.dialect.name == "postgresql":
        return PostgresStatistics(conn)
    return SqliteStatistics(conn)


# -- statements -----------------------------------------------------------------------------

def _results_by_case_sql(mark: str, arrival: str) -> str:
    # by bucket, so that a batch of cases needs few buckets
    return ("SELECT r.test_case_id, c.bucket_id, c.slot, r.status, r.duration, r.created_at "
            "FROM test_results r JOIN test_cases c ON c.id = r.test_case_id "
            f"WHERE r.run_id = {mark} ORDER BY c.bucket_id, r.test_case_id, {arrival}")


def _failures_sql(mark: str, error: str) -> str:
    return (f"SELECT test_case_id, created_at, {error}, error_fingerprint FROM test_results "
            f"WHERE run_id = {mark} AND status IN ('failed', 'flaky') "
            "AND error_fingerprint IS NOT NULL")


def _figures_set(value, column) -> str:
    """The SET list of the figures' UPDATE, from the value given for each field of
    `WindowFigures`."""
    return (f"flaky_runs = {value('flaky_runs')}, failed_runs = {value('failed_runs')}, "
            f"last_status = {value('last_status')}, "
            f"last_flaky_at = CASE WHEN {value('keep_flaky')} "
            f"THEN coalesce({value('flaky_at')}, {column('last_flaky_at')}) END, "
            f"last_failed_at = CASE WHEN {value('keep_failed')} "
            f"THEN coalesce({value('failed_at')}, {column('last_failed_at')}) END, "
            f"flakiness_score = {value('flakiness_score')}")


_SQLITE_UPDATE_FIGURES = (f"UPDATE test_case_windows SET {_figures_set(lambda c: '?', str)} "
                          "WHERE test_case_id = ?")
_SQLITE_INSERT_FIGURES = (f"INSERT INTO test_case_windows ({', '.join(_FIRST_COLUMNS)}) "
                          f"VALUES ({', '.join('?' * len(_FIRST_COLUMNS))})")
_SQLITE_UPDATE_STATUS = "UPDATE test_cases SET status = ? WHERE id = ?"

_PG_TYPES = {"flaky_runs": "int4", "failed_runs": "int4", "last_status": "text",
             "keep_flaky": "bool", "flaky_at": "timestamp", "keep_failed": "bool",
             "failed_at": "timestamp", "flakiness_score": "float8", "test_case_id": "text",
             "last_flaky_at": "timestamp", "last_failed_at": "timestamp", "project_id": "text",
             "status": "text", "id": "text", "fingerprint": "text", "message": "text",
             "error_type": "text", "first_seen": "timestamp", "last_seen": "timestamp",
             "occurrences": "int4"}


def _pg_rows_of(fields: tuple[str, ...]) -> str:
    return pg_rows(fields, tuple(_PG_TYPES[name] for name in fields))


_PG_UPDATE_FIGURES = (
    f"UPDATE test_case_windows AS w SET {_figures_set(lambda c: f's.{c}', lambda c: f'w.{c}')} "
    f"FROM {_pg_rows_of(WindowFigures._fields)} WHERE w.test_case_id = s.test_case_id")
_PG_INSERT_FIGURES = (f"INSERT INTO test_case_windows ({', '.join(_FIRST_COLUMNS)}) "
                      f"SELECT * FROM {_pg_rows_of(_FIRST_COLUMNS)}")
_PG_UPDATE_STATUS = (f"UPDATE test_cases AS c SET status = s.status FROM "
                     f"{_pg_rows_of(StatusChange._fields)} WHERE c.id = s.id")


def _fields(row) -> tuple[str, ...]:
    return tuple(field.name for field in fields(row))


def _values(row) -> tuple:
    """A dataclass row's values in its fields' order (not `astuple`: it copies deeply)."""
    return attrgetter(*_fields(row))(row)


def _error_tables(groups: list[ErrorGroupCount], cases: list[ErrorGroupCaseCount]):
    """(table, its key columns, rows) of the error counts to merge."""
    if groups:
        yield error_groups, ("project_id", "fingerprint"), groups
    if cases:
        yield error_group_cases, ("project_id", "fingerprint", "test_case_id"), cases


def _merge_counts(table: str, key: tuple[str, ...], larger: str) -> str:
    return (f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET last_seen = "
            f"{larger}({table}.last_seen, excluded.last_seen), "
            f"occurrences = {table}.occurrences + excluded.occurrences")


def cases_in_chunks(outcomes, size: int) -> Iterator[list[list[RunOutcome]]]:
    """A run's outcomes (by bucket, then case) as one list per case, in lists of up to
    `size` cases."""
    chunk = []
    for _case_id, rows in groupby(outcomes, _CASE_ID):
        chunk.append(list(rows))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_CASE_ID = itemgetter(RunOutcome._fields.index("case_id"))  # (faster than by name)


# -- the reads of the intelligence service (dialect-neutral SQLAlchemy Core) ------------------

# A case with the figures its outcomes move, kept in their own narrow table
# (`test_case_windows`: a case that never ran has no row there, and its counts are 0). Its
# total runs, average duration and last run are read from its window, where its row says it
# lives (`stats.slot_figures`).
_CASES = test_cases.outerjoin(test_case_windows,
                              test_case_windows.c.test_case_id == test_cases.c.id)
_FLAKY_RUNS = func.coalesce(test_case_windows.c.flaky_runs, 0)
_FAILED_RUNS = func.coalesce(test_case_windows.c.failed_runs, 0)
_SCORE = func.coalesce(test_case_windows.c.flakiness_score, 0.0)
_WHERE_ITS_WINDOW_IS = (test_cases.c.bucket_id, test_cases.c.slot)
# A case that never ran has no figures' row: it is `new`, whatever its row holds (a case is
# created with the status its first result gives, so that a first import writes none).
_RAN = test_case_windows.c.test_case_id.is_not(None)
_STATUS = case_when((_RAN, test_cases.c.status), else_="new")
_SELECT_CASES = select(
    *(column for column in test_cases.c if column.name != "status"),
    _STATUS.label("status"), _SCORE.label("flakiness_score"),
    _FLAKY_RUNS.label("flaky_runs"),
    _FAILED_RUNS.label("failed_runs"), test_case_windows.c.last_status,
    test_case_windows.c.last_flaky_at, test_case_windows.c.last_failed_at,
).select_from(_CASES)
# Sorts by a stored column, in SQL (the others, by figures of the windows' slots, are the
# service's).
CASE_SQL_SORTS = {"flakiness": _SCORE.desc(), "title": test_cases.c.full_title.asc()}


def _status_is(status: str):
    return ~_RAN if status == "new" else and_(_RAN, test_cases.c.status == status)


def _active(cases, now: datetime):
    """Quarantined at `now`: it lifts by itself at its expiry."""
    return and_(cases.c.is_quarantined.is_(True),
                or_(cases.c.quarantine_expires_at.is_(None),
                    cases.c.quarantine_expires_at > now))


def case_of_result(conn: Connection, result_id: str) -> str | None:
    return conn.execute(select(test_results.c.test_case_id)
                        .where(test_results.c.id == result_id)).scalar()


def case_row(conn: Connection, case_id: str):
    """A case with its status and figures (`_SELECT_CASES`), or None."""
    return conn.execute(_SELECT_CASES.where(test_cases.c.id == case_id)).first()


def plain_case(conn: Connection, case_id: str):
    """A case's `test_cases` row."""
    return conn.execute(select(test_cases).where(test_cases.c.id == case_id)).one()


class CaseFilter(NamedTuple):
    """Which cases of a project a list shows."""

    project_id: str
    status: str | None
    file: str | None
    tag: str | None
    search: str | None

    def where(self) -> list:
        where = [test_cases.c.project_id == self.project_id]
        if self.status:
            where.append(_status_is(self.status))
        if self.file:
            where.append(test_cases.c.file_path == self.file)
        if self.search:
            where.append(or_(icontains(test_cases.c.full_title, self.search),
                             icontains(test_cases.c.file_path, self.search)))
        if self.tag:
            # tags are a short JSON array of strings: match the quoted element
            where.append(cast(test_cases.c.tags, Text).like(
                f'%"{self.tag.replace(chr(34), "")}"%'))
        return where


def count_cases(conn: Connection, cases: CaseFilter) -> int:
    return conn.execute(select(func.count()).select_from(_CASES)
                        .where(*cases.where())).scalar_one()


def page_of_cases(conn: Connection, cases: CaseFilter, sort: str, limit: int,
                  offset: int) -> Sequence:
    """A page of cases (`case_row`'s rows) in a `CASE_SQL_SORTS` order, ties by id."""
    return conn.execute(_SELECT_CASES.where(*cases.where()).order_by(
        CASE_SQL_SORTS[sort], test_cases.c.id).limit(limit).offset(offset)).all()


def cases_to_sort(conn: Connection, cases: CaseFilter) -> list:
    """(id, bucket_id, slot, failed_runs) of every matching case (to sort by its window)."""
    return list(conn.execute(select(test_cases.c.id, *_WHERE_ITS_WINDOW_IS,
                                    _FAILED_RUNS.label("failed_runs"))
                             .select_from(_CASES).where(*cases.where())))


def case_rows(conn: Connection, case_ids: list[str]) -> dict:
    """case id -> its `case_row` row."""
    return {r.id: r for r in conn.execute(_SELECT_CASES.where(test_cases.c.id.in_(case_ids)))}


def quarantine_history(conn: Connection, case_id: str, limit: int) -> Sequence:
    return conn.execute(select(quarantine_events).where(
        quarantine_events.c.test_case_id == case_id).order_by(
        quarantine_events.c.created_at.desc(), quarantine_events.c.id.desc())
        .limit(limit)).all()


def case_history(conn: Connection, case_id: str, branch: str | None,
                 limit: int) -> Sequence:
    """The case's newest results across runs (with their run's branch and commit)."""
    query = (select(test_results.c.run_id, test_results.c.id, test_results.c.status,
                    test_results.c.duration, runs.c.branch, runs.c.commit_sha,
                    test_results.c.created_at)
             .join(runs, runs.c.id == test_results.c.run_id)
             .where(test_results.c.test_case_id == case_id))
    if branch:
        query = query.where(runs.c.branch == branch)
    return conn.execute(query.order_by(test_results.c.created_at.desc(),
                                       test_results.c.id.desc()).limit(limit)).all()


class FlakinessPage(NamedTuple):
    total: int
    rows: Sequence
    threshold: float
    flaky_count: int
    average_score: float | None
    quarantined_count: int


def flakiness_page(conn: Connection, project_id: str, min_score: float | None,
                   quarantined: bool | None, now: datetime, limit: int,
                   offset: int) -> FlakinessPage:
    """The cases with evidence in their window and the quarantined (`min_score` None), or
    those at or above `min_score`, most flaky first, with the project's summary. The cases
    with evidence come from the (project, flaky runs) index of the narrow rows: a few hundred
    in a large project, whose every case is read otherwise."""
    windows = test_case_windows
    evidence = [windows.c.project_id == project_id, windows.c.flaky_runs > 0]
    where = [test_cases.c.project_id == project_id]
    if min_score is None:  # the flaky and the quarantined
        listed = test_cases.alias("listed")
        where.append(test_cases.c.id.in_(
            select(windows.c.test_case_id).where(*evidence).union(
                select(listed.c.id).where(listed.c.project_id == project_id,
                                          _active(listed, now)))))
    elif min_score > 0:  # a score above 0 takes evidence
        where.append(test_cases.c.id.in_(select(windows.c.test_case_id).where(
            *evidence, windows.c.flakiness_score >= min_score)))
    if quarantined is not None:
        where.append(_active(test_cases, now) if quarantined else ~_active(test_cases, now))
    total = conn.execute(select(func.count()).select_from(_CASES).where(*where)).scalar_one()
    rows = conn.execute(select(
        test_cases.c.id, test_cases.c.title, test_cases.c.full_title, test_cases.c.file_path,
        test_cases.c.variant, _SCORE.label("flakiness_score"), *_WHERE_ITS_WINDOW_IS,
        _FLAKY_RUNS.label("flaky_runs"), test_case_windows.c.last_flaky_at,
        test_case_windows.c.last_status,
        test_cases.c.is_quarantined, test_cases.c.quarantine_expires_at,
        _STATUS.label("status"))
        .select_from(_CASES).where(*where).order_by(_SCORE.desc(), test_cases.c.id)
        .limit(limit).offset(offset)).all()
    threshold = conn.execute(select(projects.c.flakiness_threshold)
                             .where(projects.c.id == project_id)).scalar_one()
    flaky_count, average = conn.execute(select(
        func.count().filter(windows.c.flakiness_score >= threshold),
        func.avg(windows.c.flakiness_score)).where(*evidence)).one()
    quarantined_count = conn.execute(select(func.count()).select_from(test_cases).where(
        test_cases.c.project_id == project_id, _active(test_cases, now))).scalar_one()
    return FlakinessPage(total, rows, threshold, flaky_count, average, quarantined_count)


def error_groups_page(conn: Connection, project_id: str, since: datetime, limit: int,
                      offset: int) -> tuple[Sequence, int]:
    """The project's error groups seen since `since`, most occurrences since first: (rows
    with `affected_tests` and `recent_occurrences`, total)."""
    where = [error_group_cases.c.project_id == project_id,
             error_group_cases.c.last_seen >= since]
    grouped = (select(error_group_cases.c.fingerprint,
                      func.count().label("affected_tests"),
                      func.sum(error_group_cases.c.occurrences).label("occurrences"))
               .where(*where).group_by(error_group_cases.c.fingerprint).subquery())
    total = conn.execute(select(func.count()).select_from(grouped)).scalar_one()
    rows = conn.execute(
        select(error_groups, grouped.c.affected_tests,
               grouped.c.occurrences.label("recent_occurrences"))
        .join(grouped, and_(grouped.c.fingerprint == error_groups.c.fingerprint,
                            error_groups.c.project_id == project_id))
        .order_by(grouped.c.occurrences.desc(), error_groups.c.fingerprint)
        .limit(limit).offset(offset)).all()
    return rows, total


def run_trend_points(conn: Connection, project_id: str, since: datetime, branch: str | None,
                     group_by: str) -> Sequence:
    """The sums of the completed runs' counts since `since`, per run or per day (`key`,
    `at`, `total`, `passed`, `failed`, `skipped`, `flaky`, `duration`, `runs`)."""
    where = [runs.c.project_id == project_id, runs.c.created_at >= since,
             runs.c.status.in_(["passed", "failed"])]
    if branch:
        where.append(runs.c.branch == branch)
    columns = [func.sum(runs.c.total_tests).label("total"),
               func.sum(runs.c.passed_tests).label("passed"),
               func.sum(runs.c.failed_tests).label("failed"),
               func.sum(runs.c.skipped_tests).label("skipped"),
               func.sum(runs.c.flaky_tests).label("flaky"),
               func.avg(runs.c.duration).label("duration"),
               func.count().label("runs")]
    if group_by == "run":
        return conn.execute(select(runs.c.id.label("key"), runs.c.created_at.label("at"),
                                   *columns).where(*where)
                            .group_by(runs.c.id, runs.c.created_at)
                            .order_by(runs.c.created_at).limit(500)).all()
    day = statistics_store(conn).day_of(runs.c.created_at)
    return conn.execute(select(day.label("key"), func.min(runs.c.created_at).label("at"),
                               *columns).where(*where).group_by(day).order_by(day)).all()


def case_titles(conn: Connection, case_ids: list[str]) -> dict:
    """case id -> (id, full_title, file_path)."""
    return {r.id: r for r in statistics_store(conn).case_titles(case_ids)}


def result_titles(conn: Connection, result_ids: list[str]) -> dict[str, tuple]:
    """result id -> (full title, file path)."""
    titles: dict[str, tuple] = {}
    for start in range(0, len(result_ids), 30_000):  # one query below SQLite's variable cap
        titles.update((r.id, (r.full_title, r.file_path)) for r in conn.execute(
            select(test_results.c.id, test_results.c.full_title, test_results.c.file_path)
            .where(test_results.c.id.in_(result_ids[start:start + 30_000]))))
    return titles


def previous_run_on_branch(conn: Connection, run) -> str | None:
    """The completed run of the same branch before `run`."""
    return latest_run_on_branch(conn, run.project_id, run.branch, run.created_at)


def run_names(conn: Connection, run_ids: list[str]):
    """What names each of these runs for people (title, CI build, branch, commit, start)."""
    return conn.execute(select(runs.c.id, runs.c.run_title, runs.c.ci_build_id, runs.c.branch,
                               runs.c.commit_sha, runs.c.created_at)
                        .where(runs.c.id.in_(run_ids))).all() if run_ids else []


def latest_run_on_branch(conn: Connection, project_id: str, branch: str,
                         before: datetime) -> str | None:
    """The newest completed run of `branch` created before `before` (read through the index
    on project and time, newest first, as the previous run on a branch always was)."""
    return conn.execute(select(runs.c.id).where(
        runs.c.project_id == project_id, runs.c.branch == branch,
        runs.c.created_at < before, runs.c.status.in_(["passed", "failed"]))
        .order_by(runs.c.created_at.desc()).limit(1)).scalar()
