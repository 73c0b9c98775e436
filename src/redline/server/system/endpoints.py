"""Health and first-run setup."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from redline.server.deps import Db, address_rate_limited
from redline.server.schemas import ERROR_RESPONSES
from redline.server.system import schemas, service

router = APIRouter(prefix="/api", tags=["System"], responses=ERROR_RESPONSES)


@router.get("/health", response_model=schemas.Health, summary="Can the server serve?")
def health(db: Db):
    """200 `{"status": "ok"}` when the database answers; UNAVAILABLE (503) when it cannot be
    reached."""
    service.check_database(db)
    return {"status": "ok"}


@router.post("/setup", response_model=schemas.SetupResponse, status_code=201,
             dependencies=[Depends(address_rate_limited)],
             summary="First-run setup (what `redline init` calls)")
def setup(body: schemas.SetupRequest, db: Db):
    """Creates the first owner account, a team, a project and a CI API key, printing the key
    once. Only on a server with no users: afterwards it answers CONFLICT."""
    return service.setup(db, body.email, body.password, body.name, body.team, body.project,
                         body.key_name)
