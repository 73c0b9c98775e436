"""Keeping per-case statistics, verdicts and error groups up to date when a run completes.

`apply_run` is called once per run, in the transaction that completes it, and is idempotent
(`runs.stats_applied`). It reads the run's results joined to where their cases' windows live
in one streamed pass, updates each case's constant-size window (scoring.CaseWindow) in its
slot of its file's bucket (`window_buckets`) and writes back the buckets it touched: reads of
flakiness, history and errors then never scan history, and a run costs the same whatever the
history. A pass after a pass (most cases of most runs) changes only the window's slot: the
total runs, the average duration and the last run are read from there. The figures readers
filter and sort by (the score, flaky and failed runs, the last status, the last flaky and
failed times) are written to `test_case_windows` only for the cases whose outcomes moved them.
A case's wide `test_cases` row is read only for the cases a pass did not leave at a score of 0
(`scoring.push_steady_pass`: for those the status follows from the window), and its status
written only when it changed, which for most cases of most runs it does not.
(A case's tags follow its newest result at ingestion: results/service.py.) `recompute_case`
rebuilds one case's statistics from its stored results; a test proves they equal what the
incremental path stored (`stored_case`), byte for byte.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import groupby
from operator import itemgetter

from sqlalchemy import Connection, func, select, update

from redline.server.intelligence import scoring
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_ids
from redline.server.results.repository import driver_datetime, driver_mark
from redline.server.tables import (
    projects,
    quarantine_events,
    runs,
    test_case_windows,
    test_cases,
    test_results,
    window_buckets,
)

CHUNK = 500
WRITE_CHUNK = 2000  # case rows per write (one COPY round trip on PostgreSQL)


def run_outage(run) -> bool:
    return scoring.is_outage(run.failed_tests, run.total_tests - run.skipped_tests)


def _advance(window: scoring.CaseWindow, results, flaky_at, failed_at):
    """Push `results` (oldest first; each `(status, commit key, outage, duration, created_at,
    same_run)`, none skipped) into the window; answers the new `(last_flaky_at,
    last_failed_at)`: the times of the newest evidence and the newest failure still in the
    window (the newest of each is the last to leave it)."""
    for status, commit, outage, duration, at, same_run in results:
        if window.push(status, commit, outage, duration, same_run):
            flaky_at = at
        if status == "failed":
            failed_at = at
    return (flaky_at if window.evidence else None), (failed_at if window.failed else None)


def quarantined_at(conn: Connection, case_ids: list[str], moment: datetime) -> set[str]:
    """The cases that were quarantined at `moment` (from the quarantine history). At the
    driver level, like the rest of `apply_run`: a run with hundreds of failures asks about
    hundreds of cases (through SQLAlchemy, compiling and building rows took 4 ms of a run)."""
    quarantined: set[str] = set()
    when = driver_datetime(conn, moment)  # SQLite: text that sorts as the times do
    cursor = conn.connection.driver_connection.cursor()
    try:
        for start in range(0, len(case_ids), CHUNK):
            chunk = case_ids[start:start + CHUNK]
            if conn.dialect.name == "postgresql":
                cursor.execute(_QUARANTINE_HISTORY.format(cases="= ANY(%s)", mark="%s"),
                               (chunk, when))
            else:
                cursor.execute(_QUARANTINE_HISTORY.format(
                    cases=f"IN ({', '.join('?' * len(chunk))})", mark="?"), (*chunk, when))
            last: dict[str, tuple] = {}
            for case_id, action, expires in cursor.fetchall():  # oldest first: the last wins
                last[case_id] = (action, expires)
            quarantined |= {case for case, (action, expires) in last.items()
                            if action == "quarantine" and (expires is None or expires > when)}
    finally:
        cursor.close()
    return quarantined


_QUARANTINE_HISTORY = ("SELECT test_case_id, action, expires_at FROM quarantine_events "
                       "WHERE test_case_id {cases} AND created_at <= {mark} "
                       "ORDER BY created_at, id")


def apply_run(conn: Connection, run_id: str) -> None:
    run = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if run is None or run.stats_applied:
        return
    threshold, auto = conn.execute(
        select(projects.c.flakiness_threshold, projects.c.auto_quarantine_enabled)
        .where(projects.c.id == run.project_id)).one()
    outage = run_outage(run)
    commit = scoring.commit_key(run.commit_sha)
    now = driver_datetime(conn, utcnow())
    failed_cases: list[str] = []
    auto_candidates: list[str] = []
    became_flaky: list[tuple[str, float]] = []
    writes = _Writes(conn, run.project_id)
    long_way: list[tuple] = []  # (case id, its new stats, whether it never ran before)
    micros = _micros

    def judge_long_way() -> None:
        """The status of the cases that took the long way, against their stored one and
        their quarantine: one read of their `test_cases` rows. A case that never ran before
        (no window yet) is `new` (its status changes only with its window), and its row is
        read only when it could be quarantined automatically (at 5 results in this run)."""
        stored = _case_rows(conn, [case_id for case_id, stats, first in long_way
                                   if not first or stats.total_runs >= 5])
        for case_id, stats, _first in long_way:
            status, quarantined, manual, expires = stored.get(case_id, _NEVER_RAN)
            if stats.status != status:
                writes.changed.append((stats.status, case_id))
            if stats.status == "flaky" and status != "flaky":
                became_flaky.append((case_id, stats.flakiness_score))
            active = quarantined and (expires is None or expires > now)
            if (auto and not active and not manual and stats.total_runs >= 5
                    and stats.flaky_runs and stats.flakiness_score >= threshold):
                auto_candidates.append(case_id)
        long_way.clear()

    push_steady_pass = scoring.push_steady_pass
    # One pass over the run's results joined to where their windows live, grouped by case,
    # in chunks of cases (memory is bounded by WRITE_CHUNK cases and `_Writes.BUCKET_BYTES`);
    # values the rows carry back (times) stay in the driver's form.
    dirty = writes.dirty.add
    for groups in _results_by_case(conn, run_id):
        buckets = writes.load_buckets({rows[0][_BUCKET] for rows in groups})
        for rows in groups:
            case = rows[0]  # each row: the case's id and window columns, then one result
            bucket = buckets.get(case[_BUCKET])
            if (bucket is not None and not outage and len(rows) == 1
                    and case[_STATUS] == "passed"):
                steady = push_steady_pass(bucket, case[_SLOT], commit, case[_STATUS + 1],
                                          micros(case[_STATUS + 2]))
                if steady is not None:  # one more pass, no evidence in sight: a score of 0
                    _count, failures, _average, before, quiet_pass = steady
                    dirty(case[_BUCKET])
                    if not quiet_pass:  # the last status or the failures moved
                        writes.figures.append((0, failures, "passed", None,
                                               case[_FAILED_AT] if failures else None, 0.0,
                                               case[_KEY]))
                    # Its score was 0 and stays 0: the case row changes only if it was
                    # broken. (Every write of a window's figures writes the status it gives,
                    # so the stored status is the one the window before this pass gives.)
                    if before != "stable":
                        writes.changed.append(("stable", case[_ID]))
                    continue
            case_id, bucket_id, slot, flaky_at, failed_at, key = case[:_STATUS]
            ran = []
            for row in rows:
                status = row[_STATUS]
                if status != "skipped":
                    ran.append((status, commit, outage, row[_STATUS + 1], row[_STATUS + 2],
                                len(ran)))  # the results before it in `ran` are this run's
                    if status == "failed":
                        failed_cases.append(case_id)
            if not ran:
                continue  # only skipped: the window is unchanged
            window = scoring.CaseWindow.decode(
                scoring.slot_window(bucket, slot) if bucket is not None else None)
            flaky_at, failed_at = _advance(window, ran, flaky_at, failed_at)
            stats = window.stats(threshold)
            figures = (stats.flaky_runs, stats.failed_runs, stats.last_status, flaky_at,
                       failed_at, stats.flakiness_score)
            if bucket is not None:
                scoring.put_slot(bucket, slot, window.encode(), micros(ran[-1][4]))
                writes.dirty.add(bucket_id)
                writes.figures.append((*figures, key))
            else:
                writes.new_windows.append((case_id, window.encode(), micros(ran[-1][4]),
                                           figures))
            long_way.append((case_id, stats, bucket is None))
        judge_long_way()
        writes.flush()
    writes.flush(last=True)

    # the verdict: failures of cases quarantined when the run started do not count
    quarantined = quarantined_at(conn, sorted(set(failed_cases)), run.created_at)
    quarantined_failures = sum(1 for case in failed_cases if case in quarantined)
    if run.status == "cancelled":
        verdict = "cancelled"
    elif len(failed_cases) > quarantined_failures or (run.status == "failed"
                                                      and not failed_cases):
        verdict = "failed"
    else:
        verdict = "passed"
    _set_quarantine(conn, run.project_id, auto_candidates, True, actor_id=None, reason="auto",
                    owner=None, expires_at=None, automatic=True)
    _record_error_groups(conn, run.project_id, run_id)
    conn.execute(update(runs).where(runs.c.id == run_id).values(
        verdict=verdict, quarantined_failures=quarantined_failures, stats_applied=True))
    _emit_run_events(conn, run, verdict, quarantined_failures, became_flaky)


@lru_cache(maxsize=16)  # the results of one import share their time
def _micros(value) -> int:
    """A result's time, as the driver gives it, in microseconds since the epoch (a slot keeps
    it so)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return (moment - _EPOCH) // _MICROSECOND


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def slot_time(micros: int) -> datetime | None:
    """The time a slot keeps (naive UTC, as the database's times are read)."""
    return _EPOCH + timedelta(microseconds=micros) if micros else None


