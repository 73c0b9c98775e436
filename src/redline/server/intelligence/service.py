"""Reads over test intelligence: test cases, history, flakiness and quarantine, error groups,
trends and run comparison. Everything reads the per-case statistics and aggregates kept by
`stats.apply_run`, or one indexed query; nothing scans a project's history."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Text, and_, cast, func, or_, select
from sqlalchemy import case as case_when

from redline.server.auth import Principal, require_in_project, require_project
from redline.server.http_errors import not_found, validation_error
from redline.server.intelligence import scoring, stats
from redline.server.intelligence.repository import day_of
from redline.server.kit.clock import iso, parse_iso, utcnow
from redline.server.kit.like import icontains
from redline.server.results import service as results
from redline.server.runs import service as runs
from redline.server.tables import (
    error_group_cases,
    error_groups,
    projects,
    quarantine_events,
    test_case_windows,
    test_cases,
    test_results,
)
from redline.server.tables import runs as runs_table
from redline.server.webhooks import service as webhooks

SCORE_FORMULA = ("flakinessScore = sum(w_i * evidence_i) / sum(w_i) over the newest 50 results "
                 "that ran, w_i = 0.5 ** (i / 10), i = 0 the newest; evidence: status flaky, or a "
                 "pass or fail on the same commit as one of the test's 50 previous results, from "
                 "another run, with the opposite outcome; results of runs where "
                 "over 80% of at least 10 tests failed are not evidence.")


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


def _status_is(status: str):
    return ~_RAN if status == "new" else and_(_RAN, test_cases.c.status == status)


_SELECT_CASES = select(
    *(column for column in test_cases.c if column.name != "status"),
    _STATUS.label("status"), _SCORE.label("flakiness_score"),
    _FLAKY_RUNS.label("flaky_runs"),
    _FAILED_RUNS.label("failed_runs"), test_case_windows.c.last_status,
    test_case_windows.c.last_flaky_at, test_case_windows.c.last_failed_at,
).select_from(_CASES)
_NEVER_RAN = (0, 0, None)  # total runs, average duration, last run


def _active(row, now: datetime) -> bool:
    """Quarantine lifts by itself at its expiry."""
    return bool(row.is_quarantined) and (row.quarantine_expires_at is None
                                         or row.quarantine_expires_at > now)


def case_json(row, figures: tuple[int, int, datetime | None],
              now: datetime | None = None) -> dict:
    """A case's JSON from its `_SELECT_CASES` row and the `figures` of its window (total
    runs, average duration, last run: `stats.slot_figures`)."""
    now = now or utcnow()
    quarantined = _active(row, now)
    total_runs, avg_duration, last_run_at = figures
    return {"id": row.id, "projectId": row.project_id, "title": row.title,
            "fullTitle": row.full_title, "filePath": row.file_path, "variant": row.variant,
            "status": row.status, "flakinessScore": row.flakiness_score,
            "totalRuns": total_runs, "flakyRuns": row.flaky_runs,
            "failedRuns": row.failed_runs,
            "failureRate": round(row.failed_runs / total_runs, 4) if total_runs else 0.0,
            "avgDuration": avg_duration, "lastStatus": row.last_status,
            "lastRunAt": iso(last_run_at), "lastFlakyAt": iso(row.last_flaky_at),
            "tags": row.tags or [], "isQuarantined": quarantined,
            "quarantine": {"reason": row.quarantine_reason, "owner": row.quarantine_owner,
                           "by": row.quarantined_by, "at": iso(row.quarantined_at),
                           "expiresAt": iso(row.quarantine_expires_at)} if quarantined else None,
            "createdAt": iso(row.created_at)}


def resolve_case(conn: Connection, principal: Principal, test_id: str, scope: str):
    """A test case by its id, or by the id of one of its results (`test_...`)."""
    if test_id.startswith("test_"):
        case_id = conn.execute(select(test_results.c.test_case_id)
                               .where(test_results.c.id == test_id)).scalar()
    else:
        case_id = test_id
    row = conn.execute(_SELECT_CASES.where(test_cases.c.id == case_id)).first() \
        if case_id else None
    return require_in_project(conn, principal, row, scope, "Test", test_id)


# Sorts by a stored column, in SQL; then those by figures read from the windows' slots, in
# Python over the matching cases (a project's windows are a few hundred bytes a case).
SQL_SORTS = {"flakiness": _SCORE.desc(),
             "title": test_cases.c.full_title.asc()}


def _slot_sort_key(sort: str):
    def failure_rate(case, figures):  # the cases that never ran last
        total = figures.get(case.id, _NEVER_RAN)[0]
        return (not total, -(case.failed_runs / total) if total else 0.0, case.id)

    def duration(case, figures):
        return (-figures.get(case.id, _NEVER_RAN)[1], case.id)

    return {"failure-rate": failure_rate, "duration": duration}[sort]


def list_cases(conn: Connection, principal: Principal, project_id: str | None,
               status: str | None, file: str | None, tag: str | None, search: str | None,
               sort: str, page) -> dict:
    project_id = runs.resolve_project(principal, project_id)
    require_project(conn, principal, project_id, "runs:read")
    where = [test_cases.c.project_id == project_id]
    if status:
        where.append(_status_is(status))
    if file:
        where.append(test_cases.c.file_path == file)
    if search:
        where.append(or_(icontains(test_cases.c.full_title, search),
                         icontains(test_cases.c.file_path, search)))
    if tag:
        # tags are a short JSON array of strings: match the quoted element
        where.append(cast(test_cases.c.tags, Text).like(f'%"{tag.replace(chr(34), "")}"%'))
    total = conn.execute(select(func.count()).select_from(_CASES).where(*where)).scalar_one()
    if sort in SQL_SORTS:
        rows = conn.execute(_SELECT_CASES.where(*where).order_by(
            SQL_SORTS[sort], test_cases.c.id).limit(page.limit).offset(page.offset)).all()
        figures = stats.slot_figures(conn, rows)
    else:  # (the figures of every matching case are read to sort them: the page's among them)
        matching = conn.execute(select(test_cases.c.id, *_WHERE_ITS_WINDOW_IS,
                                       _FAILED_RUNS.label("failed_runs"))
                                .select_from(_CASES).where(*where)).all()
        figures = stats.slot_figures(conn, matching)
        key = _slot_sort_key(sort)
        matching.sort(key=lambda case: key(case, figures))
        ids = [case.id for case in matching[page.offset:page.offset + page.limit]]
        found = {r.id: r for r in conn.execute(_SELECT_CASES.where(test_cases.c.id.in_(ids)))}
        rows = [found[case_id] for case_id in ids]
    now = utcnow()
    return page.page([case_json(r, figures.get(r.id, _NEVER_RAN), now) for r in rows], total)


def get_case(conn: Connection, principal: Principal, test_id: str) -> dict:
    row = resolve_case(conn, principal, test_id, "runs:read")
    body = case_json(row, stats.slot_figures(conn, [row]).get(row.id, _NEVER_RAN))
    # the window's results, each judged against the WINDOW results before it (as at arrival)
    rows = stats.window_results(conn, row.id, 2 * scoring.WINDOW)
    _window, flags = scoring.replay([
        scoring.Entry(r.status, r.commit_sha, r.run_id, stats.run_outage(r), r.duration)
        for r in rows])
    window = list(zip(rows, flags))[:scoring.WINDOW]
    body["evidence"] = [{"runId": r.run_id, "commitSha": r.commit_sha, "status": r.status,
                         "at": iso(r.created_at),
                         "kind": "retry" if r.status == "flaky" else "same-commit"}
                        for r, flag in window if flag]
    body["failedIn"] = [{"runId": r.run_id, "commitSha": r.commit_sha, "at": iso(r.created_at)}
                        for r, _flag in window if r.status == "failed"]
    body["scoreFormula"] = SCORE_FORMULA
    events = conn.execute(select(quarantine_events).where(
        quarantine_events.c.test_case_id == row.id).order_by(
        quarantine_events.c.created_at.desc(), quarantine_events.c.id.desc()).limit(20)).all()
    body["quarantineHistory"] = [
        {"action": e.action, "automatic": e.automatic, "reason": e.reason, "owner": e.owner,
         "by": e.actor_id, "expiresAt": iso(e.expires_at), "at": iso(e.created_at)}
        for e in events]
    return body


def history(conn: Connection, principal: Principal, test_id: str, branch: str | None) -> dict:
    """The last 20 results of the test's case across runs, newest first."""
    row = resolve_case(conn, principal, test_id, "runs:read")
    query = (select(test_results.c.run_id, test_results.c.id, test_results.c.status,
                    test_results.c.duration, runs_table.c.branch, runs_table.c.commit_sha,
                    test_results.c.created_at)
             .join(runs_table, runs_table.c.id == test_results.c.run_id)
             .where(test_results.c.test_case_id == row.id))
    if branch:
        query = query.where(runs_table.c.branch == branch)
    rows = conn.execute(query.order_by(test_results.c.created_at.desc(),
                                       test_results.c.id.desc()).limit(20)).all()
    return {"data": [{"runId": r.run_id, "testId": r.id, "status": r.status,
                      "duration": r.duration, "branch": r.branch, "commitSha": r.commit_sha,
                      "createdAt": iso(r.created_at)} for r in rows],
            "total": len(rows)}


