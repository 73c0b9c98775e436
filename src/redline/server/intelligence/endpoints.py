"""Test cases, history, flakiness and quarantine, error groups, trends, run comparison."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from redline.server.auth import Principal
from redline.server.deps import Db, rate_limited
from redline.server.intelligence import schemas, service
from redline.server.kit.pagination import Page
from redline.server.schemas import ERROR_RESPONSES, ListPage

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
TestsReader = Annotated[Principal, Depends(rate_limited("tests-read"))]
RunsReader = Annotated[Principal, Depends(rate_limited("runs-read"))]
FlakyCaller = Annotated[Principal, Depends(rate_limited("flakiness"))]
ProjectId = Annotated[str | None, Query(alias="projectId", max_length=40,
                                        description="Implied by a project API key.")]


@router.get("/test-cases", response_model=ListPage[schemas.TestCase], tags=["Test cases"],
            summary="List test cases")
def list_cases(db: Db, caller: TestsReader, page: Page, project_id: ProjectId = None,
               status: Literal["new", "stable", "flaky", "broken"] | None = None,
               file: Annotated[str | None, Query(max_length=1000)] = None,
               tag: Annotated[str | None, Query(max_length=255)] = None,
               search: Annotated[str | None, Query(max_length=500)] = None,
               sort: Literal["flakiness", "failure-rate", "duration", "title"] = "flakiness"):
    """A test case is a test's identity across runs (file + full title + variant), with its
    statistics over its last 50 results."""
    return service.list_cases(db, caller, project_id, status, file, tag, search, sort, page)


@router.get("/test-cases/{test_id}", response_model=schemas.TestCaseDetail,
            tags=["Test cases"], summary="Get a test case with its flakiness evidence")
def get_case(test_id: str, db: Db, caller: TestsReader):
    """`test_id` may be a case id (`tc_...`) or any of its results (`test_...`). The evidence
    lists the runs and commits where it passed on retry or changed its mind."""
    return service.get_case(db, caller, test_id)


@router.get("/tests/{test_id}/history", response_model=schemas.History, tags=["Tests"],
            summary="A test's last 20 results across runs")
def history(test_id: str, db: Db, caller: TestsReader,
            branch: Annotated[str | None, Query(max_length=255)] = None):
    return service.history(db, caller, test_id, branch)


@router.get("/flakiness", response_model=schemas.FlakinessPage, tags=["Flakiness"],
            summary="Flaky tests, highest score first")
def flakiness(db: Db, caller: FlakyCaller, page: Page, project_id: ProjectId = None,
              min_score: Annotated[float | None, Query(alias="minScore", ge=0, le=1)] = None,
              quarantined: bool | None = None):
    """Without `minScore`: every case with flaky evidence or in quarantine.

    flakinessScore = sum(w_i * evidence_i) / sum(w_i) over the newest 50 results that ran,
    w_i = 0.5 ** (i / 10) with i = 0 the newest (a result's weight halves every 10 results).
    Evidence: status `flaky` (failed, then passed on a retry), or a pass or a fail on the same
    commit as one of the test's 50 previous results, from another run, with the opposite
    outcome (a re-run that changed its mind). Results of runs where over 80% of at least 10 tests failed
    are never evidence. A case that fails every time is `broken`, not flaky. `totalRuns` and
    `flakyRuns` count over the same window."""
    return service.flakiness(db, caller, project_id, min_score, quarantined, page)


@router.post("/flakiness", response_model=schemas.QuarantineResult, tags=["Flakiness"],
             summary="Quarantine or release a test")
def set_quarantine(body: schemas.QuarantineRequest, db: Db, caller: FlakyCaller):
    """A quarantined test's failures do not fail the verdict of runs that start while it is
    quarantined. Who, when, why, the owner and an optional `expiresAt` (after which it lifts
    by itself) are recorded. A person's decision wins over automatic quarantine."""
    return service.quarantine(db, caller, body.test_id, body.project_id, body.is_quarantined,
                              body.reason, body.owner, body.expires_at)


@router.get("/errors", response_model=ListPage[schemas.ErrorGroup], tags=["Errors"],
            summary="Failures grouped by their normalised error")
def errors(db: Db, caller: TestsReader, page: Page, project_id: ProjectId = None,
           since: datetime | None = Query(None, description="Default: 30 days ago")):
    """Numbers, ids, temporary paths and timestamps are stripped from messages; stack frames
    are kept by file and function. Most frequent first."""
    if since is not None and since.tzinfo is not None:
        from redline.server.kit.clock import parse_iso

        since = parse_iso(since.isoformat())
    return service.error_list(db, caller, project_id, since, page)


@router.get("/projects/{project_id}/trends", response_model=schemas.Trends, tags=["Projects"],
            summary="Pass rate, counts, duration and flaky count over time")
def trends(project_id: str, db: Db, caller: RunsReader,
           group_by: Annotated[Literal["day", "run"], Query(alias="groupBy")] = "day",
           branch: Annotated[str | None, Query(max_length=255)] = None,
           days: Annotated[int, Query(ge=1, le=365)] = 30):
    return service.trends(db, caller, project_id, group_by, branch, days)


@router.get("/runs/{run_id}/compare", response_model=schemas.Comparison, tags=["Runs"],
            summary="Compare a run with a base run")
def compare(run_id: str, db: Db, caller: RunsReader,
            base: Annotated[str | None, Query(min_length=1, max_length=40)] = None):
    """New failures, fixed tests, still failing, new and removed tests. Without `base`: the
    previous completed run of the run's branch, else (a new branch) the default branch's
    newest earlier run; `baseReason` says which."""
    return service.compare(db, caller, run_id, base)
