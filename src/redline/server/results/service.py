"""Test results: the one ingestion path every way of reporting ends in, and their reads.

`ingest` takes any iterable of `ParsedResult` (from a report parser, or converted from the
REST payload) and stores them in chunks, set-based: one lookup of the chunk's test cases by
their natural key, one bulk insert of the missing cases, of the new suites and of the results.
It never issues a query per result. The caller's transaction holds it all: an import that fails
half-way stores nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from itertools import islice

from sqlalchemy import Connection

from redline.server.auth import Principal, require_in_project, require_project
from redline.server.http_errors import ApiError, not_found, validation_error
from redline.server.imports.parsers.model import ParsedError, ParsedResult
from redline.server.intelligence import stats
from redline.server.intelligence.fingerprint import fingerprint
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_id, new_ids
from redline.server.results import repository as repo
from redline.server.runs import service as runs

CHUNK = 5000  # results per round of lookups and inserts (issue 21: fewer round trips)


def normalise_path(path: str | None) -> str | None:
    """Relative, '/' separators, no leading './' (so a case has one identity on any OS)."""
    if not path:
        return None
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/") or None


def case_identity(file_path: str | None, full_title: str, variant: str | None) -> str:
    key = f"{file_path or ''}\x00{full_title}\x00{variant or ''}"
    return hashlib.sha1(key.encode()).hexdigest()


class SuiteIndex:
    """The run's describe-block tree, built as results arrive: (parent, title, file) -> id."""

    def __init__(self, conn: Connection, run_id: str, project_id: str):
        self.run_id, self.project_id = run_id, project_id
        self.ids = {(row.parent_key, row.title, row.file_path): row.id
                    for row in repo.run_suites(conn, run_id)}
        self.pending: list[dict] = []

    def suite_for(self, suite_path: list[str], file_path: str | None) -> str | None:
        parent = ""
        now = None
        for title in suite_path:
            key = (parent, title[:1000], file_path or "")
            suite_id = self.ids.get(key)
            if suite_id is None:
                now = now or utcnow()
                suite_id = new_id("suite")
                self.ids[key] = suite_id
                self.pending.append({"id": suite_id, "run_id": self.run_id,
                                     "project_id": self.project_id, "title": key[1],
                                     "file_path": key[2], "parent_suite_id": parent or None,
                                     "parent_key": parent, "created_at": now})
            parent = suite_id
        return parent or None

    def flush(self, conn: Connection) -> None:
        repo.insert_suites(conn, self.pending)
        self.pending = []


_ERROR_FIELDS = tuple(field.name for field in dataclasses.fields(ParsedError))


def _error_json(error) -> dict | None:
    if error is None:
        return None
    if isinstance(error, ParsedError):  # (not dataclasses.asdict: slow, and copies deeply)
        data = {name: getattr(error, name) for name in _ERROR_FIELDS}
    else:
        data = error
    return {k: v for k, v in data.items() if v is not None}


