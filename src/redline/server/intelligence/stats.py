"""Keeping per-case statistics, verdicts and error groups up to date when a run completes.

`apply_run` is called once per run, in the transaction that completes it, and is idempotent
(`runs.stats_applied`). It reads the run's results joined to their cases' windows in one
streamed pass, updates each case's constant-size window (scoring.CaseWindow) and writes back
with one executemany per chunk of cases: reads of flakiness, history and errors then never
scan history, and a run costs the same whatever the history. What runs change (the window,
the average duration, the last run, the counts, the last status) is written to the narrow
`test_case_windows`; a case's wide `test_cases` row is read only for the cases a pass did
not leave at a score of 0 (`scoring.push_steady_pass`: for those the status and score follow
from the window), and written only when its status or score changed, which for most cases of
most runs they do not.
(A case's tags follow its newest result at ingestion: results/service.py.) `recompute_case`
rebuilds one case's statistics from its stored results; a test proves both give the same
state, byte for byte.
"""

from __future__ import annotations

import json
from datetime import datetime
from itertools import groupby
from operator import itemgetter

from sqlalchemy import Connection, select, update

from redline.server.intelligence import scoring
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_ids
from redline.server.results.repository import driver_datetime, driver_mark
from redline.server.tables import (
    projects,
    quarantine_events,
    runs,
    test_cases,
    test_results,
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
    windows: list[tuple] = []  # cases with a window row, and those without one yet
    new_windows: list[tuple] = []
    quiet: list[tuple] = []  # passes that changed no more than `_QUIET_COLUMNS` of a window
    staged = {"windows": 0, "new windows": 0, "figures": 0}  # (PostgreSQL: `_write_stats`)
    changed: list[tuple] = []  # cases whose status or score in `test_cases` changed
    long_way: list[tuple] = []  # (case id, its new stats): judged against its case row

    def judge_long_way() -> None:
        """The status and score of the cases that took the long way, against their stored
        ones and their quarantine: one read of their `test_cases` rows."""
        stored = _case_rows(conn, [case_id for case_id, _stats in long_way])
        for case_id, stats in long_way:
            status, score, quarantined, manual, expires = stored[case_id]
            if (stats.status, stats.flakiness_score) != (status, score):
                changed.append((stats.status, stats.flakiness_score, case_id, score))
            if stats.status == "flaky" and status != "flaky":
                became_flaky.append((case_id, stats.flakiness_score))
            active = quarantined and (expires is None or expires > now)
            if (auto and not active and not manual and stats.total_runs >= 5
                    and stats.flaky_runs and stats.flakiness_score >= threshold):
                auto_candidates.append(case_id)
        long_way.clear()

    _start_writing(conn)
    push_steady_pass = scoring.push_steady_pass
    # (PostgreSQL writes a whole new row version whatever changed: a quiet pass is written
    # whole there, like any other)
    narrow_writes = conn.dialect.name != "postgresql"
    # One pass over the run's results joined to their windows, grouped by case; values the
    # rows carry back (times) stay in the driver's form. Memory is bounded by WRITE_CHUNK.
    for rows in _results_by_case(conn, run_id):
        if len(windows) + len(new_windows) + len(quiet) >= WRITE_CHUNK:
            judge_long_way()
            _write_stats(conn, windows, new_windows, quiet, changed, staged)
            windows, new_windows, quiet, changed = [], [], [], []
        case = rows[0]  # each row: the case's id and window columns, then one of its results
        if len(rows) == 1 and not outage:
            case_id, state, _flaky_at, failed_at, key, status, duration, created_at = case
            if status == "passed" and state is not None:
                steady = push_steady_pass(state, commit, duration)
                if steady is not None:  # one more pass, no evidence in sight: a score of 0
                    state, count, failures, average, before, quiet_pass = steady
                    if quiet_pass and narrow_writes:  # the last status, counts, times stay
                        quiet.append((state, average, created_at, count, key))
                    else:
                        windows.append((state, average, created_at, count, 0, failures,
                                        "passed", None, failed_at if failures else None, key))
                    # Its score was 0 and stays 0: the case row changes only if it was broken.
                    # (Every write of a window writes the status it gives, so the stored
                    # status is the one the window before this pass gives.)
                    if before != "stable":
                        changed.append(("stable", 0.0, case_id, 0.0))
                    continue
        ran = []
        for row in rows:
            status = row[_STATUS]
            if status != "skipped":
                ran.append((status, commit, outage, row[_STATUS + 1], row[_STATUS + 2],
                            len(ran)))  # the results before it in `ran` are this run's
                if status == "failed":
                    failed_cases.append(case[_ID])
        if not ran:
            continue  # only skipped: the window is unchanged
        window = scoring.CaseWindow.decode(case[_WINDOW])
        flaky_at, failed_at = _advance(window, ran, case[_FLAKY_AT], case[_FAILED_AT])
        stats = window.stats(threshold)
        figures = (window.encode(), stats.avg_duration, ran[-1][4], stats.total_runs,
                   stats.flaky_runs, stats.failed_runs, stats.last_status, flaky_at, failed_at)
        if case[_WINDOW] is not None:
            windows.append((*figures, case[_KEY]))
        else:
            new_windows.append((*figures, case[_ID]))
        long_way.append((case[_ID], stats))
    judge_long_way()
    _write_stats(conn, windows, new_windows, quiet, changed, staged, last=True)

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


# -- the driver-level reads and writes of `apply_run` (a run touches thousands of cases) --

# The figures of `test_cases` that a run may change; written only for the cases where it did.
_FIGURE_COLUMNS = ("status", "flakiness_score")
# What every run writes to `test_case_windows` for each case that ran, then the case id.
_WINDOW_COLUMNS = ("window_state", "avg_duration", "last_run_at", "total_runs", "flaky_runs",
                   "failed_runs", "last_status", "last_flaky_at", "last_failed_at")
# What a quiet pass changes (scoring.push_steady_pass: one after a pass, with no failure
# leaving the window): the rest of a window row stays, and SQLite binds less (a fifth of the
# time of writing a whole row).
_QUIET_COLUMNS = ("window_state", "avg_duration", "last_run_at", "total_runs")
# What `apply_run` reads of each case with its results, in this order (indexes below): the
# case id, its window's columns and the key its window row is updated by (SQLite: the row's
# rowid, one b-tree search instead of two; PostgreSQL: the case id). Not the case's own row:
# a steady pass needs none of it, the long way reads it apart.
_CASE_COLUMNS = ("r.test_case_id", "w.window_state", "w.last_flaky_at", "w.last_failed_at")
_ID, _WINDOW, _FLAKY_AT, _FAILED_AT, _KEY = range(5)
_STATUS = _KEY + 1  # where the result's columns start


def _results_by_case_sql(mark: str, window_key: str, arrival: str) -> str:
    return (f"SELECT {', '.join(_CASE_COLUMNS)}, {window_key}, r.status, r.duration, "
            "r.created_at FROM test_results r "
            "LEFT JOIN test_case_windows w ON w.test_case_id = r.test_case_id "
            f"WHERE r.run_id = {mark} ORDER BY r.test_case_id, {arrival}")


# The result's columns come from the (run, status, case, duration, created_at) index alone on
# SQLite, the rowid (in every SQLite index) standing for the order of arrival.
_RESULTS_BY_CASE_SQLITE = _results_by_case_sql("?", "w.rowid", "r.rowid")
_RESULTS_BY_CASE_PG = _results_by_case_sql("%s", "r.test_case_id", "r.id")


def _results_by_case(conn: Connection, run_id: str):
    """The run's results grouped by case, in arrival order: one list of rows per case, each
    row the case's id and window columns (`_CASE_COLUMNS`) then the result's status, duration
    and created_at. Streamed: a server-side cursor on PostgreSQL, SQLite's own stepping
    otherwise."""
    if conn.dialect.name == "postgresql":
        # The sort of 5,000 rows with their windows spills to disk at the default work_mem
        # (4 MB): give this transaction enough to sort a large run in memory.
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        # binary rows: the windows arrive as bytes, not as hex text to decode
        cursor = conn.connection.driver_connection.cursor(name=f"apply_{run_id}", binary=True)
        cursor.itersize = 2000
        cursor.execute(_RESULTS_BY_CASE_PG, (run_id,))
    else:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(_RESULTS_BY_CASE_SQLITE, (run_id,))
    try:
        for _case_id, rows in groupby(cursor, itemgetter(_ID)):
            yield list(rows)
    finally:
        cursor.close()


# PostgreSQL: the rows are COPied into temporary tables and applied with one UPDATE ... FROM
# each at the end: over twice as fast as psycopg's pipelined executemany of single-row UPDATEs
# (measured 120 vs 290 ms for 5,000 cases; a set-based UPDATE from unnest() arrays was
# slower still). The rows wait in the database, not in memory.
_PG_WINDOWS, _PG_FIGURES = "redline_case_windows", "redline_case_figures"
# _WINDOW_COLUMNS, then the case id and whether it has no window row yet
_PG_WINDOW_TYPES = ("bytea", "int8", "timestamp", "int4", "int4", "int4", "text", "timestamp",
                    "timestamp", "text", "bool")
_PG_FIGURE_TYPES = ("text", "float8", "text")  # _FIGURE_COLUMNS, then the case id


def _pg_staging(name: str, columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    return (f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} "
            f"({', '.join(f'{c} {t}' for c, t in zip(columns, types))}) ON COMMIT DELETE ROWS")


_PG_CREATE_STAGING = (
    _pg_staging(_PG_WINDOWS, (*_WINDOW_COLUMNS, "id", "fresh"), _PG_WINDOW_TYPES),
    _pg_staging(_PG_FIGURES, (*_FIGURE_COLUMNS, "id"), _PG_FIGURE_TYPES))
# Each runs only when rows of its kind were staged (a scan of 5,000 staged windows for new
# ones, when there are none, cost 4 ms); the staging is emptied by TRUNCATE (a DELETE of
# 5,000 rows cost 3 ms), as a caller may go on in the same transaction.
_PG_APPLY_WINDOWS = (
    f"UPDATE test_case_windows AS w SET {', '.join(f'{c} = s.{c}' for c in _WINDOW_COLUMNS)} "
    f"FROM {_PG_WINDOWS} AS s WHERE w.test_case_id = s.id AND NOT s.fresh")
_PG_APPLY_NEW_WINDOWS = (
    f"INSERT INTO test_case_windows (test_case_id, {', '.join(_WINDOW_COLUMNS)}) "
    f"SELECT id, {', '.join(_WINDOW_COLUMNS)} FROM {_PG_WINDOWS} WHERE fresh")
_PG_APPLY_FIGURES = (
    f"UPDATE test_cases AS c SET {', '.join(f'{c} = s.{c}' for c in _FIGURE_COLUMNS)} "
    f"FROM {_PG_FIGURES} AS s WHERE c.id = s.id")
_PG_EMPTY_STAGING = f"TRUNCATE {_PG_WINDOWS}, {_PG_FIGURES}"

_SQLITE_UPDATE_WINDOW = (f"UPDATE test_case_windows SET "
                         f"{', '.join(f'{c} = ?' for c in _WINDOW_COLUMNS)} "
                         "WHERE rowid = ?")  # the rowid `_results_by_case` read
_SQLITE_UPDATE_QUIET = (f"UPDATE test_case_windows SET "
                        f"{', '.join(f'{c} = ?' for c in _QUIET_COLUMNS)} WHERE rowid = ?")
_SQLITE_INSERT_WINDOW = (f"INSERT INTO test_case_windows ({', '.join(_WINDOW_COLUMNS)}, "
                         f"test_case_id) VALUES ({', '.join('?' * (len(_WINDOW_COLUMNS) + 1))})")
_SQLITE_UPDATE_FIGURES = (f"UPDATE test_cases SET {', '.join(f'{c} = ?' for c in _FIGURE_COLUMNS)}"
                          " WHERE id = ?")
_NEW_SCORE = _FIGURE_COLUMNS.index("flakiness_score")
# Leaving an unchanged score out of the UPDATE spares SQLite the delete and re-insert of the
# case's entry in the (project, score) index.
_SQLITE_UPDATE_FIGURES_SAME_SCORE = (
    "UPDATE test_cases SET "
    f"{', '.join(f'{c} = ?' for c in _FIGURE_COLUMNS if c != 'flakiness_score')} WHERE id = ?")


def _case_rows(conn: Connection, case_ids: list[str]) -> dict[str, tuple]:
    """case id -> (status, score, is_quarantined, quarantine_manual, quarantine_expires_at),
    at the driver level (times in the driver's form, as `apply_run` compares them)."""
    found: dict[str, tuple] = {}
    cursor = conn.connection.driver_connection.cursor()
    try:
        for start in range(0, len(case_ids), CHUNK):
            chunk = case_ids[start:start + CHUNK]
            if conn.dialect.name == "postgresql":
                cursor.execute(f"{_CASE_ROWS} = ANY(%s)", (chunk,))
            else:
                cursor.execute(f"{_CASE_ROWS} IN ({', '.join('?' * len(chunk))})", chunk)
            found.update((row[0], row[1:]) for row in cursor.fetchall())
    finally:
        cursor.close()
    return found


_CASE_ROWS = ("SELECT id, status, flakiness_score, is_quarantined, quarantine_manual, "
              "quarantine_expires_at FROM test_cases WHERE id")


def _write_stats(conn: Connection, windows: list[tuple], new_windows: list[tuple],
                 quiet: list[tuple], changed: list[tuple], staged: dict[str, int], *,
                 last: bool = False) -> None:
    """`windows` (`_WINDOW_COLUMNS`, then the window row's key read by `_results_by_case`),
    `new_windows` (`_WINDOW_COLUMNS`, then the case id) and `quiet` (`_QUIET_COLUMNS`, then
    the key; SQLite only) for the cases with a window row, those without one yet and the
    quiet passes; `changed` (`_FIGURE_COLUMNS`, the case id, then its score before this run) for the
    cases whose status or score changed. SQLite: executemany (its per-row cost is its b-tree
    work). PostgreSQL: staged by COPY, applied when `last`; `staged` counts what this
    `apply_run` staged so far, by kind."""
    if conn.dialect.name != "postgresql":
        if windows:
            conn.exec_driver_sql(_SQLITE_UPDATE_WINDOW, windows)
        if quiet:
            conn.exec_driver_sql(_SQLITE_UPDATE_QUIET, quiet)
        if new_windows:
            conn.exec_driver_sql(_SQLITE_INSERT_WINDOW, new_windows)
        rescored = [row[:-1] for row in changed if row[_NEW_SCORE] != row[-1]]
        same = [row[:_NEW_SCORE] + row[_NEW_SCORE + 1:-1] for row in changed
                if row[_NEW_SCORE] == row[-1]]
        if rescored:
            conn.exec_driver_sql(_SQLITE_UPDATE_FIGURES, rescored)
        if same:
            conn.exec_driver_sql(_SQLITE_UPDATE_FIGURES_SAME_SCORE, same)
        return
    cursor = conn.connection.driver_connection.cursor()
    try:
        if windows or new_windows:
            with cursor.copy(f"COPY {_PG_WINDOWS} FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_PG_WINDOW_TYPES)
                for row in windows:
                    copy.write_row((*row, False))
                for row in new_windows:
                    copy.write_row((*row, True))
        if changed:
            with cursor.copy(f"COPY {_PG_FIGURES} FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_PG_FIGURE_TYPES)
                for row in changed:
                    copy.write_row(row[:-1])
        staged["windows"] += len(windows)
        staged["new windows"] += len(new_windows)
        staged["figures"] += len(changed)
        if last:
            for kind, statement in (("windows", _PG_APPLY_WINDOWS),
                                    ("new windows", _PG_APPLY_NEW_WINDOWS),
                                    ("figures", _PG_APPLY_FIGURES)):
                if staged[kind]:
                    cursor.execute(statement)
            if any(staged.values()):
                cursor.execute(_PG_EMPTY_STAGING)
    finally:
        cursor.close()


def _start_writing(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        for statement in _PG_CREATE_STAGING:
            conn.exec_driver_sql(statement)


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
    """A case's statistics rebuilt from its stored results, as the column values of
    `test_case_windows` and `test_cases`: the check on
    the incremental path. The newest `2 * WINDOW` results are replayed, so each result in the
    window is judged against the `WINDOW` results before it, as it was when it arrived."""
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
    latest = "greatest" if conn.dialect.name == "postgresql" else "max"
    for table, key, extra, rows in (
            ("error_groups", ("project_id", "fingerprint"), ("message", "error_type"),
             groups.values()),
            ("error_group_cases", ("project_id", "fingerprint", "test_case_id"), (),
             per_case.values())):
        columns = (*key, *extra, "first_seen", "last_seen", "occurrences")
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join([mark] * len(columns))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE "
            f"SET last_seen = {latest}({table}.last_seen, excluded.last_seen), "
            f"occurrences = {table}.occurrences + excluded.occurrences",
            [tuple(row) for row in rows])

