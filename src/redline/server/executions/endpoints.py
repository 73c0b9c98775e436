"""Executed runs (DESIGN.md section 8): plans, their runs, cancel and signals, logs, credits,
runner tokens, and the API runners call (`/api/runner/...`, with a runner token)."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query, Request, Response

from redline.server.auth import Principal
from redline.server.deps import Db, get_db, rate_limited, unit_of_work
from redline.server.executions import schemas, service
from redline.server.kit.pagination import Page
from redline.server.schemas import ERROR_RESPONSES, Deleted, ListPage

router = APIRouter(prefix="/api", tags=["Executions"], responses=ERROR_RESPONSES)
Reader = Annotated[Principal, Depends(rate_limited("runs-read"))]
Writer = Annotated[Principal, Depends(rate_limited("runs-write"))]
Admin = Annotated[Principal, Depends(rate_limited("keys-webhooks"))]


async def runner_caller(request: Request) -> service.RunnerCaller:
    """A runner, by its token (`Authorization: Bearer rlr_...`)."""
    header = request.headers.get("authorization")
    return await unit_of_work(request).read(
        lambda conn: service.authenticate_runner(conn, header))


RunnerCaller = Annotated[service.RunnerCaller, Depends(runner_caller)]


# -- plans -----------------------------------------------------------------------------------

@router.post("/plans", response_model=schemas.Plan, status_code=201, summary="Create a plan")
def create_plan(body: schemas.PlanCreate, request: Request, db: Db, caller: Writer):
    """Needs `project:admin`. `command` is an argv list (never a shell string); `env` values
    are strings, or `{"value": ..., "secret": true}` for a secret (stored encrypted, never
    returned). Answers `codeVersion: 1` and `status` (`draft` without a command, else
    `ready`)."""
    return service.create_plan(db, caller, body, request.app.state.settings)


@router.get("/plans", response_model=ListPage[schemas.Plan], summary="List plans")
def list_plans(db: Db, caller: Reader, page: Page,
               project_id: Annotated[str | None, Query(alias="projectId",
                                                       max_length=40)] = None):
    return service.list_plans(db, caller, project_id, page)


@router.get("/plans/{plan_id}", response_model=schemas.Plan, summary="Get a plan")
def get_plan(plan_id: str, db: Db, caller: Reader):
    """`status`: `draft`, `ready` (never run), `queued`, `running`, or the status of its
    latest completed run that was not cancelled (`passed`, `failed`, `blocked`; `unknown`
    when its runner was lost), `cancelled` when only cancelled runs ended."""
    return service.get_plan(db, caller, plan_id)


@router.patch("/plans/{plan_id}", response_model=schemas.Plan, summary="Update a plan")
def patch_plan(plan_id: str, body: schemas.PlanUpdate, request: Request, db: Db,
               caller: Writer,
               if_match: Annotated[str | None, Header(alias="If-Match")] = None):
    """Send `If-Match: <codeVersion>` (or `codeVersion` in the body): an older one is
    PRECONDITION_FAILED with `details.current` and `details.sent`. A change of what the plan
    runs (command, source, env, timeout, reportPaths, sandbox, network) bumps
    `codeVersion`."""
    return service.update_plan(db, caller, plan_id, body, if_match,
                               request.app.state.settings)


@router.delete("/plans/{plan_id}", response_model=Deleted, summary="Delete a plan")
def delete_plan(plan_id: str, db: Db, caller: Writer):
    """Its queued runs are cancelled, its running ones asked to stop; its runs stay."""
    service.delete_plan(db, caller, plan_id)
    return {"success": True, "message": "Plan deleted successfully"}


@router.post("/plans/{plan_id}/runs", response_model=schemas.ExecutedRun, status_code=202,
             summary="Run a plan")
def trigger_plan(plan_id: str, body: schemas.RunTrigger, request: Request, db: Db,
                 caller: Writer):
    """Scope `executions:write`. Answers 202 with the run `queued`. With
    `maxConcurrentRuns` runs of the plan in flight: CONFLICT (`details.reason:
    "run_in_flight"`, `details.runId`); with the team's execution budget spent:
    INSUFFICIENT_CREDITS."""
    return service.trigger(db, caller, plan_id, body, request.app.state.settings)


@router.post("/plans/{plan_id}/trigger", response_model=schemas.ExecutedRun, status_code=202,
             summary="Run a plan (the older name of POST /api/plans/{id}/runs)",
             deprecated=True)
def trigger_plan_alias(plan_id: str, request: Request, db: Db, caller: Writer,
                       body: schemas.RunTrigger | None = None):
    return service.trigger(db, caller, plan_id, body or schemas.RunTrigger(),
                           request.app.state.settings)


# -- runs ------------------------------------------------------------------------------------

@router.post("/runs/{run_id}/cancel", response_model=schemas.ExecutedRun,
             summary="Cancel an executed run")
def cancel_run(run_id: str, db: Db, caller: Writer):
    """Idempotent. A queued run is `cancelled` at once; a running one's runner sends SIGTERM
    to its process group, SIGKILL after the grace period, then ends it `cancelled`
    (`cancelRequested` is true meanwhile); a finished run is answered unchanged."""
    return service.cancel(db, caller, run_id)


@router.post("/runs/{run_id}/signal", summary="Send a signal to a run's process")
def signal_run(run_id: str, body: schemas.Signal, db: Db, caller: Writer):
    """`INT`, `TERM`, `HUP`, `KILL`, `QUIT`, `USR1`, `USR2`, delivered to the command's
    process group. Before the process started or after it finished: CONFLICT with
    `details.reason` `not_started` or `finished`."""
    return service.signal(db, caller, run_id, body.signal)


@router.get("/runs/{run_id}/log", response_model=schemas.LogChunk, summary="A run's output")
def run_log(run_id: str, db: Db, caller: Reader,
            offset: Annotated[int, Query(ge=0)] = 0,
            limit: Annotated[int, Query(ge=1, le=1024 * 1024)] = 256 * 1024):
    """The output from byte `offset`: `text`, `nextOffset` (pass it back), `complete` (the
    run has finished and this is the end)."""
    return service.read_log(db, caller, run_id, offset, limit)


# -- credits -----------------------------------------------------------------------------------

@router.get("/teams/{team_id}/usage", response_model=schemas.Usage,
            summary="A team's execution usage this month")
def team_usage(team_id: str, db: Db, caller: Reader):
    """Runner-seconds of executed runs this calendar month (UTC), from their real start and
    finish, per project; `budgetSeconds` null is no limit."""
    return service.usage(db, caller, team_id)


@router.put("/teams/{team_id}/execution-budget", response_model=schemas.Usage,
            summary="Set a team's execution budget")
def set_budget(team_id: str, body: schemas.BudgetUpdate, db: Db, caller: Admin):
    """Admins: runner-seconds a calendar month (null: no limit). Triggering with nothing left
    is INSUFFICIENT_CREDITS."""
    return service.set_budget(db, caller, team_id, body.execution_budget_seconds)


# -- runner tokens -----------------------------------------------------------------------------

@router.post("/runner-tokens", response_model=schemas.RunnerTokenCreated, status_code=201,
             summary="Create a runner token")
def create_runner_token(body: schemas.RunnerTokenCreate, db: Db, caller: Admin):
    """Team admins. The token is shown once (stored hashed); a runner with it serves the
    team's projects, or the one `projectId`."""
    return service.create_runner_token(db, caller, body.team_id, body.project_id, body.name)


