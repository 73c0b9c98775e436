"""Runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from redline.server.auth import Principal
from redline.server.deps import Db, rate_limited
from redline.server.kit.pagination import Page
from redline.server.runs import schemas, service
from redline.server.schemas import ERROR_RESPONSES, Deleted, ListPage

router = APIRouter(prefix="/api", tags=["Runs"], responses=ERROR_RESPONSES)
Reader = Annotated[Principal, Depends(rate_limited("runs-read"))]
Writer = Annotated[Principal, Depends(rate_limited("runs-write"))]
ProjectId = Annotated[str | None, Query(alias="projectId", max_length=40,
                                        description="Implied by a project API key.")]


@router.post("/runs", response_model=schemas.Run, status_code=201, summary="Create a run",
             responses={200: {"model": schemas.Run,
                              "description": "Joined the open run of a sharded CI build"}})
def create_run(body: schemas.RunCreate, response: Response, db: Db, caller: Writer):
    """Typically called when a suite starts (`status: running`). Shards of one CI build (same
    `ciBuildId`, with `shardTotal`) join one run: the second and later shards get that run
    back with 200."""
    run, created = service.create_run(db, caller, body.model_dump(by_alias=False))
    if not created:
        response.status_code = 200
    return run


@router.get("/runs", response_model=ListPage[schemas.RunSummary], summary="List runs")
def list_runs(db: Db, caller: Reader, page: Page, project_id: ProjectId = None,
              status: schemas.ListedStatus | None = None,
              branch: Annotated[str | None, Query(max_length=255)] = None,
              plan_id: Annotated[str | None, Query(alias="planId", max_length=40,
                                                   description="Only this plan's executed "
                                                   "runs.")] = None):
    """Newest first. Every run carries the executed-run fields (`planId`, `queuedAt`,
    `startedAt`, `finishedAt`, `exitCode`, `runnerId`, `blockedReason`, `cancelReason`,
    `attempt`), null for a reported or imported run."""
    return service.list_runs(db, caller, project_id, status, branch, page, plan_id)


@router.get("/runs/{run_id}", response_model=schemas.Run, summary="Get a run")
def get_run(run_id: str, db: Db, caller: Reader):
    """A reported, imported or executed run; an executed run's `status` is `queued`,
    `running`, `passed`, `failed`, `blocked` or `cancelled`, and its executed-run fields
    (`planId`, `queuedAt`, `startedAt`, `finishedAt`, `exitCode`, `runnerId`,
    `blockedReason`, `cancelReason`, `attempt`) are set."""
    return service.get_run(db, caller, run_id)


@router.patch("/runs/{run_id}", response_model=schemas.RunUpdated, summary="Update a run")
def patch_run(run_id: str, body: schemas.RunUpdate, db: Db, caller: Writer):
    """Typically called when the suite finishes. A terminal `status` completes the run (for
    a sharded run: once every shard has sent its `shardCurrent`); a run with a failed result
    cannot be called `passed`. Counts are computed from the stored results: sent counts must
    agree with them (a run with no results takes the counts as given)."""
    return service.update_run(db, caller, run_id, body.model_dump(by_alias=False,
                                                                  exclude_unset=True))


@router.delete("/runs/{run_id}", response_model=Deleted, summary="Delete a run")
def delete_run(run_id: str, db: Db, caller: Writer):
    """Deletes the run with all its results and suites. Needs `project:admin`."""
    service.delete_run(db, caller, run_id)
    return {"success": True, "message": "Run deleted successfully"}