# -- the driver-level reads and writes of `apply_run` (a run touches thousands of cases) --

# What a run writes to `test_case_windows` for a case whose outcomes moved, then the row's key.
_FIGURE_COLUMNS = ("flaky_runs", "failed_runs", "last_status", "last_flaky_at",
                   "last_failed_at", "flakiness_score")
# What `apply_run` reads of each case with its results, in this order (indexes below): the
# case id, where its window lives (no row yet: a new case), the times its window's figures
# carry, and the key its row is updated by (SQLite: the row's rowid, one b-tree search
# instead of two; PostgreSQL: the case id). Not the case's own row: a steady pass needs none
# of it, the long way reads it apart.
_CASE_COLUMNS = ("r.test_case_id", "w.bucket_id", "w.slot", "w.last_flaky_at",
                 "w.last_failed_at")
_ID, _BUCKET, _SLOT, _FLAKY_AT, _FAILED_AT, _KEY = range(6)
_STATUS = _KEY + 1  # where the result's columns start


def _results_by_case_sql(mark: str, window_key: str, arrival: str) -> str:
    # by bucket, so that a chunk of cases needs few buckets
    return (f"SELECT {', '.join(_CASE_COLUMNS)}, {window_key}, r.status, r.duration, "
            "r.created_at FROM test_results r "
            "LEFT JOIN test_case_windows w ON w.test_case_id = r.test_case_id "
            f"WHERE r.run_id = {mark} ORDER BY w.bucket_id, r.test_case_id, {arrival}")


