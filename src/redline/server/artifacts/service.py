"""Artifacts: the rules of uploading, listing, linking, serving and deleting them.

An upload is received into a staging file (receive.py), its tenancy checked, its bytes checked
(format, size, and for ZIPs the archive itself), then moved into the blob store under a key the
server makes (`<project>/<run>/<artifact>`) and recorded. A blob is never left behind by a
failed request: before the blob is written, a delayed `artifacts.delete_blob` job is committed
as a guard; the transaction that records the artifact cancels it, so only a request that died
between the two leaves the guard to collect the blob.

Files are served only through signed links (signing.py) checked by `open_link`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import BinaryIO

from sqlalchemy import Connection, Engine

from redline.server.artifacts import formats, signing, zipcheck
from redline.server.artifacts import repository as repo
from redline.server.artifacts.blobs import BlobMissing, BlobStream, BlobUnavailable, blob_store
from redline.server.artifacts.receive import not_the_type, too_large
from redline.server.auth import Principal, require_in_project, require_project
from redline.server.db import WRITE
from redline.server.http_errors import ApiError, not_found, validation_error
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_id
from redline.server.results.service import load_result
from redline.server.runs.service import load_run, run_row
from redline.server.worker.outbox import enqueue

DELETE_BLOB = "artifacts.delete_blob"
GUARD_DELAY = timedelta(minutes=15)
CSP = "sandbox; default-src 'none'"


def unavailable(exc: Exception) -> ApiError:
    return ApiError("UNAVAILABLE", "The blob store cannot be reached right now",
                    {"dependency": "blob store"}, {"Retry-After": "2"})


# -- links ------------------------------------------------------------------------------------

def _now_unix() -> int:
    return int(utcnow().replace(tzinfo=UTC).timestamp())


def mint_url(settings, row, ttl: int | None = None,
             disposition: str | None = None) -> tuple[str, str]:
    """A fresh signed link to an artifact and its expiry (ISO 8601)."""
    ttl = ttl or settings.artifact_url_ttl_seconds
    if not 1 <= ttl <= signing.MAX_TTL_SECONDS:
        raise validation_error("expiresIn", "out_of_range", "expiresIn must be from 1 to "
                               f"{signing.MAX_TTL_SECONDS} seconds (7 days)")
    exp = _now_unix() + ttl
    content_type = formats.served_type(row.mime_type)
    disposition = formats.served_disposition(disposition or formats.default_disposition(
        row.mime_type), content_type)
    query = signing.signed_query(settings.resolved_secret_key, row.id, row.project_id, exp,
                                 disposition, content_type)
    base = (settings.artifact_public_url or settings.resolved_public_url).rstrip("/")
    expires_at = iso(datetime.fromtimestamp(exp, UTC).replace(tzinfo=None))
    assert expires_at is not None  # (a time gives a text)
    return f"{base}/artifacts/{row.id}?{query}", expires_at


def artifact_json(settings, row, ttl: int | None = None, disposition: str | None = None) -> dict:
    url, expires_at = mint_url(settings, row, ttl, disposition)
    return {"id": row.id, "projectId": row.project_id, "runId": row.run_id,
            "testId": row.test_id, "type": row.type, "fileName": row.file_name,
            "fileSize": row.file_size, "mimeType": row.mime_type, "sha256": row.sha256,
            "testStatus": row.test_status, "url": url, "expiresAt": expires_at,
            "createdAt": iso(row.created_at)}


# -- reading and deleting ---------------------------------------------------------------------

def load_artifact(conn: Connection, principal: Principal, artifact_id: str, scope: str):
    row = repo.get_artifact(conn, artifact_id)
    return require_in_project(conn, principal, row, scope, "Artifact", artifact_id)


def get_artifact(conn: Connection, principal: Principal, settings, artifact_id: str,
                 ttl: int | None, download: bool) -> dict:
    row = load_artifact(conn, principal, artifact_id, "artifacts:read")
    return artifact_json(settings, row, ttl, "attachment" if download else None)


def list_artifacts(conn: Connection, principal: Principal, settings, run_id: str | None,
                   test_id: str | None, artifact_type: str | None, page) -> dict:
    if run_id is None and test_id is None:
        raise validation_error("runId", "required", "Give runId or testId")
    project_id = None
    if run_id is not None:
        project_id = load_run(conn, principal, run_id, "artifacts:read").project_id
    if test_id is not None:
        test = load_result(conn, principal, test_id, "artifacts:read")
        project_id = project_id or test.project_id
    assert project_id is not None  # (from the run or the test)
    rows, total = repo.list_artifacts(conn, project_id, run_id, test_id, artifact_type,
                                      page.limit, page.offset)
    return page.page([artifact_json(settings, row) for row in rows], total)


def delete_artifact(conn: Connection, principal: Principal, artifact_id: str) -> None:
    """The row goes now; the blob goes through the outbox, in the same transaction."""
    row = load_artifact(conn, principal, artifact_id, "artifacts:write")
    repo.delete_artifact(conn, artifact_id)
    enqueue_blob_deletes(conn, [row.storage_key])


def enqueue_blob_deletes(conn: Connection, storage_keys: list[str]) -> None:
    """Queue the removal of blobs whose rows the caller's transaction deletes (retention)."""
    from redline.server.worker.outbox import enqueue

    for start in range(0, len(storage_keys), 1000):
        batch = storage_keys[start:start + 1000]
        if len(batch) == 1:
            enqueue(conn, DELETE_BLOB, {"storageKey": batch[0]})
        elif batch:
            enqueue(conn, DELETE_BLOB, {"storageKeys": batch})


