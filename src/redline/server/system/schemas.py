from __future__ import annotations

from pydantic import Field

from redline.server.accounts.schemas import User
from redline.server.projects.schemas import Project
from redline.server.schemas import ApiModel
from redline.server.teams.schemas import Team


class Health(ApiModel):
    status: str


class SetupRequest(ApiModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=8, max_length=1024)
    name: str | None = Field(None, max_length=200)
    team: str = Field("My team", min_length=1, max_length=200)
    project: str = Field("My project", min_length=1, max_length=200)
    key_name: str = Field("CI", min_length=1, max_length=200)


class SetupKey(ApiModel):
    id: str
    key: str
    name: str
    scopes: list[str]


class SetupResponse(ApiModel):
    user: User
    team: Team
    project: Project
    api_key: SetupKey