def ingest(conn: Connection, run_id: str, project_id: str, results: Iterable[ParsedResult],
           outcomes: list[stats.RunOutcome] | None = None) -> tuple[list[str], int]:
    """Store results into a run. Returns (the new result ids, their summed duration). Each
    new case gets the slot of its window (`stats.place_cases`). With `outcomes`, each result
    is added to it as `stats.apply_run` takes a run's results (the import that makes a run
    and completes it hands them over: no read back)."""
    writer = repo.ingestion_writer(conn)
    suites = SuiteIndex(conn, run_id, project_id)
    created: list[str] = []
    duration = 0
    iterator = iter(results)
    encode = repo.encode_json
    while chunk := list(islice(iterator, CHUNK)):
        now = utcnow()
        stamp = writer.driver_time(now)
        identities = []
        for result in chunk:
            result.file_path = normalise_path(result.file_path)
            identities.append(case_identity(result.file_path, result.full_title, result.variant))
        wanted = list(dict.fromkeys(identities))
        known = writer.known_cases(project_id, wanted)
        missing = [i for i in wanted if i not in known]
        if missing:
            first_of: dict[str, ParsedResult] = {}
            for identity, result in zip(identities, chunk):
                first_of.setdefault(identity, result)
            places = stats.place_cases(conn, project_id,
                                       [first_of[identity].file_path for identity in missing])
            new_cases = []
            for case_id, identity, (bucket_id, slot) in zip(new_ids("tc", len(missing)),
                                                           missing, places):
                first = first_of[identity]
                new_cases.append(repo.NewCase.of(
                    id=case_id, project_id=project_id, identity=identity,
                    file_path=first.file_path, full_title=first.full_title, title=first.title,
                    variant=first.variant, tags=encode(first.tags), created_at=stamp,
                    bucket_id=bucket_id, slot=slot,
                    status="stable"))  # (it reads as new until it runs: tables.py)
            if writer.insert_cases(new_cases):  # all ours: known as built, not read back
                known.update((case.identity, repo.KnownCase(
                    case.id, case.tags, case.bucket_id, case.slot, case.identity))
                    for case in new_cases)
            else:  # a concurrent import made some of them: theirs are the ones to use
                known.update(writer.known_cases(project_id, missing))
        rows = []
        newest: dict[str, ParsedResult] = {}  # case id -> its newest result here
        result_ids = new_ids("test", len(chunk))
        for result_id, identity, result in zip(result_ids, identities, chunk):
            case = known[identity]
            newest[case.id] = result
            suite_id = suites.suite_for(result.suite_path, result.file_path)
            result_duration = max(0, int(result.duration_ms))
            extra = result.extra
            if result.attachments:
                extra = {**extra, "attachments": result.attachments}
            error = _error_json(result.error)
            status = result.status
            rows.append(repo.ResultRow.of(
                id=result_id, run_id=run_id, project_id=project_id, test_case_id=case.id,
                suite_id=suite_id, title=result.title, full_title=result.full_title,
                file_path=result.file_path, line_number=result.line_number,
                variant=result.variant, status=status, duration=result_duration,
                retries=result.retries, attempt=result.attempt, is_flaky=status == "flaky",
                tags=encode(result.tags), annotations=encode(result.annotations),
                error=encode(error), steps=encode(result.steps), stdout=result.stdout or "",
                stderr=result.stderr or "", extra=encode(extra),
                error_fingerprint=(fingerprint(error) if status in ("failed", "flaky")
                                   else None),
                created_at=stamp))
            if outcomes is not None:
                outcomes.append(stats.RunOutcome(case.id, case.bucket_id, case.slot, status,
                                                 result_duration, stamp))
            duration += result_duration
        created += result_ids
        suites.flush(conn)  # before the results that point at them
        writer.insert_results(rows)
        # a case takes the tags of its newest result (skipped ones too)
        stored = {case.id: case.tags for case in known.values()}
        retagged = []
        for case_id, result in newest.items():
            encoded = encode(result.tags)
            if repo.tags_differ(stored[case_id], result.tags, encoded):
                retagged.append((encoded, case_id))
        writer.update_case_tags(retagged)
    return created, duration


def run_outcomes(conn: Connection, run_id: str) -> list[repo.ResultOutcome]:
    """(case id, status, result id) of every result of a run (a comparison of runs)."""
    return repo.run_outcomes(conn, run_id)


def failed_tests(conn: Connection, project_id: str, run_id: str,
                 limit: int) -> tuple[list[dict], int]:
    """The first `limit` failed results of a run, in run order, as {testId, fullTitle,
    filePath, variant}, and how many failed in all (a webhook payload names them)."""
    rows, total = repo.list_results(conn, project_id, run_id, "failed", None, limit, 0)
    return [{"testId": r.id, "fullTitle": r.full_title, "filePath": r.file_path,
             "variant": r.variant} for r in rows], total


def from_payload(fields) -> ParsedResult:
    """A REST result payload as the parsers' `ParsedResult`, so both share `ingest`."""
    status = "flaky" if fields.is_flaky and fields.status == "passed" else fields.status
    return ParsedResult(
        title=fields.title, full_title=fields.full_title, file_path=fields.file_path,
        line_number=fields.line_number, suite_path=list(fields.suite_path),
        variant=fields.variant, status=status, duration_ms=fields.duration,
        attempt=fields.attempt, retries=fields.retries,
        error=fields.error.model_dump(exclude_none=True, by_alias=True) if fields.error else None,
        steps=[s.model_dump(exclude_none=True, by_alias=True) for s in fields.steps],
        stdout=fields.stdout, stderr=fields.stderr, tags=list(fields.tags),
        annotations=[a.model_dump(exclude_none=True, by_alias=True)
                     for a in fields.annotations])


def _open_run(conn: Connection, principal: Principal, run_id: str, project_id: str | None):
    run = runs.load_run(conn, principal, run_id, "runs:write", for_update=True)
    if project_id and project_id != run.project_id:
        raise not_found("Run", run_id)
    if run.status in runs.TERMINAL:
        raise ApiError("CONFLICT", f"Run '{run_id}' is {run.status}: results go into a running "
                       "run", {"reason": "run_completed", "status": run.status})
    return run


def create_result(conn: Connection, principal: Principal, payload) -> dict:
    run = _open_run(conn, principal, payload.run_id, payload.project_id)
    [result_id], _ = ingest(conn, run.id, run.project_id, [from_payload(payload)])
    runs.refresh_counts(conn, run.id)
    row = repo.get_result(conn, result_id)
    return {"id": row.id, "runId": row.run_id, "projectId": row.project_id,
            "testCaseId": row.test_case_id, "title": row.title, "fullTitle": row.full_title,
            "status": row.status, "duration": row.duration, "isFlaky": row.is_flaky,
            "createdAt": iso(row.created_at)}


