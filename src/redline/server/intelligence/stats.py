"""Keeping per-case statistics, verdicts and error groups up to date when a run completes.

`apply_run` is called once per run, in the transaction that completes it, and is idempotent
(`runs.stats_applied`). It takes the run's results with where their cases' windows live (a
slot of their file's bucket, `window_buckets`, given when the case is created:
`place_cases`): from the import that made the run when it holds them all, else read back in
one streamed pass. It updates each case's constant-size window (scoring.CaseWindow) in its
slot and writes back the buckets it touched: reads of flakiness, history and errors then
never scan history, and a run costs the same whatever the history. A pass after a pass (most
cases of most runs) changes only the window's slot: the total runs, the average duration and
the last run are read from there. The figures readers filter and sort by (the score, flaky
and failed runs, the last status, the last flaky and failed times) are written to
`test_case_windows` only for the cases whose outcomes moved them, without reading them first.
A case's wide `test_cases` row is read only for the cases a pass did not leave at a score of
0 (`scoring.push_steady_pass`: for those the status follows from the window), and its status
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
from redline.server.results.repository import copy_rows, driver_datetime, driver_mark
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
BUCKET_BYTES = 16 << 20  # loaded buckets kept between writes of them, at most (16 MiB)


def run_outage(run) -> bool:
    return scoring.is_outage(run.failed_tests, run.total_tests - run.skipped_tests)


def _advance(window: scoring.CaseWindow, results):
    """Push `results` (oldest first; each `(status, commit key, outage, duration, created_at,
    same_run)`, none skipped) into the window; answers the times of the newest evidence and
    the newest failure among them (None: none)."""
    flaky_at = failed_at = None
    for status, commit, outage, duration, at, same_run in results:
        if window.push(status, commit, outage, duration, same_run):
            flaky_at = at
        if status == "failed":
            failed_at = at
    return flaky_at, failed_at


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
                cursor.execute(_QUARANTINE_HISTORY.format(cases=f"= ANY({PG_ARRAY})",
                                                          mark="%s"), (chunk, when))
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


def apply_run(conn: Connection, run_id: str, outcomes: list[tuple] | None = None) -> None:
    """Apply a completed run to its cases' statistics and give it its verdict. `outcomes`:
    the run's results from the import that made the run and stored all of them (each `(case
    id, bucket id, slot, status, duration, created_at)`, in arrival order, created_at in the
    driver's form: `results.service.ingest`); without them they are read back."""
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
    # (case id, its new stats, its stored status when the window before this run tells it
    # whatever the threshold, else None)
    long_way: list[tuple] = []
    micros = _micros

    def could_quarantine(stats: scoring.CaseStats) -> bool:
        return bool(auto and stats.total_runs >= 5 and stats.flaky_runs
                    and stats.flakiness_score >= threshold)

    def judge_long_way() -> None:
        """The status of the cases that took the long way, against their stored one and
        their quarantine. A case's `test_cases` row is read (one read for them all) when its
        window had evidence before this run (its stored status depends on the threshold it
        was judged by, which may have changed since) or when it could now be quarantined
        automatically. Otherwise its stored status is the one its window gave, `stable` or
        `broken` (every write of a window writes the status it gives; a case that never ran
        holds the `stable` it was created with): most failing cases of most runs."""
        stored = _case_rows(conn, [case_id for case_id, stats, before in long_way
                                   if before is None or could_quarantine(stats)])
        for case_id, stats, before in long_way:
            status, quarantined, manual, expires = stored.get(case_id) or (before, False,
                                                                          False, None)
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
    # The run's results grouped by case, in chunks of cases (memory is bounded by
    # WRITE_CHUNK cases and `_Writes.BUCKET_BYTES`); times stay in the driver's form.
    dirty = writes.dirty.add
    for groups in _results_by_case(conn, run_id, outcomes):
        buckets = writes.load_buckets({rows[0][_BUCKET] for rows in groups})
        for rows in groups:
            case = rows[0]  # each row: the case, its bucket and slot, then one result
            case_id, bucket_id, slot = case[_ID], case[_BUCKET], case[_SLOT]
            bucket = buckets[bucket_id]
            if not outage and len(rows) == 1 and case[_STATUS] == "passed":
                steady = push_steady_pass(bucket, slot, commit, case[_DURATION],
                                          micros(case[_AT]))
                if steady is not None:  # one more pass, no evidence in sight: a score of 0
                    _count, failures, _average, before, quiet_pass = steady
                    dirty(bucket_id)
                    if not quiet_pass:  # the last status or the failures moved
                        writes.figures.append((0, failures, "passed", False, None,
                                               failures > 0, None, 0.0, case_id))
                    # Its score was 0 and stays 0: the case row changes only if it was
                    # broken. (Every write of a window's figures writes the status it gives,
                    # so the stored status is the one the window before this pass gives.)
                    if before != "stable":
                        writes.changed.append(("stable", case_id))
                    continue
            ran = []
            for row in rows:
                status = row[_STATUS]
                if status != "skipped":
                    ran.append((status, commit, outage, row[_DURATION], row[_AT],
                                len(ran)))  # the results before it in `ran` are this run's
                    if status == "failed":
                        failed_cases.append(case_id)
            if not ran:
                continue  # only skipped: the window is unchanged
            first = not scoring.slot_ran(bucket, slot)
            before = "stable"  # (what a case that never ran holds)
            if first and len(ran) == 1:  # a new test's first result (a first import's all)
                status, _commit, _outage, duration, at, _same_run = ran[0]
                encoded, stats, evidence = scoring.first_result(status, commit, outage,
                                                                duration, threshold)
                flaky_at = at if evidence else None
                failed_at = at if status == "failed" else None
            else:
                window = scoring.CaseWindow.decode(None if first
                                                   else scoring.slot_window(bucket, slot))
                before = window.status_without_evidence()
                flaky_at, failed_at = _advance(window, ran)
                stats, encoded = window.stats(threshold), window.encode()
                keep_flaky, keep_failed = window.evidence > 0, window.failed > 0
            scoring.put_slot(bucket, slot, encoded, micros(ran[-1][4]))
            dirty(bucket_id)
            if first:
                writes.first_figures.append((stats.flaky_runs, stats.failed_runs,
                                             stats.last_status, flaky_at, failed_at,
                                             stats.flakiness_score, case_id, run.project_id))
            else:  # a time kept while its kind stays in the window, unless a newer came
                writes.figures.append((stats.flaky_runs, stats.failed_runs, stats.last_status,
                                       keep_flaky, flaky_at, keep_failed, failed_at,
                                       stats.flakiness_score, case_id))
            if before is None or stats.status != before or could_quarantine(stats):
                long_way.append((case_id, stats, before))  # (else nothing to judge)
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

# What a run's results give `apply_run`, each (indexes below): the case, where its window lives
# (its bucket and slot), the result's status, duration and time.
_ID, _BUCKET, _SLOT, _STATUS, _DURATION, _AT = range(6)
_BY_BUCKET_AND_CASE = itemgetter(_BUCKET, _ID)


def _results_by_case_sql(mark: str, arrival: str) -> str:
    # by bucket, so that a chunk of cases needs few buckets
    return ("SELECT r.test_case_id, c.bucket_id, c.slot, r.status, r.duration, r.created_at "
            "FROM test_results r JOIN test_cases c ON c.id = r.test_case_id "
            f"WHERE r.run_id = {mark} ORDER BY c.bucket_id, r.test_case_id, {arrival}")


# (SQLite: the rowid, in every index, stands for the order of arrival)
_RESULTS_BY_CASE_SQLITE = _results_by_case_sql("?", "r.rowid")
_RESULTS_BY_CASE_PG = _results_by_case_sql("%s", "r.id")


def _results_by_case(conn: Connection, run_id: str, outcomes: list[tuple] | None):
    """The run's results grouped by case, in arrival order (their ids sort so: kit/ids.py),
    the cases by bucket, in lists of up to WRITE_CHUNK cases: each case a list of its rows
    (`apply_run`'s `outcomes`). Given by the import, or read back streamed: a server-side
    cursor on PostgreSQL, SQLite's own stepping otherwise."""
    cursor = None
    if outcomes is not None:
        source = sorted(outcomes, key=_BY_BUCKET_AND_CASE)  # (stable: arrival order kept)
    elif conn.dialect.name == "postgresql":
        # The sort of a large run's results spills to disk at the default work_mem (4 MB):
        # give this transaction enough to sort it in memory.
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        source = cursor = conn.connection.driver_connection.cursor(name=f"apply_{run_id}",
                                                                   binary=True)
        cursor.itersize = 2000
        cursor.execute(_RESULTS_BY_CASE_PG, (run_id,))
    else:
        source = cursor = conn.connection.driver_connection.cursor()
        cursor.execute(_RESULTS_BY_CASE_SQLITE, (run_id,))
    try:
        groups = []
        for _case_id, rows in groupby(source, itemgetter(_ID)):
            groups.append(list(rows))
            if len(groups) >= WRITE_CHUNK:
                yield groups
                groups = []
        if groups:
            yield groups
    finally:
        if cursor is not None:
            cursor.close()


# The figures of a window whose outcomes moved, as a run writes them: a time of the last
# evidence or failure is kept while one stays in the window (`keep_*`) unless this run gave
# a newer one, so that the figures are written without being read first. Then the row's key.
_FIGURE_COLUMNS = ("flaky_runs", "failed_runs", "last_status", "keep_flaky", "flaky_at",
                   "keep_failed", "failed_at", "flakiness_score")
# A window's first figures, inserted with the row.
_FIRST_COLUMNS = ("flaky_runs", "failed_runs", "last_status", "last_flaky_at",
                  "last_failed_at", "flakiness_score", "test_case_id", "project_id")


def _figures_set(value, column) -> str:
    """The SET list of the figures' UPDATE, from the value given for each column."""
    return (f"flaky_runs = {value('flaky_runs')}, failed_runs = {value('failed_runs')}, "
            f"last_status = {value('last_status')}, "
            f"last_flaky_at = CASE WHEN {value('keep_flaky')} "
            f"THEN coalesce({value('flaky_at')}, {column('last_flaky_at')}) END, "
            f"last_failed_at = CASE WHEN {value('keep_failed')} "
            f"THEN coalesce({value('failed_at')}, {column('last_failed_at')}) END, "
            f"flakiness_score = {value('flakiness_score')}")


# PostgreSQL: each kind of row is written by one statement per flush, from one array per
# column (`unnest`): a run writes them only for the cases whose outcomes moved, a few hundred,
# in one round trip each and without a staging table.
_PG_FIGURE_TYPES = ("int4", "int4", "text", "bool", "timestamp", "bool", "timestamp", "float8")


def _execute_arrays(conn: Connection, statement: str, params: list) -> None:
    """PostgreSQL: run `statement` (its array parameters `%b`, `_pg_rows`) with the driver."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(statement, params)
    finally:
        cursor.close()


# An array parameter goes in binary (`%b`, not `%s`): in text, psycopg searches each element
# for characters to quote, 7.5 ms for 5,000 ids here against 2.2 ms in binary.
PG_ARRAY = "%b"


def _pg_rows(columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    """The rows of one array parameter per column, as a table `s` with these columns."""
    return (f"unnest({', '.join(f'{PG_ARRAY}::{t}[]' for t in types)}) "
            f"AS s({', '.join(columns)})")


_PG_UPDATE_FIGURES = (
    f"UPDATE test_case_windows AS w SET {_figures_set(lambda c: f's.{c}', lambda c: f'w.{c}')} "
    f"FROM {_pg_rows((*_FIGURE_COLUMNS, 'id'), (*_PG_FIGURE_TYPES, 'text'))} "
    "WHERE w.test_case_id = s.id")
_PG_INSERT_FIGURES = (
    f"INSERT INTO test_case_windows ({', '.join(_FIRST_COLUMNS)}) SELECT * FROM "
    + _pg_rows(_FIRST_COLUMNS, ("int4", "int4", "text", "timestamp", "timestamp", "float8",
                                "text", "text")))
# A first import's first figures go by COPY from this many rows on: the arrays of 100,000
# rows took 1.1 s to insert here, COPY 0.8 s (each element of an array is dumped in Python).
_COPY_FIRST_FIGURES = 500
_PG_UPDATE_STATUS = (f"UPDATE test_cases AS c SET status = s.status FROM "
                     f"{_pg_rows(('status', 'id'), ('text', 'text'))} WHERE c.id = s.id")

_SQLITE_UPDATE_FIGURES = (f"UPDATE test_case_windows SET {_figures_set(lambda c: '?', str)} "
                          "WHERE test_case_id = ?")
_SQLITE_INSERT_FIGURES = (f"INSERT INTO test_case_windows ({', '.join(_FIRST_COLUMNS)}) "
                          f"VALUES ({', '.join('?' * len(_FIRST_COLUMNS))})")
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


def _in(conn: Connection, column: str, values: list) -> tuple[str, tuple]:
    """`column IN (values)` at the driver level, and its parameters."""
    if conn.dialect.name == "postgresql":
        return f"{column} = ANY({PG_ARRAY})", (list(values),)
    return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)


def _lock_project(conn: Connection, project_id: str) -> None:
    """PostgreSQL: one transaction at a time per project gives slots (`place_cases`) or
    completes a run (which rewrites whole buckets), until it ends. (SQLite has one writer.)"""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(project_id.encode(), digest_size=8).digest(),
                             "big", signed=True)
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (key,))


def place_cases(conn: Connection, project_id: str,
                file_paths: list[str | None]) -> list[tuple[int, int]]:
    """A slot for the window of each new case of the project, given by its file path (None:
    no file): its file's last bucket while it has room, else new buckets, created empty (their
    state grows as windows are written). Answers (bucket id, slot) in the order given."""
    _lock_project(conn, project_id)
    mark = driver_mark(conn)
    files = [path or "" for path in file_paths]
    last: dict[str, list] = {}  # file -> [its last bucket's id (None: new), part, slots]
    paths = sorted(set(files))
    for start in range(0, len(paths), WRITE_CHUNK):
        condition, params = _in(conn, "file_path", paths[start:start + WRITE_CHUNK])
        for path, bucket_id, part, slots in conn.exec_driver_sql(
                f"SELECT file_path, id, part, slots FROM window_buckets "
                f"WHERE project_id = {mark} AND {condition} ORDER BY part",
                (project_id, *params)):
            last[path] = [bucket_id, part, slots]
    grown: dict[int, int] = {}  # existing bucket -> its slots now
    fresh: dict[tuple[str, int], int] = {}  # (file, part) of a new bucket -> its slots
    placed = []  # (bucket id or None, file, part, slot)
    for path in files:
        bucket = last.get(path)
        if bucket is None or bucket[2] >= scoring.BUCKET_SLOTS:
            part = 0 if bucket is None else bucket[1] + 1
            bucket = last[path] = [None, part, 0]
        placed.append((bucket[0], path, bucket[1], bucket[2]))
        bucket[2] += 1
        if bucket[0] is None:
            fresh[path, bucket[1]] = bucket[2]
        else:
            grown[bucket[0]] = bucket[2]
    if grown:
        conn.exec_driver_sql(f"UPDATE window_buckets SET slots = {mark} WHERE id = {mark}",
                             [(slots, bucket_id) for bucket_id, slots in grown.items()])
    created = _create_buckets(conn, project_id, fresh)
    return [(created[path, part] if bucket_id is None else bucket_id, slot)
            for bucket_id, path, part, slot in placed]


def _create_buckets(conn: Connection, project_id: str,
                    fresh: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """Insert empty buckets ((file, part) -> slots given): (file, part) -> id. One statement
    per 400 buckets, not one each (a first import of 100,000 tests makes 2,000 of them)."""
    created: dict[tuple[str, int], int] = {}
    values = [(project_id, path, part, slots, b"") for (path, part), slots in fresh.items()]
    for start in range(0, len(values), 400):
        chunk = values[start:start + 400]
        if conn.dialect.name == "postgresql":
            statement = ("INSERT INTO window_buckets (project_id, file_path, part, slots, "
                         "state) SELECT * FROM " + _pg_rows(
                             ("project_id", "file_path", "part", "slots", "state"),
                             ("text", "text", "int4", "int4", "bytea")))
            params = tuple(list(column) for column in zip(*chunk))
        else:  # (RETURNING gives no order: each row says which bucket it is)
            statement = ("INSERT INTO window_buckets (project_id, file_path, part, slots, "
                         f"state) VALUES {', '.join(['(?, ?, ?, ?, ?)'] * len(chunk))}")
            params = tuple(value for row in chunk for value in row)
        for bucket_id, path, part in conn.exec_driver_sql(
                f"{statement} RETURNING id, file_path, part", params):
            created[path, part] = bucket_id
    return created


class _Writes:
    """What `apply_run` changes, kept until `flush`: the buckets it loaded (`dirty`: the ids
    of those it changed), the figures of the windows whose outcomes moved (`figures`:
    `_FIGURE_COLUMNS` then the case id), the figures of the windows that got their first
    result (`first_figures`: `_FIRST_COLUMNS`) and the cases whose status changed
    (`changed`: the new status, the case id). SQLite writes with executemany (its per-row
    cost is its b-tree work); PostgreSQL with a statement from arrays per kind of row."""

    def __init__(self, conn: Connection, project_id: str):
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.mark = driver_mark(conn)
        self.buckets: dict[int, bytearray] = {}
        self.dirty: set[int] = set()
        self.figures: list[tuple] = []
        self.first_figures: list[tuple] = []
        self.changed: list[tuple] = []
        _lock_project(conn, project_id)

    def load_buckets(self, ids: set) -> dict[int, bytearray]:
        """The buckets with these ids, from those already loaded or read now."""
        missing = sorted(i for i in ids if i not in self.buckets)
        # binary rows on PostgreSQL: the buckets arrive as bytes, not as hex text to decode
        cursor = (self.conn.connection.driver_connection.cursor(binary=True) if self.postgres
                  else self.conn.connection.driver_connection.cursor())
        try:
            for start in range(0, len(missing), CHUNK):
                condition, params = _in(self.conn, "id", missing[start:start + CHUNK])
                cursor.execute(f"SELECT id, state FROM window_buckets WHERE {condition}",
                               params)
                for bucket_id, state in cursor.fetchall():
                    self.buckets[bucket_id] = bytearray(state)
        finally:
            cursor.close()
        return self.buckets

    def flush(self, last: bool = False) -> None:
        """Write what changed; at the `last` flush (or past `BUCKET_BYTES` of loaded buckets)
        the changed buckets too."""
        conn = self.conn
        if last or sum(map(len, self.buckets.values())) > BUCKET_BYTES:
            if self.dirty:
                conn.exec_driver_sql(
                    f"UPDATE window_buckets SET state = {self.mark} WHERE id = {self.mark}",
                    [(bytes(self.buckets[i]), i) for i in sorted(self.dirty)])
            # Emptied in place: `apply_run` holds `self.dirty.add` for the whole run; a new
            # set here left the changes of every later chunk unwritten (issue 21).
            self.buckets.clear()
            self.dirty.clear()
        if self.postgres:
            if len(self.first_figures) >= _COPY_FIRST_FIGURES:
                copy_rows(conn, "test_case_windows", ", ".join(_FIRST_COLUMNS),
                          self.first_figures)
                self.first_figures = []
            for statement, rows in ((_PG_UPDATE_FIGURES, self.figures),
                                    (_PG_INSERT_FIGURES, self.first_figures),
                                    (_PG_UPDATE_STATUS, self.changed)):
                if rows:  # one array per column
                    _execute_arrays(conn, statement, [list(column) for column in zip(*rows)])
        else:
            for statement, rows in ((_SQLITE_UPDATE_FIGURES, self.figures),
                                    (_SQLITE_INSERT_FIGURES, self.first_figures),
                                    (_SQLITE_UPDATE_STATUS, self.changed)):
                if rows:
                    conn.exec_driver_sql(statement, rows)
        self.figures, self.first_figures, self.changed = [], [], []


def _emit_run_events(conn: Connection, run, verdict: str, quarantined_failures: int,
                     became_flaky: list[tuple[str, float]]) -> None:
    """The run's events (`run` as `apply_run` read it: completed, its counts refreshed)."""
    from redline.server.webhooks.service import active_webhooks, emit, emit_each

    hooks = active_webhooks(conn, run.project_id)  # read once for the run's events
    data = {"runId": run.id, "projectId": run.project_id, "status": run.status,
            "verdict": verdict, "branch": run.branch, "commitSha": run.commit_sha,
            "ciBuildUrl": run.ci_build_url, "totalTests": run.total_tests,
            "passedTests": run.passed_tests, "failedTests": run.failed_tests,
            "skippedTests": run.skipped_tests, "flakyTests": run.flaky_tests,
            "quarantinedFailures": quarantined_failures}
    emit(conn, run.project_id, "run.completed", data, hooks)
    if verdict == "failed":
        emit(conn, run.project_id, "run.failed", data, hooks)
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
        emit_each(conn, run.project_id, "test.flaky", flaky_events(), hooks)


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
        select(test_case_windows, test_cases.c.status, test_cases.c.slot,
               window_buckets.c.state)
        .join(test_cases, test_cases.c.id == test_case_windows.c.test_case_id)
        .join(window_buckets, window_buckets.c.id == test_cases.c.bucket_id)
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
    `id`, `bucket_id` and `slot`, read from their buckets' slots (a case that never ran:
    0, 0, None): a page of cases reads its slots alone (the database cuts them out of their
    buckets), more read their buckets whole, once each."""
    wanted = [(case.id, case.bucket_id, case.slot) for case in cases]
    figures = {}
    if len(wanted) <= _SLOTS_APART:
        slot_bytes = func.substr(window_buckets.c.state,
                                 test_cases.c.slot * scoring.SLOT + 1, scoring.SLOT)
        for case_id, state in conn.execute(
                select(test_cases.c.id, slot_bytes)
                .join(window_buckets, window_buckets.c.id == test_cases.c.bucket_id)
                .where(test_cases.c.id.in_([w[0] for w in wanted]))):
            # (an empty slot: its bytes end before it, or the bucket is empty: NULL)
            total, average, last_run = scoring.slot_figures(state or b"", 0)
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
        for slot in range(slots):
            total, average, _last_run = scoring.slot_figures(state, slot)
            if total:  # (a case that never ran has no average)
                averages.append((average, bucket_id, slot))
    if not averages:
        return []
    cutoff = heapq.nlargest(limit, averages)[-1][0]  # the ties at the cutoff are all kept
    running = {(bucket_id, slot): average for average, bucket_id, slot in averages
               if average >= cutoff}
    found = []
    buckets = sorted({bucket_id for bucket_id, _slot in running})
    for start in range(0, len(buckets), CHUNK):
        for case_id, bucket_id, slot in conn.execute(
                select(test_cases.c.id, test_cases.c.bucket_id, test_cases.c.slot)
                .where(test_cases.c.bucket_id.in_(buckets[start:start + CHUNK]))):
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
    postgres = conn.dialect.name == "postgresql"
    groups: dict[str, list] = {}
    per_case: dict[tuple[str, str], list] = {}
    for case_id, created_at, error, fp in conn.exec_driver_sql(
            # (only failures have a fingerprint, results/service.py: the status narrows the
            # scan of the (run, status) index to them). The error as text on PostgreSQL too:
            # only a new group's is decoded, not every failure's.
            f"SELECT test_case_id, created_at, {'error::text' if postgres else 'error'}, "
            "error_fingerprint FROM test_results "
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
            _execute_arrays(conn, f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM "
                                  f"{_pg_rows(columns, types)} {merge}",
                            [list(column) for column in zip(*rows)])
        else:
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join([mark] * len(columns))}) {merge}",
                [tuple(row) for row in rows])