def flakiness(conn: Connection, principal: Principal, project_id: str | None,
              min_score: float | None, quarantined: bool | None, page) -> dict:
    project_id = runs.resolve_project(principal, project_id)
    require_project(conn, principal, project_id, "runs:read")
    now = utcnow()

    def active(cases):  # quarantined now: it lifts by itself at its expiry
        return and_(cases.c.is_quarantined.is_(True),
                    or_(cases.c.quarantine_expires_at.is_(None),
                        cases.c.quarantine_expires_at > now))

    # The cases with evidence in their window, from the (project, flaky runs) index of the
    # narrow rows: a few hundred in a large project, whose every case is read otherwise.
    windows = test_case_windows
    evidence = [windows.c.project_id == project_id, windows.c.flaky_runs > 0]
    where = [test_cases.c.project_id == project_id]
    if min_score is None:  # the flaky and the quarantined
        listed = test_cases.alias("listed")
        where.append(test_cases.c.id.in_(
            select(windows.c.test_case_id).where(*evidence).union(
                select(listed.c.id).where(listed.c.project_id == project_id, active(listed)))))
    elif min_score > 0:  # a score above 0 takes evidence
        where.append(test_cases.c.id.in_(select(windows.c.test_case_id).where(
            *evidence, windows.c.flakiness_score >= min_score)))
    if quarantined is not None:
        where.append(active(test_cases) if quarantined else ~active(test_cases))
    total = conn.execute(select(func.count()).select_from(_CASES).where(*where)).scalar_one()
    rows = conn.execute(select(
        test_cases.c.id, test_cases.c.title, test_cases.c.full_title, test_cases.c.file_path,
        test_cases.c.variant, _SCORE.label("flakiness_score"), *_WHERE_ITS_WINDOW_IS,
        _FLAKY_RUNS.label("flaky_runs"), test_case_windows.c.last_flaky_at,
        test_cases.c.is_quarantined, test_cases.c.quarantine_expires_at,
        _STATUS.label("status"))
        .select_from(_CASES).where(*where).order_by(
        _SCORE.desc(), test_cases.c.id)
        .limit(page.limit).offset(page.offset)).all()
    threshold = conn.execute(select(projects.c.flakiness_threshold)
                             .where(projects.c.id == project_id)).scalar_one()
    flaky_count, average = conn.execute(select(
        func.count().filter(windows.c.flakiness_score >= threshold),
        func.avg(windows.c.flakiness_score)).where(*evidence)).one()
    quarantined_count = conn.execute(select(func.count()).select_from(test_cases).where(
        test_cases.c.project_id == project_id, active(test_cases))).scalar_one()
    figures = stats.slot_figures(conn, rows)
    body = page.page([{
        "testId": r.id, "testTitle": r.title, "fullTitle": r.full_title,
        "filePath": r.file_path, "variant": r.variant, "flakinessScore": r.flakiness_score,
        "totalRuns": figures.get(r.id, _NEVER_RAN)[0], "flakyRuns": r.flaky_runs,
        "lastFlakyAt": iso(r.last_flaky_at), "isQuarantined": _active(r, now),
        "status": r.status} for r in rows], total)
    body["summary"] = {"totalFlakyTests": flaky_count, "quarantinedTests": quarantined_count,
                       "averageFlakinessScore": round(float(average or 0), 4),
                       "threshold": threshold}
    return body