# The result's columns come from the (run, status, case, duration, created_at) index alone on
# SQLite, the rowid (in every SQLite index) standing for the order of arrival.
_RESULTS_BY_CASE_SQLITE = _results_by_case_sql("?", "w.rowid", "r.rowid")
_RESULTS_BY_CASE_PG = _results_by_case_sql("%s", "r.test_case_id", "r.id")


def _results_by_case(conn: Connection, run_id: str):
    """The run's results grouped by case, in arrival order (their ids sort so: kit/ids.py), in
    lists of up to WRITE_CHUNK cases: each case a list of rows, each row the case's
    `_CASE_COLUMNS` and key then the result's status, duration and created_at. Streamed: a
    server-side cursor on PostgreSQL, SQLite's own stepping otherwise."""
    if conn.dialect.name == "postgresql":
        # The sort of a large run's results spills to disk at the default work_mem (4 MB):
        # give this transaction enough to sort it in memory.
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        cursor = conn.connection.driver_connection.cursor(name=f"apply_{run_id}", binary=True)
        cursor.itersize = 2000
        cursor.execute(_RESULTS_BY_CASE_PG, (run_id,))
    else:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(_RESULTS_BY_CASE_SQLITE, (run_id,))
    try:
        groups = []
        for _case_id, rows in groupby(cursor, itemgetter(_ID)):
            groups.append(list(rows))
            if len(groups) >= WRITE_CHUNK:
                yield groups
                groups = []
        if groups:
            yield groups
    finally:
        cursor.close()


# PostgreSQL: each kind of row is written by one statement per flush, from one array per
# column (`unnest`): a run writes them only for the cases whose outcomes moved, a few hundred,
# in one round trip each and without a staging table.
_PG_FIGURE_TYPES = ("int4", "int4", "text", "timestamp", "timestamp", "float8")


