"""A run event names the run as a person would (`title`), links to its dashboard page
(`url`, from the server's public address) and names its failing tests, the first 20 with a
count of the others: a receiver that posts it to a chat needs no second request. Delivered
to a real receiver on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from redline.server.webhooks.service import FAILING_TESTS_IN_PAYLOAD, with_links
from redline.server.worker.runner import drain
from tests.webhooks.test_webhooks import hooked, receiver, settings_of  # noqa: F401


def subscribe(client, tenant, url: str, events: list[str]) -> dict:
    created = client.post("/api/webhooks", json={"projectId": tenant.project_id, "url": url,
                                                 "events": events})
    assert created.status_code == 201, created.text
    return created.json()


def finish_run(client, failing: int, passing: int = 1, **fields) -> dict:
    run = client.post("/api/runs", json={"status": "running", **fields}).json()
    tests = [{"title": f"fails {i:02d}", "fullTitle": f"Checkout > fails {i:02d}",
              "filePath": "tests/checkout.spec.ts", "status": "failed", "duration": 1}
             for i in range(failing)]
    tests += [{"title": f"passes {i}", "fullTitle": f"Checkout > passes {i}",
               "status": "passed", "duration": 1} for i in range(passing)]
    assert client.post(f"/api/runs/{run['id']}/tests/batch",
                       json={"tests": tests}).status_code == 201
    client.patch(f"/api/runs/{run['id']}", json={"status": "passed"})
    return run


def delivered(http_receiver) -> list[dict]:
    return [json.loads(request["body"]) for request in http_receiver.requests]


def test_a_failed_run_event_has_its_title_link_and_failing_tests(hooked, receiver):  # noqa: F811
    srv, tenant = hooked
    with tenant.as_key() as client, tenant.as_user() as admin:
        subscribe(admin, tenant, receiver.url, ["run.failed"])
        run = finish_run(client, failing=25, runTitle="Nightly e2e", branch="main",
                         ciBuildId="4711")
    drain(srv.engine, settings_of(srv))
    [event] = delivered(receiver)
    data = event["data"]
    assert event["type"] == "run.failed" and data["runId"] == run["id"]
    assert data["title"] == "Nightly e2e" and data["runTitle"] == "Nightly e2e"
    assert (data["branch"], data["ciBuildId"]) == ("main", "4711")
    public_url = settings_of(srv).resolved_public_url
    assert public_url.startswith("http://127.0.0.1:")
    assert data["url"] == f"{public_url}/runs/{run['id']}"
    assert FAILING_TESTS_IN_PAYLOAD == 20
    assert [t["fullTitle"] for t in data["failingTests"]] == [
        f"Checkout > fails {i:02d}" for i in range(20)]
    assert data["failingTests"][0]["filePath"] == "tests/checkout.spec.ts"
    assert data["failingTests"][0]["testId"].startswith("test_")
    assert (data["failedTests"], data["failingTestsOmitted"]) == (25, 5)


def test_a_run_without_a_title_is_named_by_its_ci_build_or_branch(hooked, receiver):  # noqa: F811
    srv, tenant = hooked
    with tenant.as_key() as client, tenant.as_user() as admin:
        subscribe(admin, tenant, receiver.url, ["run.completed"])
        built = finish_run(client, failing=0, ciBuildId="88", branch="release/2.0")
        branch_only = finish_run(client, failing=1, branch="feature/x", commitSha="abcdef123456")
    drain(srv.engine, settings_of(srv))
    by_run = {e["data"]["runId"]: e["data"] for e in delivered(receiver)}
    assert by_run[built["id"]]["title"] == "CI build 88 on release/2.0"
    assert by_run[built["id"]]["failingTests"] == []
    assert by_run[built["id"]]["failingTestsOmitted"] == 0
    assert by_run[branch_only["id"]]["title"] == "feature/x at abcdef12"
    assert [t["fullTitle"] for t in by_run[branch_only["id"]]["failingTests"]] == [
        "Checkout > fails 00"]
    assert all(not data["title"].startswith("run_") for data in by_run.values())


def test_each_event_links_to_the_page_it_is_about():
    base = "https://redline.example.com"
    run_event = {"type": "run.completed", "data": {"runId": "run_1"}}
    flaky = {"type": "test.flaky", "data": {"testCaseId": "tc_1", "runId": "run_1"}}
    quarantined = {"type": "test.quarantined", "data": {"testCaseId": "tc_2"}}
    ping = {"type": "ping", "data": {}}
    assert with_links(run_event, base)["data"]["url"] == f"{base}/runs/run_1"
    # a test event links its case, even when it names the run that made it flaky
    assert with_links(flaky, base)["data"]["url"] == f"{base}/cases/tc_1"
    assert with_links(quarantined, base)["data"]["url"] == f"{base}/cases/tc_2"
    assert with_links(ping, base) == ping
    assert "url" not in run_event["data"]  # the stored payload is left as it is