def quarantine(conn: Connection, principal: Principal, test_id: str, project_id: str | None,
               is_quarantined: bool, reason: str | None, owner: str | None,
               expires_at: datetime | None) -> dict:
    row = resolve_case(conn, principal, test_id, "flakiness:write")
    if project_id and project_id != row.project_id:
        raise not_found("Test", test_id)
    if expires_at is not None and expires_at.tzinfo is not None:
        expires_at = parse_iso(expires_at.isoformat())  # naive UTC, as stored
    if expires_at is not None and expires_at <= utcnow():
        raise validation_error("expiresAt", "in_the_past", "expiresAt must be in the future")
    stats.set_quarantine(conn, row.project_id, [row.id], is_quarantined,
                         actor_id=principal.user_id, reason=reason, owner=owner,
                         expires_at=expires_at)
    if is_quarantined:
        webhooks.emit_each(conn, row.project_id, "test.quarantined", stats.quarantined_payloads(
            conn, [row.id], reason=reason, owner=owner, automatic=False,
            expires_at=iso(expires_at)))
    updated = conn.execute(select(test_cases).where(test_cases.c.id == row.id)).one()
    return {"testId": row.id, "isQuarantined": _active(updated, utcnow()),
            "reason": updated.quarantine_reason, "owner": updated.quarantine_owner,
            "quarantinedBy": updated.quarantined_by,
            "expiresAt": iso(updated.quarantine_expires_at),
            "updatedAt": iso(updated.quarantined_at)}