def _pg_rows(columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    """The rows of one array parameter per column, as a table `s` with these columns."""
    return (f"unnest({', '.join(f'%s::{t}[]' for t in types)}) "
            f"AS s({', '.join(columns)})")


_PG_UPDATE_FIGURES = (
    f"UPDATE test_case_windows AS w SET {', '.join(f'{c} = s.{c}' for c in _FIGURE_COLUMNS)} "
    f"FROM {_pg_rows((*_FIGURE_COLUMNS, 'id'), (*_PG_FIGURE_TYPES, 'text'))} "
    "WHERE w.test_case_id = s.id")
_PG_INSERT_WINDOWS = (
    f"INSERT INTO test_case_windows ({', '.join(_FIGURE_COLUMNS)}, test_case_id, bucket_id, "
    "slot, project_id) SELECT * FROM "
    + _pg_rows((*_FIGURE_COLUMNS, "id", "bucket", "slot", "project"),
               (*_PG_FIGURE_TYPES, "text", "int4", "int4", "text")))
_PG_UPDATE_STATUS = (f"UPDATE test_cases AS c SET status = s.status FROM "
                     f"{_pg_rows(('status', 'id'), ('text', 'text'))} WHERE c.id = s.id")

_SQLITE_UPDATE_FIGURES = (f"UPDATE test_case_windows SET "
                          f"{', '.join(f'{c} = ?' for c in _FIGURE_COLUMNS)} "
                          "WHERE rowid = ?")  # the rowid `_results_by_case` read
_SQLITE_INSERT_WINDOW = (
    f"INSERT INTO test_case_windows ({', '.join(_FIGURE_COLUMNS)}, test_case_id, bucket_id, "
    f"slot, project_id) VALUES ({', '.join('?' * (len(_FIGURE_COLUMNS) + 4))})")
_SQLITE_UPDATE_STATUS = "UPDATE test_cases SET status = ? WHERE id = ?"


def _case_rows(conn: Connection, case_ids: list[str]) -> dict[str, tuple]:
    """case id -> (status, is_quarantined, quarantine_manual, quarantine_expires_at),
    at the driver level (times in the driver's form, as `apply_run` compares them)."""
    found: dict[str, tuple] = {}
    cursor = conn.connection.driver_connection.cursor()
    try:
        for start in range(0, len(case_ids), CHUNK):
            condition, params = _in(conn, "id", case_ids[start:start + CHUNK])
            cursor.execute(f"{_CASE_ROWS} {condition}", params)
            found.update((row[0], row[1:]) for row in cursor.fetchall())
    finally:
        cursor.close()
    return found


_CASE_ROWS = ("SELECT id, status, is_quarantined, quarantine_manual, quarantine_expires_at "
              "FROM test_cases WHERE")
_NEVER_RAN = ("new", False, False, None)  # what `_case_rows` gives of a case that never ran


def _in(conn: Connection, column: str, values: list) -> tuple[str, tuple]:
    """`column IN (values)` at the driver level, and its parameters."""
    if conn.dialect.name == "postgresql":
        return f"{column} = ANY(%s)", (list(values),)
    return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)


