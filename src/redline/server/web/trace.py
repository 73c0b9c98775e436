"""Playwright's own trace viewer, served by Redline from the installed `playwright` package
(same origin, nothing fetched from the internet), so a failed test's trace opens from the
dashboard: `/trace/index.html?trace=<the artifact's signed link>`.

The viewer is a web app with a service worker that reads the trace ZIP and renders the
recorded DOM snapshots in frames, so its pages get a CSP of their own: scripts only from this
origin, inline styles allowed (snapshots carry the tested page's styles), frames and workers
from this origin, no form posts, never framed by another site.
"""

from __future__ import annotations

import mimetypes
from functools import lru_cache
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

from redline.server.http_errors import ApiError

TRACE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
             "frame-src 'self' blob:; worker-src 'self'; frame-ancestors 'self'; "
             "form-action 'none'; base-uri 'self'")


@lru_cache(maxsize=1)
def viewer_folder() -> Path | None:
    """The trace viewer's built files in the installed Playwright package, if there is one."""
    try:
        import playwright
    except ImportError:
        return None
    folder = Path(playwright.__file__).parent / "driver" / "package" / "lib" / "vite" / \
        "traceViewer"
    return folder if (folder / "index.html").is_file() else None


def available() -> bool:
    return viewer_folder() is not None


def serve_viewer_file(path: str, request: Request) -> Response:
    folder = viewer_folder()
    if folder is None:
        raise ApiError("UNSUPPORTED", "The trace viewer needs the `playwright` package on the "
                       "server", {"feature": "trace-viewer"})
    path = path or "index.html"
    target = (folder / path).resolve()
    if folder.resolve() not in target.parents or not target.is_file():
        # the viewer's service worker answers its own virtual paths (snapshots, sha1/...)
        raise ApiError("NOT_FOUND", f"No trace viewer file '{path}'", {"resource": "file"})
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".js":
        media_type = "text/javascript"
    headers = {"Content-Security-Policy": TRACE_CSP, "Cache-Control": "public, max-age=3600",
               "X-Content-Type-Options": "nosniff"}
    if target.name == "sw.bundle.js":
        headers["Service-Worker-Allowed"] = "/trace/"
    return Response(target.read_bytes(), media_type=media_type, headers=headers)