def error_list(conn: Connection, principal: Principal, project_id: str | None,
               since: datetime | None, page) -> dict:
    project_id = runs.resolve_project(principal, project_id)
    require_project(conn, principal, project_id, "runs:read")
    since = since or utcnow() - timedelta(days=30)
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
        .limit(page.limit).offset(page.offset)).all()
    return page.page([{"fingerprint": r.fingerprint, "message": r.message,
                       "errorType": r.error_type, "occurrences": int(r.recent_occurrences),
                       "totalOccurrences": r.occurrences, "affectedTests": r.affected_tests,
                       "firstSeen": iso(r.first_seen), "lastSeen": iso(r.last_seen)}
                      for r in rows], total)


def trends(conn: Connection, principal: Principal, project_id: str, group_by: str,
           branch: str | None, days: int) -> dict:
    require_project(conn, principal, project_id, "runs:read")
    since = utcnow() - timedelta(days=days)
    where = [runs_table.c.project_id == project_id, runs_table.c.created_at >= since,
             runs_table.c.status.in_(["passed", "failed"])]
    if branch:
        where.append(runs_table.c.branch == branch)
    columns = [func.sum(runs_table.c.total_tests).label("total"),
               func.sum(runs_table.c.passed_tests).label("passed"),
               func.sum(runs_table.c.failed_tests).label("failed"),
               func.sum(runs_table.c.skipped_tests).label("skipped"),
               func.sum(runs_table.c.flaky_tests).label("flaky"),
               func.avg(runs_table.c.duration).label("duration"),
               func.count().label("runs")]
    if group_by == "run":
        rows = conn.execute(select(runs_table.c.id.label("key"), runs_table.c.created_at.label(
            "at"), *columns).where(*where).group_by(runs_table.c.id, runs_table.c.created_at)
            .order_by(runs_table.c.created_at).limit(500)).all()
    else:
        day = day_of(conn, runs_table.c.created_at)
        rows = conn.execute(select(day.label("key"), func.min(runs_table.c.created_at)
                                   .label("at"), *columns).where(*where).group_by(day)
                            .order_by(day)).all()
    points = [{"key": str(r.key), "at": iso(r.at), "runs": r.runs,
               "totalTests": int(r.total or 0), "passedTests": int(r.passed or 0),
               "failedTests": int(r.failed or 0), "skippedTests": int(r.skipped or 0),
               "flakyTests": int(r.flaky or 0),
               "passRate": runs.pass_rate(int(r.passed or 0), int(r.total or 0)),
               "duration": int(r.duration or 0)} for r in rows]
    slowest = stats.slowest_cases(conn, project_id, 10)
    titles = {r.id: r for r in conn.execute(
        select(test_cases.c.id, test_cases.c.full_title, test_cases.c.file_path)
        .where(test_cases.c.id.in_([case_id for case_id, _average in slowest])))}
    return {"projectId": project_id, "groupBy": group_by, "branch": branch, "days": days,
            "points": points,
            "slowestTests": [{"testId": case_id, "fullTitle": titles[case_id].full_title,
                              "filePath": titles[case_id].file_path, "avgDuration": average}
                             for case_id, average in slowest]}


