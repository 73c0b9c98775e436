"""A `report` artifact (a ZIP of Playwright's HTML report folder) browsed in place:
`/artifacts/<id>/report/<exp>.<sig>/<entry path>` serves one entry of the archive.

- The token (signing.report_token) is in the path so the report's relative links keep it; it
  covers the artifact, its project and the expiry, and needs no other credential, like every
  artifact link.
- Nothing is extracted to disk: the blob is opened as a seekable file (a local file, or ranged
  GETs on S3, blobs.open_seekable), the archive's directory is read with `zipfile` (the archive
  passed zipcheck when it was uploaded) and the one entry is streamed through its decompressor.
- An entry name is looked up exactly in the archive's directory after refusing absolute
  names, `..`/`.`/empty parts, backslashes and NUL: nothing outside the archive can be named,
  and a name that is not there is 404. A folder name serves its `index.html`.
- Content types come from an allowlist by extension; anything else is an
  `application/octet-stream` attachment. Every response has `nosniff` and a CSP whose
  `sandbox` keeps `allow-same-origin`: Playwright's report needs `localStorage`, and in an
  opaque origin it opens as a blank page (issue 21). That is safe only because entries are
  served by the user-content listener alone (user_content.py), an origin where no credential
  is ever read; the dashboard's listener redirects there. The CSP keeps the report's fetches,
  frames and form posts on that origin (never the dashboard's), and
  `Cross-Origin-Resource-Policy` keeps other sites from embedding its files.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Iterator

from sqlalchemy import Engine

from redline.server.artifacts import formats, signing
from redline.server.artifacts import repository as repo
from redline.server.artifacts.blobs import (
    CHUNK,
    BlobMissing,
    BlobStream,
    BlobUnavailable,
    blob_store,
)
from redline.server.http_errors import ApiError, not_found

REPORT_CSP = ("sandbox allow-scripts allow-same-origin allow-popups allow-downloads; "
              "default-src 'self' 'unsafe-inline' data: blob:; "
              "img-src 'self' data: blob:; media-src 'self' data: blob:; "
              "font-src 'self' data:; connect-src 'self' data: blob:; "
              "frame-src 'self' blob: data:; worker-src 'self' blob:; "
              "form-action 'none'; frame-ancestors 'self'; base-uri 'self'")

CONTENT_TYPES = {
    "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8", "json": "application/json",
    "txt": "text/plain; charset=utf-8", "md": "text/plain; charset=utf-8",
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
    "gif": "image/gif", "svg": "image/svg+xml", "ico": "image/x-icon",
    "woff2": "font/woff2", "woff": "font/woff", "ttf": "font/ttf",
    "webm": "video/webm", "mp4": "video/mp4", "zip": "application/zip",
}
MAX_ENTRY_PATH = 1024


def mint_report_path(settings, row, ttl: int | None = None) -> str:
    """The signed path of a report's index.html (on the user-content origin:
    user_content.report_url)."""
    from redline.server.artifacts.service import _now_unix

    ttl = min(ttl or settings.artifact_url_ttl_seconds, signing.MAX_TTL_SECONDS)
    token = signing.report_token(settings.resolved_secret_key, row.id, row.project_id,
                                 _now_unix() + ttl)
    return f"/artifacts/{row.id}/report/{token}/index.html"


def entry_name(path: str) -> str | None:
    """The archive entry a request path names, or None when it cannot be one."""
    if not path:
        return "index.html"
    if (len(path) > MAX_ENTRY_PATH or "\\" in path or "\0" in path or path.startswith("/")
            or ":" in path.split("/", 1)[0]):
        return None
    folder = path.endswith("/")
    parts = path.rstrip("/").split("/") if path.rstrip("/") else []
    if any(part in ("", ".", "..") for part in parts):
        return None
    name = "/".join(parts)
    return f"{name}/index.html" if folder and name else ("index.html" if folder else name)


def content_type_of(name: str) -> str | None:
    _, ext = posixpath.splitext(name)
    return CONTENT_TYPES.get(ext.lower().lstrip("."))


def _entry_chunks(archive: zipfile.ZipFile, handle, info: zipfile.ZipInfo) -> Iterator[bytes]:
    try:
        with archive.open(info) as entry:
            while chunk := entry.read(CHUNK):
                yield chunk
    finally:
        archive.close()
        handle.close()


def open_entry(engine: Engine, settings, artifact_id: str, token: str, path: str,
               method: str):
    """Check the token and open the entry: (status, headers, BlobStream | None)."""
    from redline.server.artifacts.service import _forbidden, _now_unix, unavailable

    row = None
    if len(artifact_id) <= 40:
        with engine.connect() as conn:
            row = repo.get_artifact(conn, artifact_id)
    if row is None:
        raise not_found("Artifact", artifact_id)
    now = _now_unix()
    try:
        exp = signing.verify_report_token(settings.resolved_secret_key, row.id, row.project_id,
                                          token, now)
    except signing.BadLink as exc:
        raise _forbidden(exc.reason) from None
    if method not in ("GET", "HEAD"):
        raise _forbidden("signature")
    if row.type != "report" or row.mime_type != "application/zip":
        raise not_found("Artifact", artifact_id)
    name = entry_name(path)
    missing = ApiError("NOT_FOUND", "No such file in this report", {"resource": "file"})
    if name is None:
        raise missing
    try:
        handle = blob_store(settings).open_seekable(row.storage_key)
    except BlobMissing:
        raise not_found("Artifact", artifact_id) from None
    except BlobUnavailable as exc:
        raise unavailable(exc) from exc
    try:
        archive = zipfile.ZipFile(handle)
        info = archive.NameToInfo.get(name)
        if info is None or info.is_dir():
            archive.close()
            raise missing
    except BaseException:
        handle.close()
        raise
    content_type = content_type_of(name)
    headers = {"Content-Type": content_type or "application/octet-stream",
               "Content-Length": str(info.file_size),
               "X-Content-Type-Options": "nosniff", "Content-Security-Policy": REPORT_CSP,
               "Referrer-Policy": "no-referrer", "Cross-Origin-Resource-Policy": "same-origin",
               "Cross-Origin-Opener-Policy": "same-origin",
               "Cache-Control": f"private, max-age={max(0, min(exp - now, 3600))}",
               "ETag": f'"{row.sha256}-{info.CRC:08x}"'}
    if content_type is None:
        headers["Content-Disposition"] = formats.content_disposition(
            "attachment", posixpath.basename(name))
    if method == "HEAD":
        archive.close()
        handle.close()
        return 200, headers, None
    return 200, headers, BlobStream(_entry_chunks(archive, handle, info), info.file_size)