def create_batch(conn: Connection, principal: Principal, run_id: str, items) -> dict:
    """Up to 1,000 results in one transaction: all stored, or none."""
    run = _open_run(conn, principal, run_id, None)
    ids, _ = ingest(conn, run.id, run.project_id, (from_payload(item) for item in items))
    runs.refresh_counts(conn, run.id)
    return {"runId": run.id, "created": len(ids), "ids": ids}


def load_result(conn: Connection, principal: Principal, result_id: str, scope: str):
    row = repo.get_result(conn, result_id)
    return require_in_project(conn, principal, row, scope, "Test", result_id)


def result_json(row) -> dict:
    return {"id": row.id, "runId": row.run_id, "projectId": row.project_id,
            "testCaseId": row.test_case_id, "suiteId": row.suite_id, "title": row.title,
            "fullTitle": row.full_title, "filePath": row.file_path,
            "lineNumber": row.line_number, "variant": row.variant, "status": row.status,
            "duration": row.duration, "retries": row.retries, "attempt": row.attempt,
            "isFlaky": row.is_flaky, "tags": row.tags or [], "annotations": row.annotations or [],
            "error": row.error, "stdout": row.stdout or "", "stderr": row.stderr or "",
            "extra": row.extra or {}, "createdAt": iso(row.created_at)}


def get_result(conn: Connection, principal: Principal, result_id: str) -> dict:
    return result_json(load_result(conn, principal, result_id, "runs:read"))


def get_steps(conn: Connection, principal: Principal, result_id: str) -> dict:
    return {"data": load_result(conn, principal, result_id, "runs:read").steps or []}


def list_results(conn: Connection, principal: Principal, project_id: str | None,
                 run_id: str | None, status: str | None, search: str | None, page) -> dict:
    project_id = runs.resolve_project(principal, project_id)
    require_project(conn, principal, project_id, "runs:read")
    if run_id:
        run = runs.load_run(conn, principal, run_id, "runs:read")
        if run.project_id != project_id:
            raise not_found("Run", run_id)
    rows, total = repo.list_results(conn, project_id, run_id, status, search, page.limit,
                                    page.offset)
    return page.page([{"id": r.id, "runId": r.run_id, "testCaseId": r.test_case_id,
                       "title": r.title, "fullTitle": r.full_title, "filePath": r.file_path,
                       "variant": r.variant, "status": r.status, "duration": r.duration,
                       "isFlaky": r.is_flaky, "error": r.error, "createdAt": iso(r.created_at)}
                      for r in rows], total)


def suite_json(row) -> dict:
    return {"id": row.id, "runId": row.run_id, "projectId": row.project_id, "title": row.title,
            "filePath": row.file_path or None, "parentSuiteId": row.parent_suite_id,
            "createdAt": iso(row.created_at)}


def upsert_suite(conn: Connection, principal: Principal, payload) -> tuple[dict, bool]:
    """Create a suite, or return the one with the same title, file and parent in the run."""
    run = runs.load_run(conn, principal, payload.run_id, "runs:write")
    if payload.project_id and payload.project_id != run.project_id:
        raise not_found("Run", payload.run_id)
    parent = ""
    if payload.parent_suite_id:
        parent_row = repo.get_suite(conn, payload.parent_suite_id)
        if parent_row is None or parent_row.run_id != run.id:
            raise validation_error("parentSuiteId", "not_in_run",
                                   "parentSuiteId must be a suite of the same run")
        parent = parent_row.id
    index = SuiteIndex(conn, run.id, run.project_id)
    key = (parent, payload.title, normalise_path(payload.file_path) or "")
    existing = index.ids.get(key)
    if existing is not None:
        return suite_json(repo.get_suite(conn, existing)), False
    now = utcnow()
    suite_id = new_id("suite")
    repo.insert_suites(conn, [{"id": suite_id, "run_id": run.id, "project_id": run.project_id,
                               "title": key[1], "file_path": key[2],
                               "parent_suite_id": parent or None, "parent_key": parent,
                               "created_at": now}])
    return suite_json(repo.get_suite(conn, suite_id)), True


def suite_tree(conn: Connection, principal: Principal, run_id: str,
               project_id: str | None) -> dict:
    run = runs.load_run(conn, principal, run_id, "runs:read")
    if project_id and project_id != run.project_id:
        raise not_found("Run", run_id)
    nodes = {row.id: {"id": row.id, "title": row.title, "filePath": row.file_path or None,
                      "parentSuiteId": row.parent_suite_id, "children": []}
             for row in repo.run_suites(conn, run.id)}
    roots: list[dict] = []
    for node in nodes.values():
        parent = nodes.get(node["parentSuiteId"]) if node["parentSuiteId"] else None
        (parent["children"] if parent else roots).append(node)
    return {"data": roots}
