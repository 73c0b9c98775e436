"""Artifacts: upload, list, read, delete, and the signed links that serve the files."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import parse_qsl

import anyio
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from redline.server.artifacts import schemas, service
from redline.server.artifacts.blobs import blob_store
from redline.server.artifacts.receive import UploadReceiver, boundary_of, check_type_field
from redline.server.artifacts.user_content import redirect_to_user_content
from redline.server.auth import Principal
from redline.server.deps import Db, get_db, rate_limited, unit_of_work
from redline.server.kit.pagination import Page
from redline.server.schemas import ERROR_RESPONSES, Deleted, ListPage

router = APIRouter(tags=["Artifacts"], responses=ERROR_RESPONSES)
Uploader = Annotated[Principal, Depends(rate_limited("uploads"))]
Reader = Annotated[Principal, Depends(rate_limited("runs-read"))]
Id = Annotated[str | None, Query(max_length=40)]
Type = Literal["screenshot", "video", "trace", "report"]

UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"},
        "type": {"type": "string", "enum": ["screenshot", "video", "trace", "report"]},
        "runId": {"type": "string", "maxLength": 40},
        "testId": {"type": "string", "maxLength": 40},
        "projectId": {"type": "string", "maxLength": 40}}}}}}}


@router.post("/api/upload", response_model=schemas.UploadedArtifact, status_code=201,
             summary="Upload an artifact", openapi_extra=UPLOAD_BODY)
async def upload(
    request: Request, caller: Uploader,
    type: Annotated[Type | None, Query(description="Or as a form field. Given here (or as "
                                       "a field before the file), the type's size cap stops "
                                       "the upload at its first byte over.")] = None,
    run_id: Annotated[str | None, Query(alias="runId", max_length=40)] = None,
    test_id: Annotated[str | None, Query(alias="testId", max_length=40)] = None,
    project_id: Annotated[str | None, Query(alias="projectId", max_length=40,
                                            description="Implied by a project API key.")]
    = None,
):
    """Multipart form: `file`, `type` (screenshot 5 MiB: PNG/JPEG/WebP/GIF; video 100 MiB:
    WebM/MP4/AVI/MOV; trace 50 MiB: ZIP; report 200 MiB: ZIP), `runId`, `testId` (optional),
    `projectId`. The fields may come as query parameters instead. The format is read from the
    file's bytes; a ZIP is inspected (no absolute or `..` paths, links, duplicates, bombs).
    Without `testId`, a file named like an attachment of one of the run's Playwright results
    is linked to that test. Answers a signed `url` valid until `expiresAt`."""
    query = {name: value for name, value in (("type", type), ("runId", run_id),
                                             ("testId", test_id), ("projectId", project_id))
             if value is not None}
    check_type_field(type)
    uow = unit_of_work(request)
    if run_id or test_id or project_id:  # tenancy before a single byte of the body
        await uow.read(lambda conn: service.authorize_upload(conn, caller, query, partial=True))
    boundary = boundary_of(request.headers.get("content-type", ""))
    settings = request.app.state.settings
    receiver = UploadReceiver(boundary, blob_store(settings).new_staging_file, query)
    received = await receiver.receive(request.stream())
    try:
        stored = await uow.read(lambda conn: service.check_received(conn, caller, received))
        await anyio.to_thread.run_sync(service.inspect_received, received, stored)
        await uow.write_apart(lambda conn: service.guard_blob(conn, stored))
        await anyio.to_thread.run_sync(service.put_blob, settings, received, stored)
        # The bytes are stored: only now does the write transaction begin (`get_db`).
        db = await get_db(request)
        return await anyio.to_thread.run_sync(service.record_upload, db, settings, caller,
                                              received, stored)
    finally:
        await anyio.to_thread.run_sync(receiver.discard)


@router.get("/api/artifacts", response_model=ListPage[schemas.Artifact],
            summary="List artifacts")
def list_artifacts(request: Request, db: Db, caller: Reader, page: Page,
                   run_id: Annotated[Id, Query(alias="runId")] = None,
                   test_id: Annotated[Id, Query(alias="testId")] = None,
                   type: schemas.ArtifactType | None = None):
    """The artifacts of a run (`runId`) or of a test (`testId`), oldest first, each with a
    fresh signed `url`. `type=log`: an executed run's whole log, kept by Redline when the
    run ended."""
    return service.list_artifacts(db, caller, request.app.state.settings, run_id, test_id, type, page)


@router.get("/api/artifacts/{artifact_id}", response_model=schemas.Artifact,
            summary="Get an artifact")
def get_artifact(
    artifact_id: str, request: Request, db: Db, caller: Reader,
    expires_in: Annotated[int | None, Query(alias="expiresIn", ge=1, le=604800,
                                            description="Seconds the link works (default "
                                            "REDLINE_ARTIFACT_URL_TTL_SECONDS, max 7 days)")]
    = None,
    download: Annotated[bool, Query(description="A link that always downloads")] = False,
):
    """Metadata and a fresh signed `url`."""
    return service.get_artifact(db, caller, request.app.state.settings, artifact_id,
                                expires_in, download)


@router.delete("/api/artifacts/{artifact_id}", response_model=Deleted,
               summary="Delete an artifact")
def delete_artifact(artifact_id: str, db: Db, caller: Uploader):
    """The record goes at once (its links stop working); the file is removed by a background
    job."""
    service.delete_artifact(db, caller, artifact_id)
    return {"success": True, "message": "Artifact deleted successfully"}


@router.api_route("/artifacts/{artifact_id}/report/{token}/{entry_path:path}",
                  include_in_schema=False,
                  methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def serve_report_entry(artifact_id: str, token: str, entry_path: str, request: Request):
    """A report runs with its own origin's storage, so it is never served on the dashboard's:
    a redirect to the same signed path on the user-content origin (user_content.py)."""
    return redirect_to_user_content(request, "An HTML report")


@router.api_route("/artifacts/{artifact_id}", include_in_schema=False,
                  methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def serve_artifact(artifact_id: str, request: Request):
    """A signed link: no credentials, only the signature (which covers the method, so any
    method but GET/HEAD is refused by it)."""
    try:
        pairs = parse_qsl(request.scope.get("query_string", b"").decode("latin-1"),
                          keep_blank_values=True, max_num_fields=10)
    except ValueError:
        pairs = [("", "")]
    served = service.open_link(request.app.state.engine, request.app.state.settings,
                               artifact_id, request.method, pairs, request.headers.get("range"))
    if served.stream is None:
        return Response(status_code=served.status, headers=served.headers)
    return StreamingResponse(served.stream.chunks, status_code=served.status,
                             headers=served.headers)