class _Writes:
    """What `apply_run` changes, kept until `flush`: the buckets it loaded (`dirty`: the ids
    of those it changed), the figures of the windows whose outcomes moved (`figures`:
    `_FIGURE_COLUMNS` then the row's key), the new cases' windows (`new_windows`: case id,
    window, last run, figures; each gets a slot in its file's bucket at `flush`) and the
    cases whose status changed (`changed`: the new status, the case id). SQLite writes with
    executemany (its per-row cost is its b-tree work); PostgreSQL with a statement from arrays
    per kind of row."""

    BUCKET_BYTES = 16 << 20  # loaded buckets kept between flushes, at most (16 MB)

    def __init__(self, conn: Connection, project_id: str):
        self.conn, self.project_id = conn, project_id
        self.postgres = conn.dialect.name == "postgresql"
        self.mark = driver_mark(conn)
        self.buckets: dict[int, bytearray] = {}
        self.slots: dict[int, int] = {}  # bucket id -> slots in use
        self.dirty: set[int] = set()
        self.figures: list[tuple] = []
        self.new_windows: list[tuple] = []
        self.changed: list[tuple] = []
        if self.postgres:
            # One completion at a time per project: each reads the buckets it rewrites whole.
            key = int.from_bytes(hashlib.blake2b(project_id.encode(), digest_size=8).digest(),
                                 "big", signed=True)
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (key,))

    def load_buckets(self, ids: set) -> dict[int, bytearray]:
        """The buckets with these ids (None, a new case's, is left out), from those already
        loaded or read now."""
        missing = sorted(i for i in ids if i is not None and i not in self.buckets)
        # binary rows on PostgreSQL: the buckets arrive as bytes, not as hex text to decode
        cursor = (self.conn.connection.driver_connection.cursor(binary=True) if self.postgres
                  else self.conn.connection.driver_connection.cursor())
        try:
            for start in range(0, len(missing), CHUNK):
                condition, params = _in(self.conn, "id", missing[start:start + CHUNK])
                cursor.execute(f"SELECT id, slots, state FROM window_buckets WHERE {condition}",
                               params)
                for bucket_id, slots, state in cursor.fetchall():
                    self.buckets[bucket_id] = bytearray(state)
                    self.slots[bucket_id] = slots
        finally:
            cursor.close()
        return self.buckets

    def _place_new_windows(self) -> list[tuple]:
        """A slot for each new case's window, in its file's last bucket while it has room,
        else in a new bucket (created with its windows, in one statement for all): the rows
        to insert into `test_case_windows`."""
        conn, mark = self.conn, self.mark
        files: dict[str, str] = {}
        case_ids = [new[0] for new in self.new_windows]
        for start in range(0, len(case_ids), WRITE_CHUNK):
            condition, params = _in(conn, "id", case_ids[start:start + WRITE_CHUNK])
            files.update(conn.exec_driver_sql(
                f"SELECT id, coalesce(file_path, '') FROM test_cases WHERE {condition}",
                params).all())
        by_file: dict[str, list[tuple]] = {}
        for new in self.new_windows:
            by_file.setdefault(files[new[0]], []).append(new)
        paths = sorted(by_file)
        last: dict[str, tuple[int, int]] = {}  # file -> (its last bucket's id, part)
        for start in range(0, len(paths), WRITE_CHUNK):
            condition, params = _in(conn, "file_path", paths[start:start + WRITE_CHUNK])
            for path, bucket_id, part in conn.exec_driver_sql(
                    f"SELECT file_path, id, part FROM window_buckets WHERE project_id = {mark} "
                    f"AND {condition} ORDER BY part", (self.project_id, *params)):
                last[path] = (bucket_id, part)
        self.load_buckets({bucket_id for bucket_id, _part in last.values()})
        rows = []
        # the new buckets: file, part, state and the (slot, case id, figures) placed in it
        fresh: list[tuple[str, int, bytearray, list]] = []
        for path in paths:
            bucket_id, part = last.get(path, (None, -1))
            for case_id, window, last_run, figures in by_file[path]:
                if bucket_id is not None and self.slots[bucket_id] < scoring.BUCKET_SLOTS:
                    state, slot = self.buckets[bucket_id], self.slots[bucket_id]
                    self.slots[bucket_id] = slot + 1
                    self.dirty.add(bucket_id)
                    rows.append((*figures, case_id, bucket_id, slot, self.project_id))
                else:
                    bucket_id = None  # the file's last bucket is full: new ones from here on
                    if not fresh or fresh[-1][0] != path or (
                            len(fresh[-1][3]) >= scoring.BUCKET_SLOTS):
                        part += 1
                        fresh.append((path, part, bytearray(), []))
                    state, slot = fresh[-1][2], len(fresh[-1][3])
                    fresh[-1][3].append((slot, case_id, figures))
                state.extend(bytes(scoring.SLOT))
                scoring.put_slot(state, slot, window, last_run)
        created = self._create_buckets(fresh)
        for path, part, _state, placed in fresh:
            bucket_id = created[path, part]
            rows.extend((*figures, case_id, bucket_id, slot, self.project_id)
                        for slot, case_id, figures in placed)
        self.new_windows = []
        return rows

    def _create_buckets(self, fresh: list[tuple]) -> dict[tuple[str, int], int]:
        """Insert the new buckets (file, part, state, slots placed) with their windows:
        (file, part) -> id. One statement per 400 buckets, not one each (a first import of
        100,000 tests makes 2,000 of them)."""
        created: dict[tuple[str, int], int] = {}
        for start in range(0, len(fresh), 400):
            chunk = fresh[start:start + 400]
            values = [(self.project_id, path, part, len(placed), bytes(state))
                      for path, part, state, placed in chunk]
            if self.postgres:
                statement = ("INSERT INTO window_buckets (project_id, file_path, part, slots, "
                             "state) SELECT * FROM " + _pg_rows(
                                 ("project_id", "file_path", "part", "slots", "state"),
                                 ("text", "text", "int4", "int4", "bytea")))
                params = tuple(list(column) for column in zip(*values))
            else:  # (RETURNING gives no order: each row says which bucket it is)
                statement = ("INSERT INTO window_buckets (project_id, file_path, part, slots, "
                             f"state) VALUES {', '.join(['(?, ?, ?, ?, ?)'] * len(values))}")
                params = tuple(value for row in values for value in row)
            for bucket_id, path, part in self.conn.exec_driver_sql(
                    f"{statement} RETURNING id, file_path, part", params):
                created[path, part] = bucket_id
        return created

    def flush(self, last: bool = False) -> None:
        """Write what changed; at the `last` flush (or past `BUCKET_BYTES` of loaded buckets)
        the changed buckets too."""
        conn = self.conn
        new_rows = self._place_new_windows() if self.new_windows else []
        if last or sum(map(len, self.buckets.values())) > self.BUCKET_BYTES:
            if self.dirty:
                conn.exec_driver_sql(
                    f"UPDATE window_buckets SET state = {self.mark}, slots = {self.mark} "
                    f"WHERE id = {self.mark}",
                    [(bytes(self.buckets[i]), self.slots[i], i) for i in sorted(self.dirty)])
            self.buckets, self.slots, self.dirty = {}, {}, set()
        if self.postgres:
            self._write_pg(new_rows)
        else:
            if self.figures:
                conn.exec_driver_sql(_SQLITE_UPDATE_FIGURES, self.figures)
            if new_rows:
                conn.exec_driver_sql(_SQLITE_INSERT_WINDOW, new_rows)
            if self.changed:
                conn.exec_driver_sql(_SQLITE_UPDATE_STATUS, self.changed)
        self.figures, self.changed = [], []

    def _write_pg(self, new_rows: list[tuple]) -> None:
        cursor = self.conn.connection.driver_connection.cursor()
        try:
            for statement, rows in ((_PG_UPDATE_FIGURES, self.figures),
                                    (_PG_INSERT_WINDOWS, new_rows),
                                    (_PG_UPDATE_STATUS, self.changed)):
                if rows:  # one array per column
                    cursor.execute(statement, [list(column) for column in zip(*rows)])
        finally:
            cursor.close()


