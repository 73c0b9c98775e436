"""Which project a request about runs (and the results, webhooks and statistics of a
project) means. Apart from runs/service.py so that a feature that needs only this (webhooks)
does not depend on the completion of runs, which emits its events (runs/completion.py)."""

from __future__ import annotations

from redline.server.auth import Principal
from redline.server.http_errors import validation_error


def resolve_project(principal: Principal, project_id: str | None) -> str:
    """A project API key implies its project; a person must name one."""
    if project_id:
        return project_id
    if principal.kind == "key":
        return principal.project_id  # type: ignore[return-value]
    raise validation_error("projectId", "required", "Field 'projectId' is required")
