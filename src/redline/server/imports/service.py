"""Importing whole report files into a run, in one transaction.

A malformed file stores nothing: the parser raises `ReportParseError` (possibly half-way,
since results are streamed), which becomes a VALIDATION_ERROR pointing at the line/column or
JSON path, and the request's transaction is rolled back with everything already inserted.
"""

from __future__ import annotations

from typing import BinaryIO

from sqlalchemy import Connection

from redline.server.auth import Principal, require_project
from redline.server.http_errors import ApiError
from redline.server.imports.parsers import (
    MAX_FIELD_BYTES,
    ParsedReport,
    ReportParseError,
    combine_results,
    parse_report,
)
from redline.server.results import service as results
from redline.server.runs import service as runs

# Run metadata a report file may state, and the run column each goes to.
REPORT_METADATA = {"playwrightVersion": "playwright_version", "workers": "workers",
                   "shardCurrent": "shard_current", "shardTotal": "shard_total"}


def _parse_error(exc: ReportParseError, filename: str | None) -> ApiError:
    where = {k: v for k, v in {"line": exc.line, "column": exc.column, "path": exc.path}.items()
             if v is not None}
    location = ", ".join(f"{k} {v}" for k, v in where.items())
    name = f"{filename}: " if filename else ""
    message = f"{name}{exc.message}" + (f" ({location})" if location else "")
    return ApiError("VALIDATION_ERROR", f"The report cannot be imported: {message}",
                    {"field": "file", "reason": "malformed_report", "file": filename, **where,
                     "errors": [{"field": "file", "reason": "malformed_report",
                                 "message": message}]})


def import_reports(conn: Connection, principal: Principal, files: list[tuple[str | None,
                   BinaryIO]], report_format: str, fields: dict,
                   max_text_bytes: int = MAX_FIELD_BYTES) -> dict:
    """Import report files (one run: several files are e.g. Surefire's one-per-class XML).
    Each result's output and error text is kept up to `max_text_bytes`."""
    run_id = fields.pop("run_id", None)
    project_id = fields.pop("project_id", None)
    # Who may write where comes first, so another tenant's ids are NOT_FOUND whatever else.
    created_here = run_id is None
    run = None
    if run_id is not None:
        run = results._open_run(conn, principal, run_id, project_id)
    else:
        project_id = runs.resolve_project(principal, project_id)
        require_project(conn, principal, project_id, "runs:write")
    if not files:
        raise ApiError("VALIDATION_ERROR", "Send a report: the raw body, or multipart parts "
                       "named 'file'", {"field": "file", "reason": "required",
                                        "errors": [{"field": "file", "reason": "required",
                                                    "message": "no report"}]})
    reports: list[ParsedReport] = []
    for filename, stream in files:
        try:
            reports.append(parse_report(stream, report_format, filename, max_text_bytes))
        except ReportParseError as exc:
            raise _parse_error(exc, filename) from None
    metadata = reports[0].metadata
    for name, column in REPORT_METADATA.items():
        if fields.get(column) is None and metadata.get(name) is not None:
            fields[column] = metadata[name]
    if run is None and fields.get("shard_total") and fields.get("ci_build_id"):
        run = runs.find_open_shard_run(conn, project_id, fields["ci_build_id"])
        if run is not None and (run.status in runs.TERMINAL or not run.shard_total):
            run = None
    # A run made here holds only this import's results: they are handed to its statistics
    # as they are stored (`stats.apply_run`), not read back.
    outcomes: list | None = None
    if run is None:
        fields["status"] = "running"
        run = runs.run_row(conn, runs.new_run(conn, project_id, dict(fields)))
        outcomes = []

    parsed = (reports[0].results if len(reports) == 1 else combine_results(reports))
    current = None
    try:
        ids, summed = results.ingest(conn, run.id, run.project_id, parsed, outcomes)
    except ReportParseError as exc:
        current = exc
    if current is not None:
        raise _parse_error(current, current.filename or (files[0][0] if len(files) == 1
                                                         else None))

    reported = metadata.get("duration")
    duration = int(reported) if isinstance(reported, (int, float)) else summed
    if run.shard_total:  # shards run side by side: the run lasts as long as its longest
        runs.set_duration(conn, run.id, max(run.duration, duration))
        duration = 0
    runs.refresh_counts(conn, run.id, added_duration=duration)
    if created_here and runs.complete_shard(conn, run.id, fields.get("shard_current")):
        runs.finish(conn, run.id, outcomes=outcomes)
    body = runs.run_json(runs.run_row(conn, run.id))
    body["imported"] = {"format": reports[0].format, "files": len(files), "tests": len(ids)}
    return body


def import_into_run(conn: Connection, run_id: str, files: list[tuple[str | None, BinaryIO]],
                    report_format: str = "auto") -> int:
    """Import report files into an open run whose access was checked by the caller (an
    executed run's reports, sent by the runner that holds its lease). Returns the number of
    results stored; the run is completed by the caller."""
    run = runs.run_row(conn, run_id)
    reports: list[ParsedReport] = []
    for filename, stream in files:
        try:
            reports.append(parse_report(stream, report_format, filename))
        except ReportParseError as exc:
            raise _parse_error(exc, filename) from None
    parsed = reports[0].results if len(reports) == 1 else combine_results(reports)
    try:
        ids, summed = results.ingest(conn, run.id, run.project_id, parsed)
    except ReportParseError as exc:
        raise _parse_error(exc, exc.filename or (files[0][0] if len(files) == 1
                                                 else None)) from None
    reported = reports[0].metadata.get("duration")
    duration = int(reported) if isinstance(reported, (int, float)) else summed
    runs.refresh_counts(conn, run.id, added_duration=duration)
    return len(ids)
