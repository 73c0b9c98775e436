"""Runs of a plan without processes: the queue, CONFLICT, cancel, signals, credits, runner
tokens, the runner API's leases, claims that hand a run out once, and the sweep of runs
whose runner was lost."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx

from redline.server.db import WRITE
from redline.server.executions import service, tasks
from redline.server.kit.clock import utcnow
from tests.executions.conftest import make_plan, runner_token, trigger
from tests.support import live


def _runner(server, token: str) -> httpx.Client:
    return server.client(Authorization=f"Bearer {token}")


def test_a_triggered_run_is_queued_and_a_second_is_a_conflict(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"], branch="main", source="cli")
        assert run["status"] == "queued" and run["planId"] == plan["id"]
        assert run["source"] == "cli" and run["queuedAt"].endswith("Z")
        assert run["branch"] == "main" and run["id"].startswith("run_")
        assert client.get(f"/api/plans/{plan['id']}").json()["status"] == "queued"
        second = client.post(f"/api/plans/{plan['id']}/runs", json={})
        assert second.status_code == 409
        error = second.json()["error"]
        assert error["code"] == "CONFLICT" and error["retryable"] is True
        assert error["details"]["reason"] == "run_in_flight"
        assert error["details"]["runId"] == run["id"]
        # the run is also a run like any other
        assert client.get(f"/api/runs/{run['id']}").json()["status"] == "queued"


def test_max_concurrent_runs_allows_more(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, maxConcurrentRuns=2)
        trigger(client, plan["id"])
        trigger(client, plan["id"])
        assert client.post(f"/api/plans/{plan['id']}/runs", json={}).status_code == 409


def test_members_trigger_with_executions_write_and_viewers_cannot(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, maxConcurrentRuns=5)
    member, _ = live.add_member(tenant, "member")
    viewer, _ = live.add_member(tenant, "viewer")
    with tenant.server.client(Authorization=f"Bearer {member}") as client:
        assert client.post(f"/api/plans/{plan['id']}/runs", json={}).status_code == 202
    with tenant.server.client(Authorization=f"Bearer {viewer}") as client:
        refused = client.post(f"/api/plans/{plan['id']}/runs", json={})
        assert refused.status_code == 403
        assert refused.json()["error"]["details"]["required"] == ["executions:write"]


def test_triggering_takes_an_idempotency_key(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        headers = {"Idempotency-Key": "trigger-" + plan["id"]}
        first = client.post(f"/api/plans/{plan['id']}/runs", json={}, headers=headers)
        again = client.post(f"/api/plans/{plan['id']}/runs", json={}, headers=headers)
        assert first.status_code == again.status_code == 202
        assert again.headers.get("idempotent-replayed") == "true"
        assert first.json()["id"] == again.json()["id"]


def test_cancel_of_a_queued_run_is_immediate_and_idempotent(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        for _ in range(2):
            cancelled = client.post(f"/api/runs/{run['id']}/cancel")
            assert cancelled.status_code == 200
            assert cancelled.json()["status"] == "cancelled"
        # a cancelled run does not become the plan's verdict
        assert client.get(f"/api/plans/{plan['id']}").json()["status"] == "ready"
        signal = client.post(f"/api/runs/{run['id']}/signal", json={"signal": "INT"})
        assert signal.status_code == 409
        assert signal.json()["error"]["details"]["reason"] == "finished"


def test_signals_before_the_process_started_and_unknown_names(tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        early = client.post(f"/api/runs/{run['id']}/signal", json={"signal": "USR1"})
        assert early.status_code == 409
        assert early.json()["error"]["details"]["reason"] == "not_started"
        bad = client.post(f"/api/runs/{run['id']}/signal", json={"signal": "WINCH"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"


def test_credits_spent_is_402_and_usage_counts_real_time(server, tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, maxConcurrentRuns=5)
        usage = client.get(f"/api/teams/{tenant.team_id}/usage").json()
        assert usage["budgetSeconds"] is None and usage["usedSeconds"] == 0
        token = runner_token(tenant)
        run = trigger(client, plan["id"])
        with _runner(server, token) as runner:
            job = runner.post("/api/runner/claim", json={"runnerId": "r1"}).json()
            assert job["runId"] == run["id"]
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            # it started an hour ago and ran for 90 s
            started = utcnow() - timedelta(hours=1)
            service.repo.update_run(conn, run["id"], started_at=started,
                                    finished_at=started + timedelta(seconds=90))
        usage = client.get(f"/api/teams/{tenant.team_id}/usage").json()
        if utcnow().day == 1 and utcnow().hour == 0:
            return  # (an hour ago was last month)
        assert usage["usedSeconds"] == 90
        assert usage["projects"] == [{"projectId": tenant.project_id, "usedSeconds": 90}]
        budget = client.put(f"/api/teams/{tenant.team_id}/execution-budget",
                            json={"executionBudgetSeconds": 60})
        assert budget.status_code == 200 and budget.json()["leftSeconds"] == 0
        spent = client.post(f"/api/plans/{plan['id']}/runs", json={})
        assert spent.status_code == 402
        error = spent.json()["error"]
        assert error["code"] == "INSUFFICIENT_CREDITS"
        assert "budget" in error["nextAction"].lower()
        client.put(f"/api/teams/{tenant.team_id}/execution-budget",
                   json={"executionBudgetSeconds": None})
        assert client.post(f"/api/plans/{plan['id']}/runs", json={}).status_code == 202


def test_a_queued_run_is_blocked_when_credits_run_out_before_a_runner_takes_it(server,
                                                                                  tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        client.put(f"/api/teams/{tenant.team_id}/execution-budget",
                   json={"executionBudgetSeconds": 0})
        with _runner(server, runner_token(tenant)) as runner:
            assert runner.post("/api/runner/claim", json={"runnerId": "r"}).status_code == 204
        after = client.get(f"/api/runs/{run['id']}").json()
        assert after["status"] == "blocked"
        assert after["blockedReason"] == "insufficient_credits"
        assert client.get(f"/api/plans/{plan['id']}").json()["status"] == "blocked"


def test_runner_tokens_are_shown_once_listed_masked_and_revocable(server, tenant,
                                                                  other_tenant):
    with tenant.as_user() as client:
        made = client.post("/api/runner-tokens", json={"teamId": tenant.team_id,
                                                       "name": "ci host"})
        assert made.status_code == 201
        token = made.json()["token"]
        assert token.startswith("rlr_")
        listed = client.get("/api/runner-tokens", params={"teamId": tenant.team_id}).json()
        assert token not in str(listed)
        assert listed["data"][0]["tokenMasked"].endswith(token[-4:])
        with _runner(server, token) as runner:
            assert runner.post("/api/runner/claim", json={"runnerId": "x"}).status_code == 204
        with other_tenant.as_user() as other:
            assert other.delete(f"/api/runner-tokens/{made.json()['id']}").status_code == 404
        assert client.delete(f"/api/runner-tokens/{made.json()['id']}").status_code == 200
        with _runner(server, token) as runner:
            refused = runner.post("/api/runner/claim", json={"runnerId": "x"})
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "AUTH_INVALID"
    member, _ = live.add_member(tenant, "member")
    with server.client(Authorization=f"Bearer {member}") as client:
        assert client.post("/api/runner-tokens", json={"teamId": tenant.team_id,
                                                       "name": "x"}).status_code == 403


def test_a_runner_serves_only_its_team(server, tenant, other_tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
    with _runner(server, runner_token(other_tenant)) as runner:
        assert runner.post("/api/runner/claim", json={"runnerId": "x"}).status_code == 204
        assert runner.post(f"/api/runner/runs/{run['id']}/heartbeat",
                           json={"leaseToken": "x"}).status_code == 409


def test_the_lease_log_and_finish_of_the_runner_api(server, tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, env={
            "SECRET": {"value": "hush-hush", "secret": True}, "PLAIN": "p"})
        run = trigger(client, plan["id"], env={"EXTRA": "e"})
        with _runner(server, runner_token(tenant)) as runner:
            job = runner.post("/api/runner/claim", json={"runnerId": "r1"}).json()
            assert job["env"] == {"SECRET": "hush-hush", "PLAIN": "p", "EXTRA": "e"}
            assert job["command"] == ["true"] and job["logOffset"] == 0
            base = f"/api/runner/runs/{run['id']}"
            lease = {"leaseToken": job["leaseToken"]}
            assert runner.post(f"{base}/heartbeat", json={**lease, "processStarted": True}) \
                .json() == {"cancel": False, "signals": [], "leaseSeconds": 30}
            assert client.post(f"/api/runs/{run['id']}/signal",
                               json={"signal": "SIGUSR1"}).status_code == 200
            assert runner.post(f"{base}/heartbeat", json=lease).json()["signals"] == ["USR1"]
            assert runner.post(f"{base}/log", json={**lease, "offset": 0,
                                                     "text": "héllo\n"}).json() \
                == {"nextOffset": 7}
            # a chunk sent again (its answer was lost) is stored once
            assert runner.post(f"{base}/log", json={**lease, "offset": 0,
                                                     "text": "héllo\nworld\n"}).json() \
                == {"nextOffset": 13}
            log = client.get(f"/api/runs/{run['id']}/log").json()
            assert log["text"] == "héllo\nworld\n" and log["complete"] is False
            tail = client.get(f"/api/runs/{run['id']}/log", params={"offset": 7}).json()
            assert tail["text"] == "world\n" and tail["nextOffset"] == 13
            assert runner.post(f"{base}/heartbeat", json={"leaseToken": "wrong"}) \
                .status_code == 409
            ended = runner.post(f"{base}/finish", json={**lease, "outcome": "exited",
                                                         "exitCode": 0,
                                                         "blockedReason": "no_report"})
            assert ended.status_code == 200, ended.text
            assert ended.json()["status"] == "blocked"  # no results: never passed
            assert ended.json()["blockedReason"] == "no_report"
            assert runner.post(f"{base}/finish", json={**lease, "outcome": "exited"}) \
                .status_code == 409
        log = client.get(f"/api/runs/{run['id']}/log").json()
        assert log["complete"] is True and "hush-hush" not in log["text"]


def test_two_runners_never_take_the_same_run(server, tenant):
    with tenant.as_user() as client:
        plans = [make_plan(client, tenant.project_id, maxConcurrentRuns=100)
                 for _ in range(2)]
        queued = {trigger(client, plan["id"])["id"] for plan in plans for _ in range(100)}
    token = runner_token(tenant)
    taken: dict[str, list[str]] = {"a": [], "b": []}

    def take(name: str) -> None:
        with _runner(server, token) as runner:
            while True:
                response = runner.post("/api/runner/claim", json={"runnerId": name})
                if response.status_code == 204:
                    return
                assert response.status_code == 200, response.text
                taken[name].append(response.json()["runId"])

    threads = [threading.Thread(target=take, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = taken["a"] + taken["b"]
    assert len(everything) == len(set(everything)) == 200
    assert set(everything) == queued
    assert taken["a"] and taken["b"]


def test_a_lost_runner_s_run_is_queued_again_once_then_failed(server, tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        token = runner_token(tenant)
        for attempt in (1, 2):
            with _runner(server, token) as runner:
                job = runner.post("/api/runner/claim", json={"runnerId": f"r{attempt}"})
                assert job.json()["runId"] == run["id"] and job.json()["attempt"] == attempt
            later = utcnow() + timedelta(seconds=31)
            with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                service.sweep(conn, later)
        after = client.get(f"/api/runs/{run['id']}").json()
        assert after["status"] == "failed" and after["cancelReason"] == "runner_lost"
        assert after["attempt"] == 2
        assert "runner was lost" in client.get(f"/api/runs/{run['id']}/log").json()["text"]
        assert client.get(f"/api/plans/{plan['id']}").json()["status"] == "unknown"


def test_a_run_past_its_queue_timeout_is_blocked(server, tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, queueTimeoutSeconds=1)
        run = trigger(client, plan["id"])
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            service.sweep(conn, utcnow() + timedelta(seconds=5))
        after = client.get(f"/api/runs/{run['id']}").json()
        assert after["status"] == "blocked" and after["blockedReason"] == "queue_timeout"


def test_a_schedule_fires_once_per_due_time_across_replicas(server, tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id, schedule="* * * * *",
                         maxConcurrentRuns=5)
    due = utcnow() + timedelta(minutes=1)
    results = []

    def replica() -> None:
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            results.append(service.fire_schedules(conn, due))

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    mine = [run_id for queued in results for run_id in queued
            if _plan_of(server, run_id) == plan["id"]]
    assert len(mine) == 1
    with tenant.as_user() as client:
        run = client.get(f"/api/runs/{mine[0]}").json()
        assert run["source"] == "schedule" and run["status"] == "queued"
        assert client.get(f"/api/plans/{plan['id']}").json()["nextRunAt"] > \
            due.isoformat()[:16]
    tasks.tick(server.engine)  # the loop's pass runs whole


def _plan_of(server, run_id: str) -> str:
    with server.engine.connect() as conn:
        return service.repo.get_run(conn, run_id).plan_id


def test_run_queued_and_run_started_are_webhook_events(server, tenant):
    with tenant.as_user() as client:
        hook = client.post("/api/webhooks", json={
            "projectId": tenant.project_id, "url": "https://93.184.216.34/hook",
            "events": ["run.queued", "run.started", "run.completed"]})
        assert hook.status_code == 201, hook.text
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        with _runner(server, runner_token(tenant)) as runner:
            job = runner.post("/api/runner/claim", json={"runnerId": "r"}).json()
            runner.post(f"/api/runner/runs/{run['id']}/finish",
                        json={"leaseToken": job["leaseToken"], "outcome": "cancelled"})
        deliveries = client.get(f"/api/webhooks/{hook.json()['id']}/deliveries").json()
        events = sorted(d["event"] for d in deliveries["data"])
        assert events == ["run.completed", "run.queued", "run.started"]
        started = next(d for d in deliveries["data"] if d["event"] == "run.started")
        assert started["payload"]["data"]["runId"] == run["id"]
        assert started["payload"]["data"]["runnerId"] == "r"


def test_a_run_being_cancelled_whose_runner_is_lost_is_cancelled_not_retried(server, tenant):
    with tenant.as_user() as client:
        plan = make_plan(client, tenant.project_id)
        run = trigger(client, plan["id"])
        with _runner(server, runner_token(tenant)) as runner:
            assert runner.post("/api/runner/claim", json={"runnerId": "r"}).status_code == 200
        assert client.post(f"/api/runs/{run['id']}/cancel").json()["cancelRequested"] is True
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            service.sweep(conn, utcnow() + timedelta(seconds=31))
        after = client.get(f"/api/runs/{run['id']}").json()
        assert after["status"] == "cancelled" and after["attempt"] == 1


def test_patch_team_sets_the_execution_budget(tenant):
    with tenant.as_user() as client:
        team = f"/api/teams/{tenant.team_id}"
        limited = client.patch(team, json={"executionBudgetSeconds": 3600})
        assert limited.status_code == 200, limited.text
        assert limited.json()["name"]  # unchanged
        usage = client.get(f"{team}/usage").json()
        assert usage["budgetSeconds"] == 3600 and usage["leftSeconds"] == 3600
        both = client.patch(team, json={"name": "renamed", "executionBudgetSeconds": None})
        assert both.json()["name"] == "renamed"
        assert client.get(f"{team}/usage").json()["budgetSeconds"] is None
        assert client.patch(team, json={}).status_code == 400
        assert client.patch(team, json={"executionBudgetSeconds": -1}).status_code == 400
    with tenant.as_key() as ci:
        assert ci.patch(f"/api/teams/{tenant.team_id}",
                        json={"executionBudgetSeconds": 1}).status_code == 403
