from __future__ import annotations

from typing import Literal

from pydantic import Field

from redline.server.schemas import ApiModel

# `log`: an executed run's whole log, kept by Redline (never uploaded).
ArtifactType = Literal["screenshot", "video", "trace", "report", "log"]


class UploadedArtifact(ApiModel):
    """The reference's answer to an upload."""

    id: str
    type: ArtifactType
    file_name: str = Field(description="The uploaded name, for display (never a path).")
    file_size: int = Field(description="Bytes.")
    mime_type: str = Field(description="Detected from the file's bytes.")
    url: str = Field(description="A signed link to the file; works until `expiresAt`.")
    expires_at: str
    created_at: str
    project_id: str
    run_id: str
    test_id: str | None = Field(description="The test it belongs to: given at upload, or "
                                "found from the run's Playwright attachments by file name; "
                                "null for an artifact of the whole run.")
    test_status: str | None = Field(description="The test's outcome when it was linked.")


class Artifact(ApiModel):
    id: str
    project_id: str
    run_id: str
    test_id: str | None = Field(description="The test it belongs to: given at upload, or "
                                "found from the run's Playwright attachments by file name.")
    type: ArtifactType
    file_name: str
    file_size: int
    mime_type: str
    sha256: str
    test_status: str | None = Field(description="The test's outcome when it was linked.")
    url: str = Field(description="A fresh signed link to the file.")
    expires_at: str
    created_at: str