def _emit_run_events(conn: Connection, run, verdict: str, quarantined_failures: int,
                     became_flaky: list[tuple[str, float]]) -> None:
    from redline.server.webhooks.service import emit, emit_each

    run = conn.execute(select(runs).where(runs.c.id == run.id)).one()
    data = {"runId": run.id, "projectId": run.project_id, "status": run.status,
            "verdict": verdict, "branch": run.branch, "commitSha": run.commit_sha,
            "ciBuildUrl": run.ci_build_url, "totalTests": run.total_tests,
            "passedTests": run.passed_tests, "failedTests": run.failed_tests,
            "skippedTests": run.skipped_tests, "flakyTests": run.flaky_tests,
            "quarantinedFailures": quarantined_failures}
    emit(conn, run.project_id, "run.completed", data)
    if verdict == "failed":
        emit(conn, run.project_id, "run.failed", data)
    scores = dict(became_flaky)

    def flaky_events():  # read only when a webhook subscribes to test.flaky
        for start in range(0, len(became_flaky), CHUNK):
            chunk = [case_id for case_id, _score in became_flaky[start:start + CHUNK]]
            for case in conn.execute(
                    select(test_cases.c.id, test_cases.c.full_title, test_cases.c.file_path)
                    .where(test_cases.c.id.in_(chunk)).order_by(test_cases.c.id)):
                yield {"testCaseId": case.id, "fullTitle": case.full_title,
                       "filePath": case.file_path, "flakinessScore": scores[case.id],
                       "runId": run.id}

    if became_flaky:
        emit_each(conn, run.project_id, "test.flaky", flaky_events())


def recompute_case(conn: Connection, case_id: str) -> dict:
    """A case's statistics rebuilt from its stored results, as `stored_case` gives them: the
    check on the incremental path. The newest `2 * WINDOW` results are replayed, so each
    result in the window is judged against the `WINDOW` results before it, as it was when it
    arrived."""
    threshold = conn.execute(
        select(projects.c.flakiness_threshold).join(
            test_cases, test_cases.c.project_id == projects.c.id)
        .where(test_cases.c.id == case_id)).scalar_one()
    rows = window_results(conn, case_id, 2 * scoring.WINDOW)  # newest first
    window, flags = scoring.replay([
        scoring.Entry(r.status, r.commit_sha, r.run_id, run_outage(r), r.duration)
        for r in rows])
    in_window = list(zip(rows, flags))[:scoring.WINDOW]
    flaky_at = next((r.created_at for r, flag in in_window if flag), None)
    failed_at = next((r.created_at for r, _flag in in_window if r.status == "failed"), None)
    figures = window.stats(threshold)
    return {"window_state": window.encode(), "avg_duration": figures.avg_duration,
            "last_run_at": rows[0].created_at if rows else None, "status": figures.status,
            "flakiness_score": figures.flakiness_score, "total_runs": figures.total_runs,
            "flaky_runs": figures.flaky_runs, "failed_runs": figures.failed_runs,
            "last_status": figures.last_status, "last_flaky_at": flaky_at,
            "last_failed_at": failed_at}


def stored_case(conn: Connection, case_id: str) -> dict | None:
    """A case's statistics as the incremental path kept them (its window from its bucket's
    slot, its figures from its row), with `recompute_case`'s keys; None when it never ran."""
    row = conn.execute(
        select(test_case_windows, test_cases.c.status, window_buckets.c.state)
        .join(test_cases, test_cases.c.id == test_case_windows.c.test_case_id)
        .join(window_buckets, window_buckets.c.id == test_case_windows.c.bucket_id)
        .where(test_case_windows.c.test_case_id == case_id)).first()
    if row is None:
        return None
    total, average, last_run = scoring.slot_figures(row.state, row.slot)
    return {"window_state": scoring.slot_window(row.state, row.slot), "avg_duration": average,
            "last_run_at": slot_time(last_run), "status": row.status,
            "flakiness_score": row.flakiness_score, "total_runs": total,
            "flaky_runs": row.flaky_runs, "failed_runs": row.failed_runs,
            "last_status": row.last_status, "last_flaky_at": row.last_flaky_at,
            "last_failed_at": row.last_failed_at}


