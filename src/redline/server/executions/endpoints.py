"""Executed runs (plans run on workers, DESIGN.md section 8): not in this version.

The endpoints exist so clients get the catalog's honest answer, UNSUPPORTED (501, exit 7),
instead of a 404 that would look like a wrong id.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from redline.server.deps import rate_limited
from redline.server.http_errors import ApiError
from redline.server.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/api", tags=["Executions"], responses={
    **ERROR_RESPONSES, 501: ERROR_RESPONSES[500] | {"description": "UNSUPPORTED"}})


def _unsupported() -> ApiError:
    return ApiError("UNSUPPORTED", "Executed runs (plans) are not available in this version "
                    "of Redline: report results from CI with `redline upload` or `redline exec`",
                    {"feature": "executions"})


@router.get("/plans", summary="List plans (not in this version)")
def list_plans(_caller=Depends(rate_limited("runs-read"))):
    raise _unsupported()


@router.post("/plans", summary="Create a plan (not in this version)")
def create_plan(_caller=Depends(rate_limited("runs-write"))):
    raise _unsupported()


@router.post("/plans/{plan_id}/trigger", summary="Trigger a plan (not in this version)")
def trigger_plan(plan_id: str, _caller=Depends(rate_limited("runs-write"))):
    raise _unsupported()