# -- uploading --------------------------------------------------------------------------------

@dataclass
class Target:
    project_id: str
    run_id: str
    test_id: str | None
    test_status: str | None


def authorize_upload(conn: Connection, principal: Principal, fields: dict[str, str],
                     partial: bool = False) -> Target | None:
    """Check the ids of an upload against the caller's tenancy: another tenant's project,
    run or test is NOT_FOUND, exactly like a missing one. `partial`: with what is known so far
    (the query, before the body is read). Without `projectId`, a key's project or else the
    run's is meant."""
    project_id = fields.get("projectId") or None
    run_id = fields.get("runId") or None
    test_id = fields.get("testId") or None
    if project_id is None and principal.kind == "key":
        project_id = principal.project_id
    if project_id is not None:
        require_project(conn, principal, project_id, "artifacts:write")
    if run_id is None:
        if partial:
            return None
        raise validation_error("runId", "required", "Field 'runId' is required")
    run = load_run(conn, principal, run_id, "artifacts:write")
    if project_id is not None and run.project_id != project_id:
        raise not_found("Run", run_id)
    test_status = None
    if test_id is not None:
        test = load_result(conn, principal, test_id, "artifacts:write")
        if test.run_id != run_id:
            raise not_found("Test", test_id)
        test_status = test.status
    return Target(run.project_id, run_id, test_id, test_status)


def check_upload(received) -> tuple[str, str]:
    """The fields and bytes of a received upload, before any tenancy is looked at:
    (type, format)."""
    fields = received.fields
    if not received.has_file:
        raise validation_error("file", "required", "Field 'file' is required")
    artifact_type = fields.get("type")
    if not artifact_type:
        raise validation_error("type", "required", "Field 'type' is required")
    if artifact_type not in formats.TYPES:
        raise validation_error("type", "invalid_choice", "Field 'type' must be one of "
                               + ", ".join(formats.TYPES))
    for name in ("runId", "testId", "projectId"):
        if len(fields.get(name) or "") > 40:
            raise validation_error(name, "too_long", f"Field '{name}' is too long")
    kind = formats.TYPES[artifact_type]
    if received.fmt not in kind.formats:
        raise not_the_type(artifact_type, received.fmt)
    if received.size > kind.cap:
        raise too_large(artifact_type, kind.cap)
    return artifact_type, received.fmt


def inspect_archive(path, size: int, artifact_type: str) -> None:
    try:
        with open(path, "rb") as handle:
            zipcheck.inspect_zip(handle, size, zipcheck.LIMITS[artifact_type])
    except zipcheck.UnsafeArchive as exc:
        error = validation_error("file", "unsafe_archive", f"The {artifact_type} archive is "
                                 f"refused: {exc}")
        error.details.update({"problem": exc.problem, "entry": exc.entry})
        raise error from None


@dataclass
class StoredUpload:
    """An upload whose bytes are checked, on their way to the blob store, not yet recorded."""

    artifact_id: str
    artifact_type: str
    fmt: str
    storage_key: str
    guard_job: str | None = None  # deletes the blob unless the record cancels it


