"""The dashboard's own static files (CSS, JS), served from memory with a content hash as the
ETag. Only files in the `static/` folder, by exact name: no path ever reaches the disk."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

from redline.server.http_errors import ApiError

FOLDER = Path(__file__).parent / "static"
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}


@lru_cache(maxsize=1)
def _files() -> dict[str, tuple[bytes, str, str]]:
    found = {}
    for path in FOLDER.iterdir():
        if path.is_file() and path.suffix in TYPES:
            body = path.read_bytes()
            found[path.name] = (body, TYPES[path.suffix],
                                '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return found


def version() -> str:
    """A short hash of all static files, appended to their URLs so browsers may cache them."""
    digest = hashlib.sha256()
    for name, (_, _, etag) in sorted(_files().items()):
        digest.update(f"{name}{etag}".encode())
    return digest.hexdigest()[:10]


def serve_static(name: str, request: Request) -> Response:
    entry = _files().get(name)
    if entry is None:
        raise ApiError("NOT_FOUND", f"No static file '{name}'", {"resource": "static"})
    body, media_type, etag = entry
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400",
               "Content-Security-Policy": "default-src 'none'"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
