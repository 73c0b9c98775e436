"""Reads over test intelligence: test cases, history, flakiness and quarantine, error groups,
trends and run comparison. Everything reads the per-case statistics and aggregates kept by
`stats.apply_run`, or one indexed query; nothing scans a project's history."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection

from redline.run_display import run_label_of
from redline.server.auth import Principal, require_in_project, require_project
from redline.server.http_errors import not_found, validation_error
from redline.server.intelligence import repository as repo
from redline.server.intelligence import scoring, stats
from redline.server.kit.clock import iso, parse_iso, utcnow
from redline.server.results import service as results
from redline.server.runs import service as runs
from redline.server.webhooks import service as webhooks

SCORE_FORMULA = ("flakinessScore = sum(w_i * evidence_i) / sum(w_i) over the newest 50 results "
                 "that ran, w_i = 0.5 ** (i / 10), i = 0 the newest; evidence: status flaky, or a "
                 "pass or fail on the same commit as one of the test's 50 previous results, from "
                 "another run, with the opposite outcome; results of runs where "
                 "over 80% of at least 10 tests failed are not evidence.")


_NEVER_RAN = (0, 0, None)  # total runs, average duration, last run


def _active(row, now: datetime) -> bool:
    """Quarantine lifts by itself at its expiry."""
    return bool(row.is_quarantined) and (row.quarantine_expires_at is None
                                         or row.quarantine_expires_at > now)


def case_json(row, figures: tuple[int, int, datetime | None],
              now: datetime | None = None) -> dict:
    """A case's JSON from its `repo.case_row` row and the `figures` of its window (total
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
    case_id = repo.case_of_result(conn, test_id) if test_id.startswith("test_") else test_id
    row = repo.case_row(conn, case_id) if case_id else None
    return require_in_project(conn, principal, row, scope, "Test", test_id)


# Sorts by a stored column, in SQL (`repo.CASE_SQL_SORTS`); then those by figures read from
# the windows' slots, in Python over the matching cases (a project's windows are a few hundred
# bytes a case).
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
    cases = repo.CaseFilter(project_id, status, file, tag, search)
    total = repo.count_cases(conn, cases)
    if sort in repo.CASE_SQL_SORTS:
        rows = repo.page_of_cases(conn, cases, sort, page.limit, page.offset)
        figures = stats.slot_figures(conn, rows)
    else:  # (the figures of every matching case are read to sort them: the page's among them)
        matching = repo.cases_to_sort(conn, cases)
        figures = stats.slot_figures(conn, matching)
        key = _slot_sort_key(sort)
        matching.sort(key=lambda case: key(case, figures))
        ids = [case.id for case in matching[page.offset:page.offset + page.limit]]
        found = repo.case_rows(conn, ids)
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
    events = repo.quarantine_history(conn, row.id, 20)
    body["quarantineHistory"] = [
        {"action": e.action, "automatic": e.automatic, "reason": e.reason, "owner": e.owner,
         "by": e.actor_id, "expiresAt": iso(e.expires_at), "at": iso(e.created_at)}
        for e in events]
    return body


def history(conn: Connection, principal: Principal, test_id: str, branch: str | None) -> dict:
    """The last 20 results of the test's case across runs, newest first."""
    row = resolve_case(conn, principal, test_id, "runs:read")
    rows = repo.case_history(conn, row.id, branch, 20)
    return {"data": [{"runId": r.run_id, "testId": r.id, "status": r.status,
                      "duration": r.duration, "branch": r.branch, "commitSha": r.commit_sha,
                      "createdAt": iso(r.created_at)} for r in rows],
            "total": len(rows)}


def flakiness(conn: Connection, principal: Principal, project_id: str | None,
              min_score: float | None, quarantined: bool | None, page) -> dict:
    project_id = runs.resolve_project(principal, project_id)
    require_project(conn, principal, project_id, "runs:read")
    now = utcnow()
    found = repo.flakiness_page(conn, project_id, min_score, quarantined, now, page.limit,
                                page.offset)
    rows = found.rows
    figures = stats.slot_figures(conn, rows)
    body = page.page([{
        "testId": r.id, "testTitle": r.title, "fullTitle": r.full_title,
        "filePath": r.file_path, "variant": r.variant, "flakinessScore": r.flakiness_score,
        "totalRuns": figures.get(r.id, _NEVER_RAN)[0], "flakyRuns": r.flaky_runs,
        "lastFlakyAt": iso(r.last_flaky_at), "lastStatus": r.last_status,
        "isQuarantined": _active(r, now), "status": r.status} for r in rows], found.total)
    body["summary"] = {"totalFlakyTests": found.flaky_count,
                       "quarantinedTests": found.quarantined_count,
                       "averageFlakinessScore": round(float(found.average_score or 0), 4),
                       "threshold": found.threshold}
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
    updated = repo.plain_case(conn, row.id)
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
    rows, total = repo.error_groups_page(conn, project_id, since, page.limit, page.offset)
    return page.page([{"fingerprint": r.fingerprint, "message": r.message,
                       "errorType": r.error_type, "occurrences": int(r.recent_occurrences),
                       "totalOccurrences": r.occurrences, "affectedTests": r.affected_tests,
                       "firstSeen": iso(r.first_seen), "lastSeen": iso(r.last_seen)}
                      for r in rows], total)