@router.get("/runner-tokens", response_model=ListPage[schemas.RunnerToken],
            summary="List runner tokens")
def list_runner_tokens(db: Db, caller: Admin, page: Page,
                       team_id: Annotated[str, Query(alias="teamId", max_length=40)]):
    return service.list_runner_tokens(db, caller, team_id, page)


@router.delete("/runner-tokens/{token_id}", response_model=Deleted,
               summary="Revoke a runner token")
def revoke_runner_token(token_id: str, db: Db, caller: Admin):
    service.revoke_runner_token(db, caller, token_id)
    return {"success": True, "message": "Runner token revoked"}


# -- the runner API ----------------------------------------------------------------------------

@router.post("/runner/claim", summary="Runner: take a queued run",
             responses={204: {"description": "Nothing to run"}})
async def runner_claim(body: schemas.Claim, request: Request, runner: RunnerCaller):
    """Takes the oldest queued run the token serves, under a lease (atomic: a run is handed
    out once). 204 when there is none (that check opens no write transaction)."""
    uow = unit_of_work(request)
    if not await uow.read(lambda conn: service.has_queued(conn, runner)):
        return Response(status_code=204)
    db = await get_db(request)
    job = await anyio.to_thread.run_sync(service.claim, db, runner, body.runner_id,
                                         request.app.state.settings)
    return job if job is not None else Response(status_code=204)


@router.post("/runner/runs/{run_id}/heartbeat", summary="Runner: renew a lease")
def runner_heartbeat(run_id: str, body: schemas.Heartbeat, request: Request, db: Db,
                     runner: RunnerCaller):
    """Answers `cancel` and the `signals` to deliver; CONFLICT `lease_lost` when the lease
    is gone (the runner must stop the run's processes)."""
    return service.heartbeat(db, runner, run_id, body.lease_token, body.process_started,
                             request.app.state.settings)


@router.post("/runner/runs/{run_id}/log", summary="Runner: append output")
def runner_log(run_id: str, body: schemas.LogAppend, db: Db, runner: RunnerCaller):
    return service.append_log(db, runner, run_id, body.lease_token, body.offset, body.text)


@router.post("/runner/runs/{run_id}/reports", summary="Runner: upload a report")
def runner_report(run_id: str, body: schemas.ReportUpload, db: Db, runner: RunnerCaller):
    """A JUnit XML, Playwright JSON or CTRF file the command wrote, imported into the run."""
    return service.upload_report(db, runner, run_id, body.lease_token, body.file_name,
                                 body.content, body.format)


@router.post("/runner/runs/{run_id}/finish", response_model=schemas.ExecutedRun,
             summary="Runner: end a run")
def runner_finish(run_id: str, body: schemas.Finish, db: Db, runner: RunnerCaller):
    return service.finish(db, runner, run_id, body)
