from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from redline.server.schemas import ApiModel, Int32

Scope = Literal["runs:read", "runs:write", "artifacts:read", "artifacts:write",
                "flakiness:write", "executions:write", "project:admin"]


class ProjectCreate(ApiModel):
    name: str = Field(min_length=1, max_length=200)
    team_id: str = Field(min_length=1, max_length=40)


class ProjectUpdate(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=200)


class Project(ApiModel):
    id: str
    name: str
    team_id: str
    created_at: str
    updated_at: str


class ProjectRenamed(ApiModel):
    id: str
    name: str
    team_id: str
    updated_at: str


class ArtifactRetention(ApiModel):
    """Days to keep artifacts by their test's outcome (unset: as long as the run)."""

    passed: Int32 | None = Field(None, ge=1, le=3650)
    failed: Int32 | None = Field(None, ge=1, le=3650)
    flaky: Int32 | None = Field(None, ge=1, le=3650)
    skipped: Int32 | None = Field(None, ge=1, le=3650)


class ProjectSettings(ApiModel):
    project_id: str
    data_retention_days: int
    flakiness_threshold: float
    auto_quarantine_enabled: bool
    artifact_retention_days: ArtifactRetention
    updated_at: str


class ProjectSettingsUpdate(ApiModel):
    data_retention_days: Int32 | None = Field(None, ge=1, le=3650)
    flakiness_threshold: float | None = Field(None, ge=0, le=1)
    auto_quarantine_enabled: bool | None = None
    artifact_retention_days: ArtifactRetention | None = Field(
        None, description="e.g. {\"passed\": 7, \"failed\": 30, \"flaky\": 30}")


class ApiKeyCreate(ApiModel):
    project_id: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1, max_length=200)
    expires_at: datetime | None = Field(None, strict=False, description="ISO 8601 date-time "
                                        "in the future; the key stops working then.")
    scopes: list[Scope] | None = Field(None, description="Default: runs:read, runs:write, "
                                       "artifacts:read, artifacts:write, flakiness:write.",
                                       max_length=7)


class ApiKey(ApiModel):
    id: str
    name: str
    project_id: str
    masked_key: str
    scopes: list[Scope]
    is_active: bool
    expires_at: str | None
    last_used_at: str | None
    created_at: str


class ApiKeyCreated(ApiModel):
    id: str
    name: str
    project_id: str
    key: str = Field(description="The whole key. Shown only in this response.")
    scopes: list[Scope]
    is_active: bool
    expires_at: str | None
    created_at: str


class ApiKeyUpdate(ApiModel):
    is_active: bool | None = None
    name: str | None = Field(None, min_length=1, max_length=200)


class ApiKeyUpdated(ApiModel):
    id: str
    name: str
    is_active: bool
    updated_at: str
