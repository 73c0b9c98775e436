"""Plans: create, list, read, change, delete; codeVersion and If-Match; the 9 statuses;
secret env values sealed at rest and never returned."""

from __future__ import annotations

from sqlalchemy import select

from redline.server.tables import plans
from tests.executions.conftest import make_plan
from tests.support import live


def test_a_plan_is_created_ready_with_code_version_1(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, command=["pytest", "-q"],
                         reportPaths=["report.xml"])
        assert plan["codeVersion"] == 1
        assert plan["status"] == "ready"
        assert plan["timeoutSeconds"] == 1800 and plan["queueTimeoutSeconds"] == 3600
        assert plan["maxConcurrentRuns"] == 1 and plan["sandbox"] == "auto"
        assert plan["network"] is False
        assert plan["id"].startswith("plan_")
        assert client.get(f"/api/plans/{plan['id']}").json() == plan
        listed = client.get("/api/plans", params={"projectId": tenant.project_id}).json()
        assert [p["id"] for p in listed["data"]] == [plan["id"]] and listed["total"] == 1


def test_a_plan_without_a_command_is_a_draft(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/plans", json={"projectId": tenant.project_id,
                                                   "name": "later"})
        assert response.status_code == 201
        plan = response.json()
        assert plan["status"] == "draft"
        run = client.post(f"/api/plans/{plan['id']}/runs", json={})
        assert run.status_code == 409 and run.json()["error"]["details"]["reason"] == "draft"


def test_a_shell_string_is_refused_as_command(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/plans", json={"projectId": tenant.project_id,
                                                   "name": "x", "command": "pytest -q"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_changes_bump_code_version_and_a_stale_if_match_is_412(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        path = f"/api/plans/{plan['id']}"
        renamed = client.patch(path, json={"name": "renamed"}, headers={"If-Match": "1"})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["codeVersion"] == 1  # a name is not what the plan runs
        changed = client.patch(path, json={"command": ["false"]}, headers={"If-Match": "1"})
        assert changed.json()["codeVersion"] == 2
        stale = client.patch(path, json={"command": ["true"]}, headers={"If-Match": "1"})
        assert stale.status_code == 412
        error = stale.json()["error"]
        assert error["code"] == "PRECONDITION_FAILED"
        assert error["details"]["current"] == 2 and error["details"]["sent"] == 1
        assert "fetch" in error["nextAction"].lower()
        in_body = client.patch(path, json={"timeoutSeconds": 60, "codeVersion": 1})
        assert in_body.status_code == 412
        fresh = client.patch(path, json={"timeoutSeconds": 60, "codeVersion": 2})
        assert fresh.json()["codeVersion"] == 3 and fresh.json()["timeoutSeconds"] == 60
        assert client.get(path).json()["command"] == ["false"]


def test_limits_and_schedule_are_validated(tenant):
    with tenant.as_user() as client:
        for bad in ({"timeoutSeconds": 21601}, {"schedule": "every day"},
                    {"sandbox": "docker"}, {"maxConcurrentRuns": 0},
                    {"source": {"path": "/a", "git": "/b"}}, {"env": {"1BAD": "x"}}):
            response = client.post("/api/plans", json={"projectId": tenant.project_id,
                                                       "name": "x", "command": ["true"],
                                                       **bad})
            assert response.status_code == 400, (bad, response.text)
        plan = make_plan(client, tenant.project_id, schedule="*/5 * * * *")
        assert plan["schedule"] == "*/5 * * * *" and plan["nextRunAt"].endswith("Z")


def test_secret_env_values_are_sealed_and_never_returned(server, tenant):
    secret = "s3cr3t-value-" + tenant.team_id
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, env={
            "PLAIN": "visible", "TOKEN": {"value": secret, "secret": True}})
        assert plan["env"] == {"PLAIN": {"value": "visible", "secret": False},
                               "TOKEN": {"value": None, "secret": True}}
        for response in (client.get(f"/api/plans/{plan['id']}"),
                         client.get("/api/plans", params={"projectId": tenant.project_id})):
            assert secret not in response.text
        # sent back as read (no value): the stored secret is kept
        kept = client.patch(f"/api/plans/{plan['id']}", json={"env": plan["env"]})
        assert kept.status_code == 200, kept.text
        assert secret not in kept.text
    with server.engine.connect() as conn:
        stored = conn.execute(select(plans.c.env).where(plans.c.id == plan["id"])).scalar()
    assert secret not in str(stored)
    assert stored["TOKEN"]["sealed"].startswith("rlsb1.")


def test_only_admins_write_plans_and_other_tenants_see_nothing(tenant, other_tenant):
    token, _ = live.add_member(tenant, "member")
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
    with tenant.server.client(Authorization=f"Bearer {token}") as member:
        assert member.get(f"/api/plans/{plan['id']}").status_code == 200
        refused = member.patch(f"/api/plans/{plan['id']}", json={"name": "x"})
        assert refused.status_code == 403
        assert refused.json()["error"]["details"]["required"] == ["project:admin"]
    with other_tenant.as_user() as other:
        for response in (other.get(f"/api/plans/{plan['id']}"),
                         other.patch(f"/api/plans/{plan['id']}", json={"name": "x"}),
                         other.delete(f"/api/plans/{plan['id']}"),
                         other.post(f"/api/plans/{plan['id']}/runs", json={})):
            assert response.status_code == 404, response.text
    with tenant.as_key() as ci:  # the default CI key: no project:admin
        assert ci.post("/api/plans", json={"name": "x", "command": ["true"]}).status_code \
            == 403


def test_a_deleted_plan_is_gone_and_its_queued_runs_cancelled(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = client.post(f"/api/plans/{plan['id']}/runs", json={}).json()
        assert client.delete(f"/api/plans/{plan['id']}").status_code == 200
        assert client.get(f"/api/plans/{plan['id']}").status_code == 404
        after = client.get(f"/api/runs/{run['id']}").json()
        assert after["status"] == "cancelled" and after["cancelReason"] == "plan_deleted"
