"""Runs, test results, batches and suites with the reference's paths and shapes."""

from __future__ import annotations

from sqlalchemy import func, select

from redline.server.tables import test_results

RUN = {"status": "running", "branch": "feature/login-flow", "commitSha": "a1b2c3d4e5f6",
       "commitMessage": "Add login flow tests", "commitAuthor": "jane@example.com",
       "ciProvider": "github-actions", "ciBuildId": "run-12345",
       "ciBuildUrl": "https://github.com/org/repo/actions/runs/12345",
       "playwrightVersion": "1.52.0", "workers": 4, "browser": "chromium", "os": "linux",
       "viewport": "1280x720", "hostname": "ci-runner-01", "runTitle": "Login Flow Tests",
       "tags": ["smoke", "login"], "grepPatterns": ["@smoke"]}


def result(title: str, status: str = "passed", **extra) -> dict:
    return {"title": title, "fullTitle": f"Auth > Login Page > {title}",
            "filePath": "tests/auth/login.spec.ts", "status": status, "duration": 100, **extra}


def test_a_run_from_start_to_finish(tenant):
    with tenant.as_key() as client:
        created = client.post("/api/runs", json=RUN)
        assert created.status_code == 201
        run = created.json()
        assert run["id"].startswith("run_") and run["projectId"] == tenant.project_id
        assert {k: run[k] for k in RUN} == RUN
        assert run["totalTests"] == 0 and run["passRate"] == 0.0
        for title, status in [("a", "passed"), ("b", "passed"), ("c", "failed"),
                              ("d", "skipped")]:
            assert client.post("/api/tests", json={"runId": run["id"],
                                                   **result(title, status)}).status_code == 201
        client.post("/api/tests", json={"runId": run["id"], **result("e", "passed"),
                                        "isFlaky": True, "retries": 1, "attempt": 2})
        done = client.patch(f"/api/runs/{run['id']}", json={"status": "passed",
                                                            "duration": 245000})
        assert done.status_code == 200
        assert set(done.json()) == {"id", "status", "totalTests", "passedTests", "failedTests",
                                    "skippedTests", "flakyTests", "duration", "updatedAt"}
        fetched = client.get(f"/api/runs/{run['id']}").json()
    # a run with a failed result is failed, whatever the client asked for
    assert fetched["status"] == "failed"
    assert (fetched["totalTests"], fetched["passedTests"], fetched["failedTests"],
            fetched["skippedTests"], fetched["flakyTests"]) == (5, 2, 1, 1, 1)
    assert fetched["passRate"] == 40.0 and fetched["duration"] == 245000
    assert fetched["completedAt"]


def test_counts_sent_must_agree_with_the_results(tenant):
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        client.post("/api/tests", json={"runId": run["id"], **result("a")})
        wrong = client.patch(f"/api/runs/{run['id']}", json={"totalTests": 7})
        right = client.patch(f"/api/runs/{run['id']}", json={"totalTests": 1,
                                                             "passedTests": 1})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["details"]["reason"] == "disagrees_with_results"
    assert right.status_code == 200


def test_a_run_reported_by_counts_alone(tenant):
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        done = client.patch(f"/api/runs/{run['id']}", json={
            "status": "failed", "totalTests": 142, "passedTests": 138, "failedTests": 3,
            "skippedTests": 0, "flakyTests": 1, "duration": 245000}).json()
        summary = client.get("/api/runs", params={"status": "failed"}).json()["data"][0]
    assert done["totalTests"] == 142 and done["status"] == "failed"
    assert summary["passRate"] == 97.18


def test_a_completed_run_takes_no_more_results(tenant):
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "passed"}).json()
        response = client.post("/api/tests", json={"runId": run["id"], **result("late")})
        restart = client.patch(f"/api/runs/{run['id']}", json={"status": "running"})
    assert response.status_code == 409
    assert response.json()["error"]["details"]["reason"] == "run_completed"
    assert restart.status_code == 409


def test_sharded_runs_join_and_complete_with_the_last_shard(tenant):
    with tenant.as_key() as client:
        first = client.post("/api/runs", json={"status": "running", "ciBuildId": "b-9",
                                               "shardCurrent": 1, "shardTotal": 2})
        second = client.post("/api/runs", json={"status": "running", "ciBuildId": "b-9",
                                                "shardCurrent": 2, "shardTotal": 2})
        assert first.status_code == 201 and second.status_code == 200
        run_id = first.json()["id"]
        assert second.json()["id"] == run_id
        client.post(f"/api/runs/{run_id}/tests/batch", json={"tests": [result("s1")]})
        client.post(f"/api/runs/{run_id}/tests/batch", json={"tests": [result("s2")]})
        one = client.patch(f"/api/runs/{run_id}", json={"status": "passed",
                                                        "shardCurrent": 1}).json()
        assert one["status"] == "running"
        both = client.patch(f"/api/runs/{run_id}", json={"status": "passed",
                                                         "shardCurrent": 2}).json()
    assert both["status"] == "passed" and both["totalTests"] == 2


def test_a_batch_of_a_thousand_is_one_transaction(server, tenant):
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        tests = [result(f"t{i}", "failed" if i % 10 == 0 else "passed") for i in range(1000)]
        created = client.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": tests})
        assert created.status_code == 201 and created.json()["created"] == 1000
        over = client.post(f"/api/runs/{run['id']}/tests/batch",
                           json={"tests": tests + [result("one too many")]})
        assert over.status_code == 400
        broken = tests[:500] + [{**result("bad"), "status": "exploded"}]
        assert client.post(f"/api/runs/{run['id']}/tests/batch",
                           json={"tests": broken}).status_code == 400
        fetched = client.get(f"/api/runs/{run['id']}").json()
    assert fetched["totalTests"] == 1000 and fetched["failedTests"] == 100
    with server.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(test_results).where(
            test_results.c.run_id == run["id"])).scalar_one() == 1000


