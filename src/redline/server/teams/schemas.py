from __future__ import annotations

from typing import Literal

from pydantic import Field

from redline.server.schemas import ApiModel

InvitableRole = Literal["admin", "member", "viewer"]
Role = Literal["owner", "admin", "member", "viewer"]


class TeamCreate(ApiModel):
    name: str = Field(min_length=1, max_length=200)


class TeamUpdate(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    execution_budget_seconds: int | None = Field(
        None, ge=0, le=10**10, description="Runner-seconds of executed runs a calendar month "
        "may use; null (the default) is no limit.")


class Team(ApiModel):
    id: str
    name: str
    created_at: str


class Member(ApiModel):
    id: str
    user_id: str
    team_id: str
    role: Role
    name: str
    email: str
    avatar_url: str | None = None
    joined_at: str


EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$"


class InvitationCreate(ApiModel):
    team_id: str = Field(min_length=1, max_length=40)
    email: str = Field(min_length=3, max_length=320, pattern=EMAIL_PATTERN)
    role: InvitableRole


class Invitation(ApiModel):
    id: str
    team_id: str
    email: str
    role: InvitableRole
    status: Literal["pending", "accepted", "revoked", "expired"]
    expires_at: str
    created_at: str
    accept_token: str | None = Field(None, description="Only in the create response: the "
                                     "secret a new user gives to accept (shown once).")
    accept_url: str | None = Field(None, description="Only in the create response: the link "
                                   "to send to the invitee.")


class InvitationAccept(ApiModel):
    token: str | None = Field(None, max_length=200, description="The invitation's secret; "
                              "needed when not signed in as the invited email.")
    password: str | None = Field(None, min_length=8, max_length=1024,
                                 description="Creates the account when the email has none.")
    name: str | None = Field(None, max_length=200)


class Accepted(ApiModel):
    member: Member
    token: str | None = Field(None, description="A personal token, when this created the "
                              "account.")


class MemberUpdate(ApiModel):
    role: Role
