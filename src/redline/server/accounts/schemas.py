from __future__ import annotations

from pydantic import Field

from redline.server.schemas import ApiModel


class LoginRequest(ApiModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class User(ApiModel):
    id: str
    email: str
    name: str
    created_at: str


class LoginResponse(ApiModel):
    token: str = Field(description="Personal token (`rlu_...`): send as "
                       "`Authorization: Bearer <token>`. Shown once.")
    expires_at: str
    csrf_token: str = Field(description="Echo in `X-CSRF-Token` on cookie-authenticated writes.")
    user: User


class Membership(ApiModel):
    team_id: str
    team_name: str
    role: str


class Me(ApiModel):
    id: str
    email: str
    name: str
    created_at: str
    kind: str = Field(description="`user` for a personal token or session, `key` for an API key")
    key_id: str | None = None
    project_id: str | None = None
    scopes: list[str] = Field(description="What these credentials may do")
    teams: list[Membership]


class MeUpdate(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    password: str | None = Field(None, min_length=8, max_length=1024, description="A new "
                                 "password: needs `currentPassword`, and ends every other "
                                 "session and personal token of the user.")
    current_password: str | None = Field(None, min_length=1, max_length=1024,
                                         description="The password being replaced.")


