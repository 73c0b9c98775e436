"""Projects, project settings and API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response

from redline.server.auth import Principal
from redline.server.deps import Db, rate_limited
from redline.server.kit.pagination import Page
from redline.server.projects import schemas, service
from redline.server.schemas import ERROR_RESPONSES, Deleted, ErrorEnvelope, ListPage

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
ProjectsCaller = Annotated[Principal, Depends(rate_limited("projects-teams"))]
KeysCaller = Annotated[Principal, Depends(rate_limited("keys-webhooks"))]
TeamId = Annotated[str, Query(alias="teamId", min_length=1, max_length=40)]
ProjectId = Annotated[str, Query(alias="projectId", min_length=1, max_length=40)]


@router.get("/projects", response_model=ListPage[schemas.Project], tags=["Projects"],
            summary="List a team's projects")
def list_projects(team_id: TeamId, db: Db, caller: ProjectsCaller, page: Page):
    return service.list_projects(db, caller, team_id, page)


@router.post("/projects", response_model=schemas.Project, status_code=201, tags=["Projects"],
             summary="Create a project")
def create_project(body: schemas.ProjectCreate, db: Db, caller: ProjectsCaller):
    """Admins and owners of the team."""
    return service.create_project(db, caller, body.team_id, body.name)


@router.get("/projects/{project_id}", response_model=schemas.Project, tags=["Projects"],
            summary="Get a project")
def get_project(project_id: str, db: Db, caller: ProjectsCaller):
    return service.get_project(db, caller, project_id)


@router.patch("/projects/{project_id}", response_model=schemas.ProjectRenamed,
              tags=["Projects"], summary="Rename a project")
def patch_project(project_id: str, body: schemas.ProjectUpdate, db: Db,
                  caller: ProjectsCaller):
    return service.rename_project(db, caller, project_id, body.name)


@router.delete("/projects/{project_id}", response_model=Deleted, tags=["Projects"],
               summary="Delete a project")
def delete_project(project_id: str, db: Db, caller: ProjectsCaller):
    """Owners only: deletes the project and all its data (runs, tests, artifacts, keys,
    webhooks)."""
    service.delete_project(db, caller, project_id)
    return {"success": True, "message": "Project deleted successfully"}


@router.get("/projects/{project_id}/settings", response_model=schemas.ProjectSettings,
            tags=["Projects"], summary="Get project settings")
def get_settings(project_id: str, response: Response, db: Db, caller: ProjectsCaller):
    """The `ETag` header names this version; send it back as `If-Match` to update safely."""
    result = service.get_settings(db, caller, project_id)
    response.headers["ETag"] = service.settings_etag(result)
    return result


@router.patch("/projects/{project_id}/settings", response_model=schemas.ProjectSettings,
              tags=["Projects"], summary="Update project settings",
              responses={412: {"model": ErrorEnvelope,
                               "description": "PRECONDITION_FAILED: If-Match is stale"}})
def patch_settings(project_id: str, body: schemas.ProjectSettingsUpdate, response: Response,
                   db: Db, caller: ProjectsCaller,
                   if_match: Annotated[str | None, Header(max_length=200)] = None):
    """Only the fields given change. Needs `project:admin`. With `If-Match: <ETag>`, a
    concurrent change since that read makes it PRECONDITION_FAILED (412)."""
    changes = body.model_dump(exclude_none=True, by_alias=False)
    if "artifact_retention_days" in changes:  # stored by outcome name, unset ones dropped
        changes["artifact_retention_days"] = {
            k: v for k, v in changes["artifact_retention_days"].items() if v is not None}
    result = service.update_settings(db, caller, project_id, changes, if_match)
    response.headers["ETag"] = service.settings_etag(result)
    return result


@router.get("/api-keys", response_model=ListPage[schemas.ApiKey], tags=["API keys"],
            summary="List a project's API keys")
def list_keys(project_id: ProjectId, db: Db, caller: KeysCaller, page: Page):
    """Key values are masked (`rl_****...****a1b2`)."""
    return service.list_keys(db, caller, project_id, page)


@router.post("/api-keys", response_model=schemas.ApiKeyCreated, status_code=201,
             tags=["API keys"], summary="Create an API key")
def create_key(body: schemas.ApiKeyCreate, db: Db, caller: KeysCaller):
    """The whole key is returned once, here. It acts with the intersection of its scopes and
    its creator's current role."""
    return service.create_key(db, caller, body.project_id, body.name, body.expires_at,
                              body.scopes)


@router.patch("/api-keys/{key_id}", response_model=schemas.ApiKeyUpdated, tags=["API keys"],
              summary="Deactivate, reactivate or rename an API key")
def patch_key(key_id: str, body: schemas.ApiKeyUpdate, db: Db, caller: KeysCaller):
    return service.update_key(db, caller, key_id, body.is_active, body.name)


@router.delete("/api-keys/{key_id}", response_model=Deleted, tags=["API keys"],
               summary="Delete an API key")
def delete_key(key_id: str, db: Db, caller: KeysCaller):
    service.delete_key(db, caller, key_id)
    return {"success": True, "message": "API key deleted successfully"}
