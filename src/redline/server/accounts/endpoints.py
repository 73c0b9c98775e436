"""Sign-in, sign-out and the current user."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from redline.server.accounts import schemas, service
from redline.server.auth import Principal
from redline.server.deps import CurrentPrincipal, Db, address_rate_limited, rate_limited
from redline.server.kit.cookies import SESSION_COOKIE_SECURE, SESSION_COOKIES, session_cookie_name
from redline.server.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/api", tags=["Accounts"], responses=ERROR_RESPONSES)


@router.post("/auth/login", response_model=schemas.LoginResponse,
             dependencies=[Depends(address_rate_limited)],
             summary="Sign in with email and password")
def login(body: schemas.LoginRequest, request: Request, response: Response, db: Db):
    """Returns a personal token (`rlu_...`) for the CLI, SDK and MCP server, and sets the
    dashboard's session cookie (HttpOnly, SameSite=Lax). Failed attempts are throttled per
    account: after `REDLINE_LOGIN_MAX_FAILURES` failures the account answers RATE_LIMITED."""
    settings = request.app.state.settings
    result = service.login(db, body.email, body.password, settings, request.app.state.limiter)
    name = session_cookie_name(settings)
    response.set_cookie(name, result["token"], httponly=True, samesite="lax", path="/",
                        secure=settings.cookie_secure,
                        max_age=settings.session_absolute_seconds)
    return result


@router.post("/auth/logout", response_model=None,
             status_code=204, response_class=Response, summary="Sign out")
def logout(request: Request, db: Db, principal: CurrentPrincipal):
    """Revokes the personal token or session used for this request."""
    service.logout(db, principal)
    response = Response(status_code=204)
    for name in SESSION_COOKIES:
        response.delete_cookie(name, path="/", secure=name == SESSION_COOKIE_SECURE,
                               httponly=True, samesite="lax")
    return response


@router.get("/me", response_model=schemas.Me, summary="The current user and credentials")
def get_me(db: Db, principal: Principal = Depends(rate_limited("projects-teams"))):
    return service.me(db, principal)


@router.patch("/me", response_model=schemas.Me, summary="Change your name or password")
def patch_me(body: schemas.MeUpdate, db: Db,
             principal: Principal = Depends(rate_limited("projects-teams"))):
    return service.update_me(db, principal, body.name, body.password, body.current_password)
