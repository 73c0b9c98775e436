"""The names of the cookies Redline sets, and which one a request or a setting means.

Two names for each: the `__Host-` prefix (browsers keep such a cookie only when it is Secure,
for this host and path `/`) when `REDLINE_COOKIE_SECURE` is on, a plain name for plain-HTTP
development when it is off."""

from __future__ import annotations

from starlette.requests import HTTPConnection

SESSION_COOKIE_SECURE = "__Host-session"
SESSION_COOKIE_PLAIN = "redline_session"
SESSION_COOKIES = (SESSION_COOKIE_SECURE, SESSION_COOKIE_PLAIN)
# The anonymous forms (sign-in, invitation): a signed double-submit CSRF cookie.
ANON_COOKIE_SECURE = "__Host-redline_csrf"
ANON_COOKIE_PLAIN = "redline_csrf"


def session_cookie_name(settings) -> str:
    return SESSION_COOKIE_SECURE if settings.cookie_secure else SESSION_COOKIE_PLAIN


def anon_cookie_name(settings) -> str:
    return ANON_COOKIE_SECURE if settings.cookie_secure else ANON_COOKIE_PLAIN


def session_cookie(request: HTTPConnection) -> str | None:
    """The session token a request carries in either cookie, if any."""
    return (request.cookies.get(SESSION_COOKIE_SECURE)
            or request.cookies.get(SESSION_COOKIE_PLAIN))
