"""`branch` is bounded (255 characters, as runs keep it) wherever it filters: history and
trends answer VALIDATION_ERROR naming it, on both databases, never 500 (issue 22)."""

from __future__ import annotations

import pytest

LONG = "b" * 256


@pytest.mark.parametrize("branch", [LONG, "é" * 256, "b" * 10_000])
def test_history_and_trends_refuse_a_branch_longer_than_a_run_keeps(tenant, branch):
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running", "runTitle": "b"}).json()
        test = client.post("/api/tests", json={
            "runId": run["id"], "title": "t", "fullTitle": "a t", "status": "passed",
            "duration": 1}).json()
        answers = [client.get(f"/api/tests/{test['id']}/history", params={"branch": branch}),
                   client.get(f"/api/projects/{tenant.project_id}/trends",
                              params={"branch": branch})]
        fine = [client.get(f"/api/tests/{test['id']}/history", params={"branch": "b" * 255}),
                client.get(f"/api/projects/{tenant.project_id}/trends",
                           params={"branch": "b" * 255})]
    for response in answers:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and error["details"]["field"] == "branch"
    assert [r.status_code for r in fine] == [200, 200]