def test_a_test_result_with_nested_steps_and_its_error(tenant):
    steps = [{"title": "Before Hooks", "category": "hook", "status": "passed", "duration": 120},
             {"title": "login", "category": "test.step", "status": "failed", "duration": 900,
              "steps": [{"title": "locator.fill('#email')", "category": "action",
                         "status": "passed", "duration": 45},
                        {"title": "expect(locator).toBeVisible()", "category": "assertion",
                         "status": "failed", "duration": 30000,
                         "error": {"message": "Timed out waiting for selector '.dashboard'"}}]}]
    error = {"message": "Timed out waiting for selector '.dashboard'",
             "stack": "Error: Timed out...\n at login.spec.ts:42:5", "expected": "visible",
             "actual": "hidden"}
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        created = client.post("/api/tests", json={
            "runId": run["id"], "projectId": tenant.project_id,
            **result("should submit login form", "failed"), "lineNumber": 35, "retries": 2,
            "attempt": 3, "tags": ["@smoke", "@auth"], "steps": steps, "error": error,
            "annotations": [{"type": "slow", "description": "Includes network wait"}],
            "stdout": "out", "stderr": "err"}).json()
        detail = client.get(f"/api/tests/{created['id']}").json()
        listed = client.get(f"/api/tests/{created['id']}/steps").json()
        found = client.get("/api/tests", params={"runId": run["id"], "status": "failed",
                                                 "search": "submit"}).json()
    assert created["id"].startswith("test_") and created["testCaseId"].startswith("tc_")
    assert detail["error"] == error and detail["retries"] == 2 and detail["lineNumber"] == 35
    assert detail["tags"] == ["@smoke", "@auth"] and detail["stdout"] == "out"
    assert listed["data"][1]["steps"][1]["error"]["message"].startswith("Timed out")
    assert [t["id"] for t in found["data"]] == [created["id"]]


def test_the_same_test_in_two_runs_is_one_test_case(tenant):
    with tenant.as_key() as client:
        ids = []
        for _ in range(2):
            run = client.post("/api/runs", json={"status": "running"}).json()
            ids.append(client.post("/api/tests", json={"runId": run["id"],
                                                       **result("stable")}).json())
        other_variant = client.post("/api/tests", json={
            "runId": run["id"], **result("stable"), "variant": "firefox"}).json()
    assert ids[0]["testCaseId"] == ids[1]["testCaseId"] != other_variant["testCaseId"]


def test_file_paths_are_normalised_for_identity(tenant):
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        a = client.post("/api/tests", json={"runId": run["id"], **result("p"),
                                            "filePath": "./tests\\auth\\login.spec.ts"}).json()
        b = client.post("/api/tests", json={"runId": run["id"], **result("p")}).json()
    assert a["testCaseId"] == b["testCaseId"]


def test_suites_upsert_and_nest(tenant):
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        auth = client.post("/api/test-suites", json={"runId": run["id"], "title": "Auth",
                                                     "filePath": "tests/auth/login.spec.ts"})
        again = client.post("/api/test-suites", json={"runId": run["id"], "title": "Auth",
                                                      "filePath": "tests/auth/login.spec.ts"})
        login = client.post("/api/test-suites", json={
            "runId": run["id"], "title": "Login Page", "filePath": "tests/auth/login.spec.ts",
            "parentSuiteId": auth.json()["id"]}).json()
        tree = client.get("/api/test-suites", params={"runId": run["id"],
                                                      "projectId": tenant.project_id}).json()
    assert auth.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == auth.json()["id"]
    assert tree == {"data": [{"id": auth.json()["id"], "title": "Auth",
                              "filePath": "tests/auth/login.spec.ts", "parentSuiteId": None,
                              "children": [{"id": login["id"], "title": "Login Page",
                                            "filePath": "tests/auth/login.spec.ts",
                                            "parentSuiteId": auth.json()["id"],
                                            "children": []}]}]}


def test_deleting_a_run_removes_its_results_and_suites(server, tenant):
    with tenant.as_key() as ci:
        run = ci.post("/api/runs", json={"status": "running"}).json()
        ci.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": [
            {**result("x"), "suitePath": ["Auth"]}]})
        assert ci.delete(f"/api/runs/{run['id']}").status_code == 403  # CI keys cannot
    with tenant.as_user() as owner:
        deleted = owner.delete(f"/api/runs/{run['id']}")
        assert deleted.json() == {"success": True, "message": "Run deleted successfully"}
        assert owner.get(f"/api/runs/{run['id']}").status_code == 404
    with server.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(test_results).where(
            test_results.c.run_id == run["id"])).scalar_one() == 0


def test_runs_list_filters_by_status_and_branch(tenant):
    with tenant.as_key() as client:
        client.post("/api/runs", json={"status": "passed", "branch": "main"})
        client.post("/api/runs", json={"status": "failed", "branch": "main"})
        client.post("/api/runs", json={"status": "failed", "branch": "dev"})
        listed = client.get("/api/runs", params={"status": "failed", "branch": "main"}).json()
        bad = client.get("/api/runs", params={"status": "exploded"})
    assert listed["total"] == 1 and listed["data"][0]["branch"] == "main"
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "status"


def test_a_person_names_the_project(tenant):
    with tenant.as_user() as client:
        missing = client.get("/api/runs")
        named = client.get("/api/runs", params={"projectId": tenant.project_id})
    assert missing.status_code == 400
    assert missing.json()["error"]["details"]["field"] == "projectId"
    assert named.status_code == 200
