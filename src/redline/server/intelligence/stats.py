"""Keeping per-case statistics, verdicts and error groups up to date when a run completes.

`apply_run` is called once per run, in the transaction that completes it, and is idempotent
(`runs.stats_applied`). It reads the run's results once, the affected cases once (in chunks),
and writes back with one executemany per table: reads of flakiness, history and errors then
never scan history. `recompute_case` rebuilds one case's statistics from its stored results;
a test proves both give the same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Connection, func, select, update

from redline.server.intelligence import scoring
from redline.server.kit.clock import iso, parse_iso, utcnow
from redline.server.kit.ids import new_id
from redline.server.tables import (error_group_cases, error_groups, projects, quarantine_events,
                                   runs, test_cases, test_results)

CHUNK = 500


def _run_outage(run) -> bool:
    return scoring.is_outage(run.failed_tests, run.total_tests - run.skipped_tests)


def _entry(result, run, outage: bool) -> scoring.Entry:
    return scoring.Entry(result.status, run.commit_sha, run.id, iso(result.created_at), outage,
                         int(result.duration))


def quarantined_at(conn: Connection, case_ids: list[str], moment: datetime) -> set[str]:
    """The cases that were quarantined at `moment` (from the quarantine history)."""
    quarantined: set[str] = set()
    for start in range(0, len(case_ids), CHUNK):
        chunk = case_ids[start:start + CHUNK]
        last: dict[str, tuple] = {}
        for row in conn.execute(
                select(quarantine_events.c.test_case_id, quarantine_events.c.action,
                       quarantine_events.c.expires_at, quarantine_events.c.created_at,
                       quarantine_events.c.id)
                .where(quarantine_events.c.test_case_id.in_(chunk),
                       quarantine_events.c.created_at <= moment)
                .order_by(quarantine_events.c.created_at, quarantine_events.c.id)):
            last[row.test_case_id] = (row.action, row.expires_at)
        quarantined |= {case for case, (action, expires) in last.items()
                        if action == "quarantine" and (expires is None or expires > moment)}
    return quarantined


def apply_run(conn: Connection, run_id: str) -> None:
    run = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if run is None or run.stats_applied:
        return
    threshold, auto = conn.execute(
        select(projects.c.flakiness_threshold, projects.c.auto_quarantine_enabled)
        .where(projects.c.id == run.project_id)).one()
    outage = _run_outage(run)
    by_case: dict[str, list] = defaultdict(list)
    failed_cases: list[str] = []
    # Only small columns for every result (a run may hold 100k); the errors of failures are
    # read separately, for them alone.
    for result in conn.execute(
            select(test_results.c.test_case_id, test_results.c.status,
                   test_results.c.duration, test_results.c.created_at, test_results.c.tags)
            .where(test_results.c.run_id == run_id).order_by(test_results.c.id)):
        by_case[result.test_case_id].append(result)
        if result.status == "failed":
            failed_cases.append(result.test_case_id)
    failures = conn.execute(
        select(test_results.c.test_case_id, test_results.c.created_at, test_results.c.error,
               test_results.c.error_fingerprint)
        .where(test_results.c.run_id == run_id,
               test_results.c.error_fingerprint.is_not(None))).all()

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

    updates = []
    now = utcnow()
    auto_candidates = []
    became_flaky: list[dict] = []
    case_ids = list(by_case)
    for start in range(0, len(case_ids), CHUNK):
        chunk = case_ids[start:start + CHUNK]
        for case in conn.execute(
                select(test_cases.c.id, test_cases.c.recent, test_cases.c.is_quarantined,
                       test_cases.c.quarantine_manual, test_cases.c.quarantine_expires_at,
                       test_cases.c.status, test_cases.c.full_title, test_cases.c.file_path)
                .where(test_cases.c.id.in_(chunk))):
            results = by_case[case.id]
            new = [_entry(r, run, outage) for r in reversed(results) if r.status != "skipped"]
            old = [scoring.Entry.from_json(e) for e in (case.recent or [])]
            window = scoring.merge(new, old)
            stats = scoring.case_stats(window, threshold)
            updates.append(_stats_row(case.id, window, stats, results[-1].tags))
            del by_case[case.id]  # done with it: memory stays bounded by the chunk
            if stats.status == "flaky" and case.status != "flaky":
                became_flaky.append({"testCaseId": case.id, "fullTitle": case.full_title,
                                     "filePath": case.file_path,
                                     "flakinessScore": stats.flakiness_score,
                                     "runId": run.id})
            active = case.is_quarantined and (case.quarantine_expires_at is None
                                              or case.quarantine_expires_at > now)
            if (auto and not active and not case.quarantine_manual
                    and stats.total_runs >= 5 and stats.flaky_runs
                    and stats.flakiness_score >= threshold):
                auto_candidates.append(case.id)
        _write_stats(conn, updates)  # per chunk: never all windows of a big run at once
        updates = []
    for case_id in auto_candidates:
        set_quarantine(conn, run.project_id, case_id, True, actor_id=None, reason="auto",
                       owner=None, expires_at=None, automatic=True)
    _record_error_groups(conn, run.project_id, failures)
    conn.execute(update(runs).where(runs.c.id == run_id).values(
        verdict=verdict, quarantined_failures=quarantined_failures, stats_applied=True))
    _emit_run_events(conn, run, verdict, quarantined_failures, became_flaky)


def _emit_run_events(conn: Connection, run, verdict: str, quarantined_failures: int,
                     became_flaky: list[dict]) -> None:
    from redline.server.webhooks.service import emit

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
    for case in became_flaky:
        emit(conn, run.project_id, "test.flaky", case)


def _stats_row(case_id: str, window, stats: scoring.CaseStats, tags) -> dict:
    return {"case_id": case_id, "recent": [e.to_json() for e in window],
            "status": stats.status, "flakiness_score": stats.flakiness_score,
            "total_runs": stats.total_runs, "flaky_runs": stats.flaky_runs,
            "failed_runs": stats.failed_runs, "avg_duration": stats.avg_duration,
            "last_status": stats.last_status,
            "last_run_at": parse_iso(stats.last_run_at) if stats.last_run_at else None,
            "last_flaky_at": parse_iso(stats.last_flaky_at) if stats.last_flaky_at else None,
            "last_failed_at": parse_iso(stats.last_failed_at) if stats.last_failed_at else None,
            "tags": tags or []}


def _write_stats(conn: Connection, rows: list[dict]) -> None:
    """One executemany at the driver level (a run touches thousands of cases)."""
    if not rows:
        return
    from redline.server.results.repository import driver_datetime, encode_json

    columns = [c for c in rows[0] if c != "case_id"]
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    statement = (f"UPDATE test_cases SET {', '.join(f'{c} = {mark}' for c in columns)} "
                 f"WHERE id = {mark}")

    def value(column, item):
        if column in ("recent", "tags"):
            return encode_json(item)
        if isinstance(item, datetime):
            return driver_datetime(conn, item)
        return item

    conn.exec_driver_sql(statement, [tuple(value(c, row[c]) for c in columns) + (row["case_id"],)
                                     for row in rows])


def recompute_case(conn: Connection, case_id: str) -> dict:
    """A case's statistics rebuilt from its stored results (the check on the incremental
    path; also what a retention pass uses after deleting old results)."""
    threshold = conn.execute(
        select(projects.c.flakiness_threshold).join(
            test_cases, test_cases.c.project_id == projects.c.id)
        .where(test_cases.c.id == case_id)).scalar_one()
    rows = conn.execute(
        select(test_results.c.status, test_results.c.duration, test_results.c.created_at,
               test_results.c.tags, runs.c.id.label("run_id"), runs.c.commit_sha,
               runs.c.failed_tests, runs.c.total_tests, runs.c.skipped_tests)
        .join(runs, runs.c.id == test_results.c.run_id)
        .where(test_results.c.test_case_id == case_id, test_results.c.status != "skipped",
               runs.c.stats_applied.is_(True))
        .order_by(test_results.c.created_at.desc(), test_results.c.id.desc())
        .limit(scoring.WINDOW)).all()
    window = [scoring.Entry(r.status, r.commit_sha, r.run_id, iso(r.created_at),
                            scoring.is_outage(r.failed_tests, r.total_tests - r.skipped_tests),
                            int(r.duration)) for r in rows]
    stats = scoring.case_stats(window, threshold)
    return _stats_row(case_id, window, stats, rows[0].tags if rows else [])


def set_quarantine(conn: Connection, project_id: str, case_id: str, quarantined: bool, *,
                   actor_id: str | None, reason: str | None, owner: str | None,
                   expires_at: datetime | None, automatic: bool = False) -> None:
    """Quarantine or release a case, recording who, when and why in its history."""
    now = utcnow()
    conn.execute(quarantine_events.insert().values(
        id=new_id("qe"),
        project_id=project_id, test_case_id=case_id,
        action="quarantine" if quarantined else "unquarantine", automatic=automatic,
        reason=reason, owner=owner, expires_at=expires_at if quarantined else None,
        actor_id=actor_id, created_at=now))
    values = {"is_quarantined": quarantined, "quarantined_by": actor_id,
              "quarantined_at": now, "quarantine_reason": reason if quarantined else None,
              "quarantine_owner": owner if quarantined else None,
              "quarantine_expires_at": expires_at if quarantined else None}
    if not automatic:
        values["quarantine_manual"] = True
    conn.execute(update(test_cases).where(test_cases.c.id == case_id).values(**values))
    if quarantined:
        from redline.server.webhooks.service import emit

        case = conn.execute(select(test_cases.c.full_title, test_cases.c.file_path)
                            .where(test_cases.c.id == case_id)).one()
        emit(conn, project_id, "test.quarantined", {
            "testCaseId": case_id, "fullTitle": case.full_title, "filePath": case.file_path,
            "reason": reason, "owner": owner, "automatic": automatic,
            "expiresAt": iso(expires_at)})


def _record_error_groups(conn: Connection, project_id: str, failures: list) -> None:
    if not failures:
        return
    groups: dict[str, dict] = {}
    per_case: dict[tuple[str, str], dict] = {}
    for result in failures:
        fp = result.error_fingerprint
        error = result.error or {}
        group = groups.setdefault(fp, {
            "project_id": project_id, "fingerprint": fp,
            "message": (error.get("message") or error.get("stack") or "")[:2000],
            "error_type": (error.get("type") or None), "first_seen": result.created_at,
            "last_seen": result.created_at, "occurrences": 0})
        group["occurrences"] += 1
        group["last_seen"] = max(group["last_seen"], result.created_at)
        case = per_case.setdefault((fp, result.test_case_id), {
            "project_id": project_id, "fingerprint": fp, "test_case_id": result.test_case_id,
            "first_seen": result.created_at, "last_seen": result.created_at,
            "occurrences": 0})
        case["occurrences"] += 1
    _upsert(conn, error_groups, ["project_id", "fingerprint"], list(groups.values()))
    _upsert(conn, error_group_cases, ["project_id", "fingerprint", "test_case_id"],
            list(per_case.values()))


def _upsert(conn: Connection, table, keys: list[str], rows: list[dict]) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    statement = statement.on_conflict_do_update(index_elements=keys, set_={
        "last_seen": func.max(table.c.last_seen, statement.excluded.last_seen)
        if conn.dialect.name == "sqlite" else func.greatest(table.c.last_seen,
                                                             statement.excluded.last_seen),
        "occurrences": table.c.occurrences + statement.excluded.occurrences})
    conn.execute(statement, rows)