def slot_figures(conn: Connection, cases) -> dict[str, tuple[int, int, datetime | None]]:
    """case id -> (total runs, average duration, last run) of the cases given as rows with
    `id`, `bucket_id` and `slot` (a case that never ran has no bucket: left out), read from
    their buckets' slots: a page of cases reads its slots alone (the database cuts them out
    of their buckets), more read their buckets whole, once each."""
    wanted = [(case.id, case.bucket_id, case.slot) for case in cases
              if case.bucket_id is not None]
    figures = {}
    if len(wanted) <= _SLOTS_APART:
        slot_bytes = func.substr(window_buckets.c.state,
                                 test_case_windows.c.slot * scoring.SLOT + 1, scoring.SLOT)
        for case_id, state in conn.execute(
                select(test_case_windows.c.test_case_id, slot_bytes)
                .join(window_buckets, window_buckets.c.id == test_case_windows.c.bucket_id)
                .where(test_case_windows.c.test_case_id.in_([w[0] for w in wanted]))):
            total, average, last_run = scoring.slot_figures(state, 0)
            figures[case_id] = (total, average, slot_time(last_run))
        return figures
    states: dict[int, bytes] = {}
    ids = sorted({bucket_id for _case, bucket_id, _slot in wanted})
    for start in range(0, len(ids), CHUNK):
        states.update(conn.execute(select(window_buckets.c.id, window_buckets.c.state).where(
            window_buckets.c.id.in_(ids[start:start + CHUNK]))).all())
    for case_id, bucket_id, slot in wanted:
        total, average, last_run = scoring.slot_figures(states[bucket_id], slot)
        figures[case_id] = (total, average, slot_time(last_run))
    return figures


_SLOTS_APART = 500  # (a page holds 500 cases at most)


def slowest_cases(conn: Connection, project_id: str, limit: int) -> list[tuple[str, int]]:
    """(case id, average duration) of the project's `limit` slowest cases that ran, slowest
    first (ties by case id): the averages read from every window's slot, bucket by bucket,
    then only the cases in the running looked up."""
    averages: list[tuple[int, int, int]] = []  # (average, bucket id, slot)
    for bucket_id, slots, state in conn.execute(
            select(window_buckets.c.id, window_buckets.c.slots, window_buckets.c.state)
            .where(window_buckets.c.project_id == project_id)):
        averages.extend((scoring.slot_figures(state, slot)[1], bucket_id, slot)
                        for slot in range(slots))
    if not averages:
        return []
    cutoff = heapq.nlargest(limit, averages)[-1][0]  # the ties at the cutoff are all kept
    running = {(bucket_id, slot): average for average, bucket_id, slot in averages
               if average >= cutoff}
    found = []
    buckets = sorted({bucket_id for bucket_id, _slot in running})
    for start in range(0, len(buckets), CHUNK):
        for case_id, bucket_id, slot in conn.execute(
                select(test_case_windows.c.test_case_id, test_case_windows.c.bucket_id,
                       test_case_windows.c.slot)
                .where(test_case_windows.c.bucket_id.in_(buckets[start:start + CHUNK]))):
            if (bucket_id, slot) in running:
                found.append((-running[bucket_id, slot], case_id))
    return [(case_id, -negative) for negative, case_id in sorted(found)[:limit]]


def window_results(conn: Connection, case_id: str, limit: int) -> list:
    """The case's newest `limit` results that ran, from runs whose statistics are applied,
    newest first, with their run's commit and counts."""
    return conn.execute(
        select(test_results.c.status, test_results.c.duration, test_results.c.created_at,
               runs.c.id.label("run_id"), runs.c.commit_sha,
               runs.c.failed_tests, runs.c.total_tests, runs.c.skipped_tests)
        .join(runs, runs.c.id == test_results.c.run_id)
        .where(test_results.c.test_case_id == case_id, test_results.c.status != "skipped",
               runs.c.stats_applied.is_(True))
        .order_by(test_results.c.created_at.desc(), test_results.c.id.desc())
        .limit(limit)).all()


def set_quarantine(conn: Connection, project_id: str, case_id: str, quarantined: bool, *,
                   actor_id: str | None, reason: str | None, owner: str | None,
                   expires_at: datetime | None, automatic: bool = False) -> None:
    """Quarantine or release a case, recording who, when and why in its history."""
    _set_quarantine(conn, project_id, [case_id], quarantined, actor_id=actor_id, reason=reason,
                    owner=owner, expires_at=expires_at, automatic=automatic)


