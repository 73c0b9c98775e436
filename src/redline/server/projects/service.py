"""Projects, project settings and API keys."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection

from redline.server.auth import (
    DEFAULT_KEY_SCOPES,
    ROLE_SCOPES,
    Principal,
    forbidden,
    require_in_project,
    require_owner,
    require_project,
    require_team_role,
    require_user,
    team_role,
)
from redline.server.http_errors import ApiError, validation_error
from redline.server.kit import tokens
from redline.server.kit.clock import iso, parse_iso, utcnow
from redline.server.kit.ids import new_id
from redline.server.projects import repository as repo
from redline.server.runs import service as runs

DEFAULT_SETTINGS = {"data_retention_days": 90, "flakiness_threshold": 0.3,
                    "auto_quarantine_enabled": True}


def project_json(row) -> dict:
    return {"id": row.id, "name": row.name, "teamId": row.team_id,
            "createdAt": iso(row.created_at), "updatedAt": iso(row.updated_at)}


def settings_json(row) -> dict:
    return {"projectId": row.id, "dataRetentionDays": row.data_retention_days,
            "flakinessThreshold": row.flakiness_threshold,
            "autoQuarantineEnabled": row.auto_quarantine_enabled,
            "artifactRetentionDays": {outcome: (row.artifact_retention_days or {}).get(outcome)
                                      for outcome in ("passed", "failed", "flaky", "skipped")},
            "updatedAt": iso(row.settings_updated_at)}


def key_json(row) -> dict:
    return {"id": row.id, "name": row.name, "projectId": row.project_id,
            "maskedKey": tokens.mask(row.last4), "scopes": list(row.scopes),
            "isActive": row.is_active, "expiresAt": iso(row.expires_at),
            "lastUsedAt": iso(row.last_used_at), "createdAt": iso(row.created_at)}


def create_project(conn: Connection, principal: Principal, team_id: str, name: str) -> dict:
    require_team_role(conn, principal, team_id, "admin")
    require_user(principal)
    now = utcnow()
    project_id = new_id("proj")
    repo.insert_project(conn, id=project_id, team_id=team_id, name=name,
                        settings_updated_at=now, created_at=now, updated_at=now,
                        **DEFAULT_SETTINGS)
    return project_json(repo.get_project(conn, project_id))


def list_projects(conn: Connection, principal: Principal, team_id: str, page) -> dict:
    team_role(conn, principal, team_id)
    only = principal.project_id if principal.kind == "key" else None
    rows, total = repo.list_projects(conn, team_id, principal.user_id, only, page.limit,
                                     page.offset)
    return page.page([project_json(r) for r in rows], total)


def team_projects(conn: Connection, principal: Principal, team_id: str,
                  limit: int = 100) -> list[dict]:
    """The projects of a team the caller sees, without a count (the dashboard's switcher)."""
    team_role(conn, principal, team_id)
    only = principal.project_id if principal.kind == "key" else None
    rows = repo.team_projects(conn, team_id, principal.user_id, only, limit)
    return [project_json(r) for r in rows]


def get_project(conn: Connection, principal: Principal, project_id: str) -> dict:
    require_project(conn, principal, project_id, "runs:read")
    return project_json(repo.get_project(conn, project_id))


def rename_project(conn: Connection, principal: Principal, project_id: str,
                   name: str | None) -> dict:
    require_project(conn, principal, project_id, "project:admin")
    if name is not None:
        repo.update_project(conn, project_id, name=name, updated_at=utcnow())
    row = repo.get_project(conn, project_id)
    return {"id": row.id, "name": row.name, "teamId": row.team_id,
            "updatedAt": iso(row.updated_at)}


def delete_project(conn: Connection, principal: Principal, project_id: str) -> None:
    access = require_project(conn, principal, project_id, "runs:read")
    require_owner(access, principal)
    runs.queue_project_blob_deletions(conn, project_id)
    repo.delete_project(conn, project_id)


def settings_etag(settings: dict) -> str:
    """A version tag of the settings: a PATCH with `If-Match` must name the current one."""
    import hashlib

    return '"' + hashlib.sha256(settings["updatedAt"].encode()).hexdigest()[:16] + '"'


def get_settings(conn: Connection, principal: Principal, project_id: str) -> dict:
    require_project(conn, principal, project_id, "runs:read")
    return settings_json(repo.get_project(conn, project_id))


def update_settings(conn: Connection, principal: Principal, project_id: str,
                    changes: dict, if_match: str | None = None) -> dict:
    """Only the fields given change. With `If-Match`, only if nobody changed them since."""
    require_project(conn, principal, project_id, "project:admin")
    if if_match is not None and if_match.strip() != "*":
        current = settings_etag(settings_json(repo.get_project(conn, project_id)))
        if current not in [tag.strip() for tag in if_match.split(",")]:
            raise ApiError("PRECONDITION_FAILED", "The settings changed since you read them",
                           {"field": "If-Match", "reason": "stale", "current": current})
    if changes:
        repo.update_project(conn, project_id, settings_updated_at=utcnow(), **changes)
    return settings_json(repo.get_project(conn, project_id))


def create_key(conn: Connection, principal: Principal, project_id: str, name: str,
               expires_at: datetime | None, scopes: Iterable[str] | None) -> dict:
    access = require_project(conn, principal, project_id, "project:admin")
    scopes = sorted(set(scopes if scopes is not None else DEFAULT_KEY_SCOPES))
    granted = (principal.effective_key_scopes if principal.kind == "key"
               else ROLE_SCOPES[access.role])
    missing = [s for s in scopes if s not in granted]
    if missing:
        raise forbidden(missing, list(granted), "A key cannot have scopes its creator lacks")
    expires = None
    if expires_at is not None:
        expires = parse_iso(expires_at.isoformat())  # naive UTC, as stored
        if expires <= utcnow():
            raise validation_error("expiresAt", "in_the_past", "expiresAt must be in the future")
    now = utcnow()
    new = tokens.make_token(tokens.API_KEY_PREFIX)
    key_id = new_id("key")
    repo.insert_key(conn, id=key_id, project_id=project_id, created_by=principal.user_id,
                    name=name, lookup=new.lookup, secret_hash=new.secret_hash, last4=new.last4,
                    scopes=scopes, is_active=True, expires_at=expires, created_at=now,
                    updated_at=now)
    return {"id": key_id, "name": name, "projectId": project_id, "key": new.token,
            "scopes": scopes, "isActive": True, "expiresAt": iso(expires),
            "createdAt": iso(now)}


def list_keys(conn: Connection, principal: Principal, project_id: str, page) -> dict:
    require_project(conn, principal, project_id, "project:admin")
    rows, total = repo.list_keys(conn, project_id, page.limit, page.offset)
    return page.page([key_json(r) for r in rows], total)


def _own_key(conn: Connection, principal: Principal, key_id: str):
    row = repo.get_key(conn, key_id)
    return require_in_project(conn, principal, row, "project:admin", "API key", key_id)


def update_key(conn: Connection, principal: Principal, key_id: str, is_active: bool | None,
               name: str | None) -> dict:
    _own_key(conn, principal, key_id)
    values = {k: v for k, v in {"is_active": is_active, "name": name}.items() if v is not None}
    now = utcnow()
    if values:
        repo.update_key(conn, key_id, updated_at=now, **values)
    row = repo.get_key(conn, key_id)
    return {"id": row.id, "name": row.name, "isActive": row.is_active,
            "updatedAt": iso(row.updated_at)}


def delete_key(conn: Connection, principal: Principal, key_id: str) -> None:
    _own_key(conn, principal, key_id)
    repo.delete_key(conn, key_id)
