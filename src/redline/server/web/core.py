"""What every dashboard view shares: its database connection, who is signed in, CSRF, the
security headers and rendering.

A view's database work is the request's unit of work, as for the API (`unit_of_work.py`): the
pages' router opens it (`deps.get_db`: a read connection for GET, the write transaction for a
form POST) and the middleware commits it when the view answered under 400 (a page or a
redirect), or rolls it back. The session cookie is checked with the API's own function. A view builds one context and renders it (Datasette's way); an
expected failure (`ApiError`) renders the error page with the catalog's code and the request
id, and a missing or expired session sends the browser to the sign-in page.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from redline.errors import CATALOG
from redline.server.auth import (
    ROLE_SCOPES,
    ROLES,
    Principal,
    authenticate_token,
)
from redline.server.http_errors import ApiError, request_id_of
from redline.server.kit.cookies import anon_cookie_name, session_cookie
from redline.server.kit.pagination import PageRequest
from redline.server.kit.signing import Signer
from redline.server.unit_of_work import UnitOfWork
from redline.server.web import format as fmt
from redline.server.web.static import version as static_version

HERE = Path(__file__).parent

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# The anonymous forms (sign-in, invitation) use a signed double-submit cookie: a random value
# in a cookie, its HMAC in the form.

env = Environment(loader=FileSystemLoader(HERE / "templates"),
                  autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
fmt.install(env)
env.globals["static_version"] = static_version()


class Redirect(Exception):
    def __init__(self, location: str, status: int = 303):
        self.location = location
        self.status = status


class LoginRequired(Exception):
    pass


@dataclass
class Web:
    """One dashboard request: its connection, its principal, and what the layout needs."""

    request: Request
    write: bool
    uow: UnitOfWork
    signed_in: Principal | None = None
    csrf_token: str = ""
    layout: dict[str, Any] = field(default_factory=dict)

    @property
    def principal(self) -> Principal:
        """The signed-in user, on the pages that require one (all but the `public` ones)."""
        if self.signed_in is None:
            raise LoginRequired()
        return self.signed_in

    @property
    def conn(self):
        return self.uow.connection()

    @property
    def settings(self):
        return self.request.app.state.settings

    def page(self, limit: int = 50, offset: int = 0) -> PageRequest:
        limit = max(1, min(int(limit), 500))
        return PageRequest(limit, max(0, int(offset)), "web",
                           self.settings.resolved_secret_key)

    def render(self, template: str, context: dict[str, Any], status: int = 200,
               headers: dict[str, str] | None = None) -> HTMLResponse:
        body = env.get_template(template).render(**self.base_context(), **context)
        return HTMLResponse(body, status_code=status, headers=headers)

    def base_context(self) -> dict[str, Any]:
        return {"csrf_token": self.csrf_token, "principal": self.signed_in,
                "request_path": self.request.url.path, "request": self.request,
                **self.layout}


def can(role: str | None, scope: str) -> bool:
    """What the API would allow this role: the same table (`ROLE_SCOPES`)."""
    return role is not None and scope in ROLE_SCOPES.get(role, frozenset())


def at_least(role: str | None, minimum: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(minimum)


def _anon_signer(settings) -> Signer:
    """The anonymous form's token: the MAC of the cookie's nonce (double submit)."""
    return Signer(settings.resolved_secret_key, "web-csrf", encoding="hex")


def anon_csrf(request: Request) -> tuple[str, str | None]:
    """(form token, new cookie value or None when the browser has one already)."""
    settings = request.app.state.settings
    nonce = request.cookies.get(anon_cookie_name(settings))
    fresh = None
    if not nonce or len(nonce) > 100:
        nonce = fresh = secrets.token_urlsafe(24)
    return _anon_signer(settings).sign(nonce), fresh


def set_anon_cookie(response: Response, settings, value: str | None) -> None:
    if value is not None:
        response.set_cookie(anon_cookie_name(settings), value, httponly=True, samesite="strict",
                            path="/", secure=settings.cookie_secure)


def check_anon_csrf(request: Request, sent: str) -> None:
    _refuse_cross_site(request)
    settings = request.app.state.settings
    nonce = request.cookies.get(anon_cookie_name(settings))
    if not nonce or not sent or not _anon_signer(settings).is_valid(sent, nonce):
        raise _csrf_error()


def _csrf_error() -> ApiError:
    return ApiError("AUTH_FORBIDDEN", "This form is out of date or did not come from this "
                    "site (CSRF token missing or wrong); reload the page and try again",
                    {"reason": "csrf", "required": ["csrf-token"], "granted": []})


def _refuse_cross_site(request: Request) -> None:
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise ApiError("AUTH_FORBIDDEN", "Cross-site requests are refused",
                       {"reason": "cross_site", "required": ["same-origin"], "granted": []})


def _authenticate(web: Web) -> None:
    request = web.request
    cookie = session_cookie(request)
    if not cookie:
        raise LoginRequired()
    try:
        web.signed_in = authenticate_token(request, web.conn, cookie, via_cookie=True)
    except ApiError as exc:
        if exc.code in ("AUTH_INVALID", "AUTH_REQUIRED"):
            raise LoginRequired() from None
        raise
    web.csrf_token = request.state.csrf_token


def optional_principal(web: Web) -> Principal | None:
    """The signed-in user if the cookie is valid, else None (for public pages)."""
    try:
        _authenticate(web)
    except LoginRequired:
        return None
    return web.signed_in


def _check_csrf(web: Web, sent: str) -> None:
    _refuse_cross_site(web.request)
    if not sent or not hmac.compare_digest(sent, web.csrf_token):
        raise _csrf_error()


def view(write: bool = False, public: bool = False):
    """Wrap a dashboard view: authenticate (unless `public`), check the CSRF token of a form
    POST (field `csrf`), turn failures into the error page or the sign-in redirect, and add
    the dashboard's security headers. Its unit of work is the request's (see above)."""

    def decorate(function):
        @functools.wraps(function)
        def endpoint(*args, **kwargs):
            request: Request = kwargs["request"]
            web = Web(request, write, request.state.uow)
            request.state.web = web
            try:
                if not public:
                    _authenticate(web)
                    if write:
                        _check_csrf(web, kwargs.get("csrf") or "")
                response = function(*args, **kwargs)
            except Redirect as redirect:
                response = RedirectResponse(redirect.location, status_code=redirect.status)
            except LoginRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query
                                             else "")
                location = "/login" if target == "/" else f"/login?next={quote(target)}"
                response = RedirectResponse(location, status_code=303)
            except ApiError as exc:
                response = error_page(web, exc)
            return secure(response)

        return endpoint

    return decorate


def error_page(web: Web, exc: ApiError) -> HTMLResponse:
    kind = CATALOG[exc.code]
    titles = {"NOT_FOUND": "Not found", "AUTH_FORBIDDEN": "Not allowed",
              "VALIDATION_ERROR": "That did not work", "RATE_LIMITED": "Slow down",
              "CONFLICT": "Conflict", "UNAVAILABLE": "Unavailable"}
    context = {"title": titles.get(exc.code, "Something went wrong"), "code": exc.code,
               "message": exc.message, "next_action": kind.next_action,
               "request_id": request_id_of(web.request), "details": exc.details}
    return web.render("error.html", context, status=exc.status, headers=exc.headers)


def secure(response: Response) -> Response:
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def url(path: str, **query) -> str:
    """A path with the non-empty query parameters."""
    params = {k: v for k, v in query.items() if v not in (None, "", False)}
    return path + (f"?{urlencode(params)}" if params else "")
