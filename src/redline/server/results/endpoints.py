"""Test results and test suites."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from redline.server.auth import Principal
from redline.server.deps import Db, rate_limited
from redline.server.kit.pagination import Page
from redline.server.results import schemas, service
from redline.server.schemas import ERROR_RESPONSES, ListPage

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
Reader = Annotated[Principal, Depends(rate_limited("tests-read"))]
Writer = Annotated[Principal, Depends(rate_limited("tests-write"))]
Id = Annotated[str | None, Query(max_length=40)]


@router.post("/tests", response_model=schemas.TestCreated, status_code=201, tags=["Tests"],
             summary="Report one test result")
def create_test(body: schemas.TestCreate, db: Db, caller: Writer):
    """Into a running run. The result joins its test case (project + file + full title +
    variant), created on first sight."""
    return service.create_result(db, caller, body)


@router.post("/runs/{run_id}/tests/batch", response_model=schemas.BatchCreated,
             status_code=201, tags=["Tests"], summary="Report up to 1,000 results at once")
def create_batch(run_id: str, body: schemas.TestBatch, db: Db, caller: Writer):
    """One transaction: every result is stored, or (on any error) none."""
    return service.create_batch(db, caller, run_id, body.tests)


@router.get("/tests", response_model=ListPage[schemas.TestListItem], tags=["Tests"],
            summary="List test results")
def list_tests(db: Db, caller: Reader, page: Page,
               project_id: Annotated[Id, Query(alias="projectId")] = None,
               run_id: Annotated[Id, Query(alias="runId")] = None,
               status: Literal["passed", "failed", "skipped", "flaky"] | None = None,
               search: Annotated[str | None, Query(max_length=500, description="In the full "
                                                   "title or file path")] = None):
    return service.list_results(db, caller, project_id, run_id, status, search, page)


@router.get("/tests/{test_id}", response_model=schemas.TestDetail, tags=["Tests"],
            summary="Get a test result")
def get_test(test_id: str, db: Db, caller: Reader):
    return service.get_result(db, caller, test_id)


@router.get("/tests/{test_id}/steps", response_model=schemas.StepList, tags=["Tests"],
            summary="A test result's steps")
def get_steps(test_id: str, db: Db, caller: Reader):
    """Actions, assertions, hooks and fixtures with durations and statuses; a step may hold
    steps."""
    return service.get_steps(db, caller, test_id)


@router.post("/test-suites", response_model=schemas.Suite, status_code=201,
             tags=["Test suites"], summary="Create or find a suite",
             responses={200: {"model": schemas.Suite, "description": "It existed already"}})
def create_suite(body: schemas.SuiteCreate, response: Response, db: Db, caller: Writer):
    """Upserted by (run, title, file, parent): the same suite twice is one suite (200)."""
    suite, created = service.upsert_suite(db, caller, body)
    if not created:
        response.status_code = 200
    return suite


@router.get("/test-suites", response_model=schemas.SuiteTree, tags=["Test suites"],
            summary="A run's suite tree")
def list_suites(db: Db, caller: Reader,
                run_id: Annotated[str, Query(alias="runId", min_length=1, max_length=40)],
                project_id: Annotated[Id, Query(alias="projectId")] = None):
    return service.suite_tree(db, caller, run_id, project_id)
