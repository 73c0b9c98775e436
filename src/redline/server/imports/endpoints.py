"""Importing report files: JUnit XML, Playwright JSON, CTRF JSON."""

from __future__ import annotations

import tempfile
from typing import Annotated, BinaryIO, Literal, cast

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile

from redline.server.auth import Principal
from redline.server.deps import get_db, rate_limited
from redline.server.http_errors import ApiError
from redline.server.imports import service
from redline.server.runs.schemas import ImportedRun
from redline.server.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/api", tags=["Runs"], responses=ERROR_RESPONSES)

Text = Annotated[str | None, Query(max_length=255)]

# Form fields (multipart) accepted beside the files, as the query parameters are.
FIELD_NAMES = {"projectId": "project_id", "runId": "run_id", "branch": "branch",
               "commitSha": "commit_sha", "commitMessage": "commit_message",
               "commitAuthor": "commit_author", "ciProvider": "ci_provider",
               "ciBuildId": "ci_build_id", "ciBuildUrl": "ci_build_url",
               "runTitle": "run_title", "source": "source", "browser": "browser", "os": "os",
               "hostname": "hostname", "shardCurrent": "shard_current",
               "shardTotal": "shard_total", "format": "format", "tags": "tags"}
FORMATS = ("auto", "junit", "playwright-json", "ctrf")
SOURCES = ("api", "cli", "portal", "mcp", "schedule", "github_action", "reporter")


def _field_error(field: str, message: str) -> ApiError:
    return ApiError("VALIDATION_ERROR", message, {"field": field, "reason": "invalid",
                                                  "errors": [{"field": field, "reason":
                                                              "invalid", "message": message}]})


def _clean_fields(raw: dict) -> dict:
    fields = {FIELD_NAMES[k]: v for k, v in raw.items() if k in FIELD_NAMES and v not in
              (None, "")}
    for name in ("shard_current", "shard_total"):
        if name in fields:
            try:
                fields[name] = int(fields[name])
                assert 1 <= fields[name] <= 10_000
            except (ValueError, AssertionError):
                raise _field_error(name, f"{name} must be a whole number from 1") from None
    if "tags" in fields and isinstance(fields["tags"], str):
        fields["tags"] = [t.strip() for t in fields["tags"].split(",") if t.strip()][:100]
    if fields.get("format", "auto") not in FORMATS:
        raise _field_error("format", f"format must be one of {', '.join(FORMATS)}")
    if fields.get("source", "api") not in SOURCES:
        raise _field_error("source", f"source must be one of {', '.join(SOURCES)}")
    for name, value in fields.items():
        if isinstance(value, str) and len(value) > (10_000 if name == "commit_message" else 2048):
            raise _field_error(name, f"{name} is too long")
    return fields


@router.post("/runs/import", response_model=ImportedRun, status_code=201,
             summary="Import report files into a run",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/xml": {"schema": {"type": "string", "format": "binary"}},
                 "application/json": {"schema": {"type": "string", "format": "binary"}},
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "array", "items": {"type": "string",
                                                         "format": "binary"}}}}}}}})
async def import_report(
    request: Request,
    caller: Principal = Depends(rate_limited("runs-write")),
    project_id: Annotated[str | None, Query(alias="projectId", max_length=40)] = None,
    run_id: Annotated[str | None, Query(alias="runId", max_length=40,
                                        description="Append to this open run")] = None,
    format: Literal["auto", "junit", "playwright-json", "ctrf"] = "auto",
    branch: Text = None, commit_sha: Annotated[str | None, Query(alias="commitSha",
                                                                 max_length=64)] = None,
    commit_message: Annotated[str | None, Query(alias="commitMessage", max_length=10_000)]
    = None, commit_author: Annotated[Text, Query(alias="commitAuthor")] = None,
    ci_provider: Annotated[Text, Query(alias="ciProvider")] = None,
    ci_build_id: Annotated[Text, Query(alias="ciBuildId")] = None,
    ci_build_url: Annotated[str | None, Query(alias="ciBuildUrl", max_length=2048)] = None,
    run_title: Annotated[Text, Query(alias="runTitle")] = None,
    source: Literal["api", "cli", "portal", "mcp", "schedule", "github_action", "reporter"]
    | None = None,
    shard_current: Annotated[int | None, Query(alias="shardCurrent", ge=1, le=10_000)] = None,
    shard_total: Annotated[int | None, Query(alias="shardTotal", ge=1, le=10_000)] = None,
    tags: Annotated[str | None, Query(max_length=2000, description="Comma-separated")] = None,
):
    """The report as the raw body (`Content-Type: application/xml` or `application/json`), or
    several as multipart parts named `file` (a Surefire reports folder is one run). The run's
    metadata comes as query parameters (or multipart form fields of the same names).

    Without `runId` a run is created and completed by the import (a shard's import completes
    its shard; the run completes with the last one). With `runId` the results are appended to
    that open run. A malformed file stores nothing and answers VALIDATION_ERROR with the
    line/column or JSON path."""
    raw = {"projectId": project_id, "runId": run_id, "format": format, "branch": branch,
           "commitSha": commit_sha, "commitMessage": commit_message,
           "commitAuthor": commit_author, "ciProvider": ci_provider,
           "ciBuildId": ci_build_id, "ciBuildUrl": ci_build_url, "runTitle": run_title,
           "source": source, "shardCurrent": shard_current, "shardTotal": shard_total,
           "tags": tags}
    content_type = request.headers.get("content-type", "")
    files = []
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=5000, max_fields=100, max_part_size=1024 * 1024)
        for key, value in form.multi_items():
            if key == "file" and isinstance(value, UploadFile):
                files.append((value.filename, value.file))
            elif key in FIELD_NAMES and isinstance(value, str) and raw.get(key) in (None, ""):
                raw[key] = value
    else:
        spool = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115 (read later)
        async for chunk in request.stream():
            spool.write(chunk)
        if spool.tell():
            spool.seek(0)
            files.append((request.headers.get("x-filename"), cast(BinaryIO, spool)))
    fields = _clean_fields(raw)
    report_format = fields.pop("format", "auto")
    # The body has arrived whole: only now does the write transaction begin (`get_db`).
    db = await get_db(request)
    return await anyio.to_thread.run_sync(
        service.import_reports, db, caller, files, report_format, fields,
        request.app.state.settings.max_result_text_bytes)
