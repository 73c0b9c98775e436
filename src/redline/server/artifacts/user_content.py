"""The user-content origin: HTML reports and Playwright's trace viewer, on an origin that is
not the dashboard's (issue 21).

A Playwright HTML report needs `localStorage`, so it must run with `allow-same-origin`; the
trace viewer has carried XSS from crafted traces. Either, run on the dashboard's origin, could
act as the signed-in user. So they are served by this separate app, which `redline serve`
runs on a second listener (its port + 1 unless REDLINE_USER_CONTENT_PORT says otherwise), and
which users reach at REDLINE_USER_CONTENT_URL (best another host name behind the proxy):

- It serves three things and nothing else: one entry of a report ZIP under its signed path
  (`/artifacts/<id>/report/<exp>.<sig>/<entry>`), a signed artifact link
  (`/artifacts/<id>?exp=&disposition=&sig=`, what the trace viewer loads a trace from), and the
  trace viewer's own files (`/trace/...`). Every other path is 404: there is no API, no
  dashboard and no sign-in here.
- It reads no credential: no session cookie, no token, no API key. Browsers send the
  dashboard's cookie to another port of the same host (cookies ignore ports), and it is simply
  never looked at; the signed, expiring, per-artifact path is the only thing that opens
  anything.
- Reports get a CSP that keeps their scripts on this origin: `connect-src`, `frame-src` and
  `form-action` exclude the dashboard, so a report can neither read it nor post to it (and
  the dashboard's own CSRF check refuses a cross-origin post anyway).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.responses import RedirectResponse, Response, StreamingResponse

from redline import __version__
from redline.server.artifacts import report, service
from redline.server.http_errors import ApiError, install_exception_handlers
from redline.server.middleware import RequestContext

ENTRY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased, default ports left out."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def create_user_content_app(settings, engine: Engine) -> FastAPI:
    """The app of the user-content listener; it shares the server's settings and engine."""
    app = FastAPI(title="Redline user content", version=__version__, openapi_url=None,
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.engine = engine

    @app.api_route("/artifacts/{artifact_id}/report/{token}/{entry_path:path}",
                   methods=ENTRY_METHODS)
    def report_entry(artifact_id: str, token: str, entry_path: str, request: Request):
        """One file of an HTML report ZIP (report.py), with scripts and its own origin."""
        status, headers, stream = report.open_entry(engine, settings, artifact_id, token,
                                                    entry_path, request.method)
        if stream is None:
            return Response(status_code=status, headers=headers)
        return StreamingResponse(stream.chunks, status_code=status, headers=headers)

    @app.api_route("/artifacts/{artifact_id}", methods=ENTRY_METHODS)
    def signed_link(artifact_id: str, request: Request):
        """A signed artifact link, as on the main listener (the trace viewer's trace)."""
        try:
            pairs = parse_qsl(request.scope.get("query_string", b"").decode("latin-1"),
                              keep_blank_values=True, max_num_fields=10)
        except ValueError:
            pairs = [("", "")]
        served = service.open_link(engine, settings, artifact_id, request.method, pairs,
                                   request.headers.get("range"))
        if served.stream is None:
            return Response(status_code=served.status, headers=served.headers)
        return StreamingResponse(served.stream.chunks, status_code=served.status,
                                 headers=served.headers)

    @app.get("/trace/{path:path}")
    def trace_viewer(path: str, request: Request):
        """Playwright's trace viewer (web/trace.py), its traces loaded from signed links."""
        from redline.server.web.trace import serve_viewer_file

        return serve_viewer_file(path, request)

    install_exception_handlers(app)
    app.add_middleware(RequestContext)  # request ids, security headers, the error envelope
    return app


def report_url(settings, row, ttl: int | None = None) -> str | None:
    """The signed URL of a report's index.html on the user-content origin; None when this
    server has no user-content origin (then a report does not open in place)."""
    base = settings.resolved_user_content_url
    if base is None:
        return None
    return base + report.mint_report_path(settings, row, ttl)


def trace_viewer_url(settings, trace_link: str) -> str | None:
    """The trace viewer on the user-content origin, loading the trace from its signed link
    (given by path, so the viewer fetches it from its own origin)."""
    from urllib.parse import urlencode

    base = settings.resolved_user_content_url
    if base is None:
        return None
    parts = urlsplit(trace_link)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{base}/trace/index.html?" + urlencode({"trace": path})


def redirect_to_user_content(request: Request, what: str) -> RedirectResponse:
    """What the dashboard's listener answers for a user-content path (an old report link, the
    trace viewer): a redirect to the same path on the user-content origin, never the content
    itself; UNSUPPORTED when this server has no user-content origin."""
    base = request.app.state.settings.resolved_user_content_url
    if base is None:
        raise ApiError("UNSUPPORTED", f"{what} opens on the user-content origin, which this "
                       "server does not have: start it with `redline serve` (a second "
                       "listener) or set REDLINE_USER_CONTENT_URL",
                       {"feature": "user-content"})
    path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    target = base + path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    return RedirectResponse(target, status_code=307)