def _set_quarantine(conn: Connection, project_id: str, case_ids: list[str], quarantined: bool,
                    *, actor_id: str | None, reason: str | None, owner: str | None,
                    expires_at: datetime | None, automatic: bool) -> None:
    """`set_quarantine` of several cases alike, in a statement per table (a run may cross the
    threshold for hundreds of cases at once)."""
    if not case_ids:
        return
    now = utcnow()
    action = "quarantine" if quarantined else "unquarantine"
    expires = expires_at if quarantined else None
    conn.execute(quarantine_events.insert(), [
        {"id": event_id, "project_id": project_id, "test_case_id": case_id, "action": action,
         "automatic": automatic, "reason": reason, "owner": owner, "expires_at": expires,
         "actor_id": actor_id, "created_at": now}
        for event_id, case_id in zip(new_ids("qe", len(case_ids)), case_ids)])
    values = {"is_quarantined": quarantined, "quarantined_by": actor_id,
              "quarantined_at": now, "quarantine_reason": reason if quarantined else None,
              "quarantine_owner": owner if quarantined else None,
              "quarantine_expires_at": expires}
    if not automatic:
        values["quarantine_manual"] = True
    for start in range(0, len(case_ids), CHUNK):
        conn.execute(update(test_cases).where(test_cases.c.id.in_(case_ids[start:start + CHUNK]))
                     .values(**values))
    if quarantined:
        from redline.server.webhooks.service import emit_each

        def events():  # read only when a webhook subscribes to test.quarantined
            for start in range(0, len(case_ids), CHUNK):
                for case in conn.execute(
                        select(test_cases.c.id, test_cases.c.full_title, test_cases.c.file_path)
                        .where(test_cases.c.id.in_(case_ids[start:start + CHUNK]))
                        .order_by(test_cases.c.id)):
                    yield {"testCaseId": case.id, "fullTitle": case.full_title,
                           "filePath": case.file_path, "reason": reason, "owner": owner,
                           "automatic": automatic, "expiresAt": iso(expires_at)}

        emit_each(conn, project_id, "test.quarantined", events())


def _record_error_groups(conn: Connection, project_id: str, run_id: str) -> None:
    """Count the run's failures into their error groups and each group's cases. At the
    driver level, like the rest of `apply_run`: a run with a thousand failures is common."""
    mark = driver_mark(conn)
    groups: dict[str, list] = {}
    per_case: dict[tuple[str, str], list] = {}
    for case_id, created_at, error, fp in conn.exec_driver_sql(
            # (only failures have a fingerprint, results/service.py: the status narrows the
            # scan of the (run, status) index to them)
            "SELECT test_case_id, created_at, error, error_fingerprint FROM test_results "
            f"WHERE run_id = {mark} AND status IN ('failed', 'flaky') "
            "AND error_fingerprint IS NOT NULL", (run_id,)):
        group = groups.get(fp)
        if group is None:
            error = (json.loads(error) if isinstance(error, str) else error) or {}
            # in the order of the INSERT below; times stay in the driver's form (SQLite's text
            # sorts as the times do)
            group = groups[fp] = [
                project_id, fp, (error.get("message") or error.get("stack") or "")[:2000],
                error.get("type") or None, created_at, created_at, 0]
        group[6] += 1
        group[5] = max(group[5], created_at)
        case = per_case.get((fp, case_id))
        if case is None:
            case = per_case[(fp, case_id)] = [project_id, fp, case_id, created_at, created_at, 0]
        case[5] += 1
    if not groups:
        return
    postgres = conn.dialect.name == "postgresql"
    for table, key, extra, rows in (
            ("error_groups", ("project_id", "fingerprint"), ("message", "error_type"),
             groups.values()),
            ("error_group_cases", ("project_id", "fingerprint", "test_case_id"), (),
             per_case.values())):
        columns = (*key, *extra, "first_seen", "last_seen", "occurrences")
        merge = (f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET last_seen = "
                 f"{'greatest' if postgres else 'max'}({table}.last_seen, excluded.last_seen), "
                 f"occurrences = {table}.occurrences + excluded.occurrences")
        if postgres:  # one statement from one array per column, not a statement per row
            types = ("text",) * (len(key) + len(extra)) + ("timestamp", "timestamp", "int4")
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM "
                f"{_pg_rows(columns, types)} {merge}",
                tuple(list(column) for column in zip(*rows)))
        else:
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join([mark] * len(columns))}) {merge}",
                [tuple(row) for row in rows])

