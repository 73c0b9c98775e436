"""An executed run is a run: `GET /api/runs/{id}` and the items of `GET /api/runs` carry its
executed-run fields (null for a reported run), and the list filters by status and plan."""

from __future__ import annotations

from tests.executions.conftest import make_plan, trigger

EXECUTED_FIELDS = ("planId", "queuedAt", "startedAt", "finishedAt", "exitCode", "runnerId",
                   "blockedReason", "cancelReason", "attempt")


def test_a_run_and_the_runs_list_carry_the_executed_run_fields(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, maxConcurrentRuns=3)
        queued = trigger(client, plan["id"], branch="main", source="cli")
        run = client.get(f"/api/runs/{queued['id']}").json()
        assert run == queued | {"updatedAt": run["updatedAt"]}
        assert run["status"] == "queued" and run["planId"] == plan["id"]
        assert run["queuedAt"].endswith("Z") and run["attempt"] == 1
        assert run["startedAt"] is None and run["exitCode"] is None
        assert run["runnerId"] is None and run["cancelReason"] is None
        listed = client.get("/api/runs", params={"projectId": tenant.project_id}).json()
        item = next(r for r in listed["data"] if r["id"] == queued["id"])
        assert {name: item[name] for name in EXECUTED_FIELDS} == \
            {name: run[name] for name in EXECUTED_FIELDS}


def test_a_reported_run_has_the_executed_run_fields_null(tenant):
    with tenant.as_key() as ci:
        reported = ci.post("/api/runs", json={"status": "passed"}).json()
        run = ci.get(f"/api/runs/{reported['id']}").json()
        assert all(run[name] is None for name in EXECUTED_FIELDS)
        assert run["cancelRequested"] is False
        item = ci.get("/api/runs").json()["data"][0]
        assert item["id"] == reported["id"]
        assert all(item[name] is None for name in EXECUTED_FIELDS)


def test_the_runs_list_filters_by_an_executed_status_and_by_plan(tenant):
    with tenant.as_user() as client:
        first = make_plan(client, tenant.project_id, maxConcurrentRuns=5)
        second = make_plan(client, tenant.project_id)
        cancelled = trigger(client, first["id"])
        client.post(f"/api/runs/{cancelled['id']}/cancel")
        queued = trigger(client, first["id"])
        other = trigger(client, second["id"])
        reported = client.post("/api/runs", json={"projectId": tenant.project_id,
                                                   "status": "passed"}).json()

        def ids(**params) -> list[str]:
            page = client.get("/api/runs", params={"projectId": tenant.project_id, **params})
            assert page.status_code == 200, page.text
            assert page.json()["total"] == len(page.json()["data"])
            return [r["id"] for r in page.json()["data"]]

        assert ids(status="queued") == [other["id"], queued["id"]]
        assert ids(status="cancelled") == [cancelled["id"]]
        assert ids(status="blocked") == []
        assert ids(planId=first["id"]) == [queued["id"], cancelled["id"]]
        assert ids(planId=first["id"], status="queued") == [queued["id"]]
        assert ids(status="passed") == [reported["id"]]
        bad = client.get("/api/runs", params={"projectId": tenant.project_id,
                                              "status": "sleeping"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"


def test_the_former_execution_endpoint_is_gone(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        assert client.get(f"/api/runs/{run['id']}/execution").status_code == 404