def check_received(conn: Connection, principal: Principal, received) -> StoredUpload:
    """An upload's fields, type and tenancy, once its body has arrived (a short read: no
    transaction is held while the blob is written)."""
    artifact_type, fmt = check_upload(received)
    checked = authorize_upload(conn, principal, received.fields)
    assert checked is not None  # (None only when partial)
    artifact_id = new_id("artifact")
    return StoredUpload(artifact_id, artifact_type, fmt,
                        f"{checked.project_id}/{checked.run_id}/{artifact_id}")


def inspect_received(received, stored: StoredUpload) -> None:
    """A ZIP's entries (traces, reports), before it is stored."""
    if stored.fmt == "zip":
        inspect_archive(received.path, received.size, stored.artifact_type)


def guard_blob(conn: Connection, stored: StoredUpload) -> None:
    """The delayed job that deletes the blob unless a row comes to point at it: committed on
    its own before the blob is written (the request's transaction may yet fail)."""
    stored.guard_job = enqueue(conn, DELETE_BLOB, {"storageKey": stored.storage_key},
                               run_after=utcnow() + GUARD_DELAY)


def put_blob(settings, received, stored: StoredUpload) -> None:
    try:
        blob_store(settings).put_file(stored.storage_key, received.path)
    except BlobUnavailable as exc:
        raise unavailable(exc) from exc
    received.path = None  # consumed by the store


def record_upload(conn: Connection, settings, principal: Principal, received,
                  stored: StoredUpload) -> dict:
    """The artifact's row, in the request's transaction, which also cancels the guard."""
    target = authorize_upload(conn, principal, received.fields)  # again, in the transaction
    assert target is not None  # (None only when partial)
    display = formats.display_name(received.raw_name, stored.artifact_type, stored.fmt)
    test_id, test_status = target.test_id, target.test_status
    if test_id is None:
        owner = attachment_owner(conn, target.run_id, received.raw_name)
        if owner is not None:
            test_id, test_status = owner
    values = {"id": stored.artifact_id, "project_id": target.project_id,
              "run_id": target.run_id, "test_id": test_id, "type": stored.artifact_type,
              "file_name": display, "storage_key": stored.storage_key,
              "file_size": received.size, "mime_type": formats.MIME_TYPES[stored.fmt],
              "sha256": received.sha256, "test_status": test_status, "created_at": utcnow()}
    repo.insert_artifact(conn, values)
    if stored.guard_job is not None:
        repo.drop_job(conn, stored.guard_job)
    url, expires_at = mint_url(settings, SimpleNamespace(**values))
    return {"id": stored.artifact_id, "type": stored.artifact_type, "fileName": display,
            "fileSize": received.size, "mimeType": values["mime_type"], "url": url,
            "expiresAt": expires_at, "createdAt": iso(values["created_at"]),
            "projectId": target.project_id, "runId": target.run_id, "testId": test_id,
            "testStatus": test_status}


def attachment_owner(conn: Connection, run_id: str, raw_name: str | None):
    """(test id, status) of the one result of the run whose reporter recorded an attachment
    with this file name (Playwright JSON keeps them in `extra.attachments`), or None.

    Playwright's base names repeat across tests (`test-failed-1.png`), so a name sent with
    its folders (`sample-fails-chromium/test-failed-1.png`) picks the attachment whose path
    shares the most trailing parts; a tie links nothing."""
    parts = formats.path_parts(raw_name)
    if not parts:
        return None
    base = parts[-1]
    best, owners = 0, {}
    for row in repo.results_with_attachment(conn, run_id, base):
        extra = row.extra if isinstance(row.extra, dict) else {}
        for attachment in extra.get("attachments") or []:
            path = attachment.get("path") if isinstance(attachment, dict) else None
            theirs = formats.path_parts(path) if isinstance(path, str) else []
            if not theirs or theirs[-1] != base:
                continue
            score = 0
            for mine, other in zip(reversed(parts), reversed(theirs)):
                if mine != other:
                    break
                score += 1
            if score > best:
                best, owners = score, {row.id: row.status}
            elif score == best:
                owners[row.id] = row.status
    if len(owners) == 1:
        return next(iter(owners.items()))
    return None


# -- files Redline makes -----------------------------------------------------------------------