def compare(conn: Connection, principal: Principal, run_id: str, base_id: str) -> dict:
    """What a pull request needs to know: `run_id` (head) against `base_id`."""
    head = runs.load_run(conn, principal, run_id, "runs:read")
    base = runs.load_run(conn, principal, base_id, "runs:read")
    if base.project_id != head.project_id:
        raise not_found("Run", base_id)

    def outcomes(rid: str) -> dict[str, tuple[str, str]]:
        """case -> (status, result id); a failed result wins over its same-case siblings.
        Only ids and statuses: titles are fetched for the listed tests alone."""
        found: dict[str, tuple[str, str]] = {}
        for case_id, status, result_id in results.run_outcomes(conn, rid):
            previous = found.get(case_id)
            if previous is None or status == "failed":
                found[case_id] = (status, result_id)
        return found

    now_, before = outcomes(head.id), outcomes(base.id)
    picked: dict[str, list[tuple]] = {"newFailures": [], "fixed": [], "stillFailing": [],
                                      "newTests": [], "removedTests": []}
    for case_id, entry in now_.items():
        old = before.get(case_id)
        if old is None:
            picked["newTests"].append((case_id, entry, None))
            if entry[0] == "failed":
                picked["newFailures"].append((case_id, entry, None))
        elif entry[0] == "failed":
            picked["stillFailing" if old[0] == "failed" else "newFailures"].append(
                (case_id, entry, old))
        elif old[0] == "failed" and entry[0] in ("passed", "flaky"):
            picked["fixed"].append((case_id, entry, old))
    for case_id, old in before.items():
        if case_id not in now_:
            picked["removedTests"].append((case_id, old, None))
    result_ids = sorted({entry[1] for values in picked.values() for _, entry, _ in values})
    titles: dict[str, tuple] = {}
    for start in range(0, len(result_ids), 30_000):  # one query below SQLite's variable cap
        titles.update((r.id, (r.full_title, r.file_path)) for r in conn.execute(
            select(test_results.c.id, test_results.c.full_title, test_results.c.file_path)
            .where(test_results.c.id.in_(result_ids[start:start + 30_000]))))
    groups = {name: [{"testCaseId": case_id, "testId": entry[1],
                      "fullTitle": titles[entry[1]][0], "filePath": titles[entry[1]][1],
                      "status": entry[0], "baseStatus": old[0] if old else None}
                     for case_id, entry, old in values]
              for name, values in picked.items()}
    for values in groups.values():
        values.sort(key=lambda i: (i["filePath"] or "", i["fullTitle"]))
    return {"runId": head.id, "baseRunId": base.id,
            "summary": {name: len(values) for name, values in groups.items()}, **groups}


def previous_run_on_branch(conn: Connection, run) -> str | None:
    return conn.execute(select(runs_table.c.id).where(
        runs_table.c.project_id == run.project_id, runs_table.c.branch == run.branch,
        runs_table.c.created_at < run.created_at, runs_table.c.status.in_(["passed", "failed"]))
        .order_by(runs_table.c.created_at.desc()).limit(1)).scalar()