def trends(conn: Connection, principal: Principal, project_id: str, group_by: str,
           branch: str | None, days: int) -> dict:
    require_project(conn, principal, project_id, "runs:read")
    since = utcnow() - timedelta(days=days)
    rows = repo.run_trend_points(conn, project_id, since, branch, group_by)
    points = [{"key": str(r.key), "at": iso(r.at), "runs": r.runs,
               "totalTests": int(r.total or 0), "passedTests": int(r.passed or 0),
               "failedTests": int(r.failed or 0), "skippedTests": int(r.skipped or 0),
               "flakyTests": int(r.flaky or 0),
               "passRate": runs.pass_rate(int(r.passed or 0), int(r.total or 0)),
               "duration": int(r.duration or 0)} for r in rows]
    slowest = stats.slowest_cases(conn, project_id, 10)
    titles = repo.case_titles(conn, [case_id for case_id, _average in slowest])
    return {"projectId": project_id, "groupBy": group_by, "branch": branch, "days": days,
            "points": points,
            "slowestTests": [{"testId": case_id, "fullTitle": titles[case_id].full_title,
                              "filePath": titles[case_id].file_path, "avgDuration": average}
                             for case_id, average in slowest]}


#: the branches taken for a project's default branch, in this order: a run of a new branch
#: (none of its own before it) is compared with the newest earlier run of the first of them
#: that has one
DEFAULT_BRANCHES = ("main", "master")
COMPARE_GROUPS = ("newFailures", "fixed", "stillFailing", "newTests", "removedTests")


def run_titles(conn: Connection, run_ids: set[str]) -> dict[str, str]:
    """run id -> its name for people (`run_label`), for runs a page lists beside a case whose
    access the caller has been checked for (the case's own results' runs)."""
    return {r.id: run_label_of(r) for r in repo.run_names(conn, sorted(run_ids))}


def comparison_base(conn: Connection, run) -> tuple[str, str] | None:
    """The run `run` is compared with, when none is named: (run id, why).
    Why is `previousOnBranch` (the completed run of its branch before it) or
    `defaultBranch` (its branch has none: the newest completed run of the default branch
    created before it). None when neither exists, or for a run without a branch."""
    if not run.branch:
        return None
    previous = repo.previous_run_on_branch(conn, run)
    if previous is not None:
        return previous, "previousOnBranch"
    if run.branch in DEFAULT_BRANCHES:
        return None  # the default branch's first run: nothing older to compare with
    for branch in DEFAULT_BRANCHES:
        latest = repo.latest_run_on_branch(conn, run.project_id, branch, run.created_at)
        if latest is not None:
            return latest, "defaultBranch"
    return None


def compare(conn: Connection, principal: Principal, run_id: str, base_id: str | None) -> dict:
    """What a pull request needs to know: `run_id` (head) against `base_id`, or, when no
    base is named, against `comparison_base` (`baseReason` says which; with none, the
    answer names no base and lists nothing)."""
    return compare_run(conn, principal, runs.load_run(conn, principal, run_id, "runs:read"),
                       base_id)


def compare_run(conn: Connection, principal: Principal, head, base_id: str | None) -> dict:
    """`compare` of a run the caller has loaded (`runs.load_run`: its access checked)."""
    if base_id is None:
        chosen = comparison_base(conn, head)
        if chosen is None:
            return {"runId": head.id, "baseRunId": None, "baseBranch": None,
                    "baseReason": "none", "baseTitle": None,
                    "summary": {name: 0 for name in COMPARE_GROUPS},
                    **{name: [] for name in COMPARE_GROUPS}}
        base_id, reason = chosen
        base = runs.run_row(conn, base_id)  # a run of head's project: access is head's
    else:
        reason = "requested"
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
    picked: dict[str, list[tuple]] = {name: [] for name in COMPARE_GROUPS}
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
    titles = repo.result_titles(conn, result_ids)
    groups = {name: [{"testCaseId": case_id, "testId": entry[1],
                      "fullTitle": titles[entry[1]][0], "filePath": titles[entry[1]][1],
                      "status": entry[0], "baseStatus": old[0] if old else None}
                     for case_id, entry, old in values]
              for name, values in picked.items()}
    for values in groups.values():
        values.sort(key=lambda i: (i["filePath"] or "", i["fullTitle"]))
    return {"runId": head.id, "baseRunId": base.id, "baseBranch": base.branch,
            "baseReason": reason, "baseTitle": run_label_of(base),
            "summary": {name: len(values) for name, values in groups.items()}, **groups}


def previous_run_on_branch(conn: Connection, run) -> str | None:
    return repo.previous_run_on_branch(conn, run)