def keep_generated(engine: Engine, settings, project_id: str, run_id: str, artifact_type: str,
                   file_name: str, mime_type: str, data: BinaryIO,
                   test_status: str | None = None) -> str | None:
    """Keep a file Redline itself made for a run (an executed run's whole log, type `log`)
    as one of the run's artifacts, under the same rules as an upload: stored under a key the
    server makes, guarded so that no blob outlives a failed write, deleted with its run (or
    after its project's days for `test_status`). Once per run and type: a second call keeps
    nothing. `data` is read in chunks (never whole in memory). Returns the artifact's id, or
    None (kept already, or the run is gone)."""
    with engine.connect() as conn:
        if run_row(conn, run_id) is None or \
                repo.list_artifacts(conn, project_id, run_id, None, artifact_type, 1, 0)[1]:
            return None
    stored = StoredUpload(new_id("artifact"), artifact_type, "text", "")
    stored.storage_key = f"{project_id}/{run_id}/{stored.artifact_id}"
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        guard_blob(conn, stored)
    size, sha256 = blob_store(settings).put(stored.storage_key, data)
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        if run_row(conn, run_id) is None:
            return None  # (deleted meanwhile: the guard removes the blob)
        repo.insert_artifact(conn, {
            "id": stored.artifact_id, "project_id": project_id, "run_id": run_id,
            "test_id": None, "type": artifact_type, "file_name": file_name,
            "storage_key": stored.storage_key, "file_size": size, "mime_type": mime_type,
            "sha256": sha256, "test_status": test_status, "created_at": utcnow()})
        if stored.guard_job is not None:
            repo.drop_job(conn, stored.guard_job)
    return stored.artifact_id


# -- serving a link ---------------------------------------------------------------------------

@dataclass
class Served:
    status: int
    headers: dict[str, str]
    stream: BlobStream | None = None


def _forbidden(reason: str) -> ApiError:
    messages = {"expired": "This artifact link has expired; ask the API for a fresh one",
                "signature": "This artifact link is not valid (altered or not Redline's)",
                "parameters": "This artifact link is not valid (its parameters were changed)"}
    return ApiError("AUTH_FORBIDDEN", messages[reason],
                    {"reason": f"link_{reason}", "required": ["signed-link"], "granted": []})


def open_link(engine: Engine, settings, artifact_id: str, method: str,
              pairs: list[tuple[str, str]], range_header: str | None) -> Served:
    """Check a signed link and open what it points to (or a redirect to S3)."""
    try:
        params = signing.parse_params(pairs)
    except signing.BadLink as exc:
        raise _forbidden(exc.reason) from None
    row = None
    if len(artifact_id) <= 40:
        with engine.connect() as conn:
            row = repo.get_artifact(conn, artifact_id)
    if row is None:
        raise not_found("Artifact", artifact_id)
    content_type = formats.served_type(row.mime_type)
    now = _now_unix()
    try:
        signing.verify(settings.resolved_secret_key, "GET" if method == "HEAD" else method,
                       row.id, row.project_id, params, content_type, now)
    except signing.BadLink as exc:
        raise _forbidden(exc.reason) from None
    disposition = formats.content_disposition(
        formats.served_disposition(params.disposition, content_type), row.file_name)
    headers = {"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer",
               "Cache-Control": f"private, max-age={min(params.exp - now, 3600)}"}
    store = blob_store(settings)
    if settings.s3_redirect:
        location = store.presign(row.storage_key, min(60, max(1, params.exp - now)),
                                 content_type, disposition)
        if location is not None:
            return Served(302, {"Location": location, "Cache-Control": "no-store",
                                "Referrer-Policy": "no-referrer",
                                "X-Content-Type-Options": "nosniff"})
    headers.update({"Content-Type": content_type, "Accept-Ranges": "bytes",
                    "ETag": f'"{row.sha256}"'})
    byte_range = parse_range(range_header, row.file_size)
    status = 200
    start = end = None
    length = row.file_size
    if byte_range is not None:
        start, end = byte_range
        length = end - start + 1
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{row.file_size}"
    try:
        stream = store.open(row.storage_key, start, end) if method != "HEAD" else None
    except BlobMissing:
        raise not_found("Artifact", artifact_id) from None
    except BlobUnavailable as exc:
        raise unavailable(exc) from exc
    headers["Content-Length"] = str(stream.length if stream is not None else length)
    return Served(status, headers, stream)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` range within the file, or None (serve it whole): several ranges, a
    malformed or an unsatisfiable one are answered with the whole file, as RFC 9110 allows."""
    if not header or size <= 0:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return None
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        return None
    return start, min(end, size - 1)

