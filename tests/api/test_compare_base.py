"""Which run a run is compared with (`GET /api/runs/{id}/compare` without `base`): the
previous completed run of its branch; for a new branch (none of its own before it), the
default branch's newest earlier run (main, else master); and the answer says which
(`baseRunId`, `baseBranch`, `baseReason`, `baseTitle`). On SQLite and PostgreSQL."""

from __future__ import annotations

from tests.api.test_intelligence import report
from tests.support import live


def compare(client, run_id: str, **params) -> dict:
    response = client.get(f"/api/runs/{run_id}/compare", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def titles(items: list[dict]) -> list[str]:
    return [item["fullTitle"].split(" > ")[1] for item in items]


def test_a_new_branch_is_compared_with_the_default_branchs_latest_earlier_run(tenant):
    with tenant.as_key() as client:
        older_main = report(client, {"a": "failed", "b": "failed"}, commit="m0")
        main = report(client, {"a": "passed", "b": "failed"}, commit="m1")
        feature = report(client, {"a": "failed", "b": "passed"}, commit="f1",
                         branch="feature/login", finish="failed")
        later_main = report(client, {"a": "passed", "b": "passed"}, commit="m2")
        again = report(client, {"a": "failed", "b": "failed"}, commit="f2",
                       branch="feature/login", finish="failed")
        first = compare(client, feature["id"])
        second = compare(client, again["id"])
        asked = compare(client, again["id"], base=older_main["id"])
        main_first = compare(client, older_main["id"])
    # the branch has no run before it: main's newest run *before* it (not the later one)
    assert (first["baseRunId"], first["baseBranch"], first["baseReason"]) == (
        main["id"], "main", "defaultBranch")
    assert first["baseTitle"] == "main at m1"
    assert titles(first["newFailures"]) == ["a"] and titles(first["fixed"]) == ["b"]
    # once the branch has a run of its own, that one is the base
    assert (second["baseRunId"], second["baseReason"]) == (feature["id"], "previousOnBranch")
    assert titles(second["newFailures"]) == ["b"] and titles(second["stillFailing"]) == ["a"]
    # a base named by the caller is used as it is
    assert (asked["baseRunId"], asked["baseReason"], asked["baseBranch"]) == (
        older_main["id"], "requested", "main")
    # the default branch's first run has nothing older: no base, nothing listed
    assert (main_first["baseRunId"], main_first["baseReason"]) == (None, "none")
    assert main_first["summary"] == {"newFailures": 0, "fixed": 0, "stillFailing": 0,
                                     "newTests": 0, "removedTests": 0}
    assert main_first["newFailures"] == [] and main_first["baseTitle"] is None
    assert later_main["id"] != first["baseRunId"]


def test_master_is_the_default_branch_when_there_is_no_main(server):
    tenant = live.make_tenant(server)
    with tenant.as_key() as client:
        master = report(client, {"a": "passed"}, branch="master")
        feature = report(client, {"a": "failed"}, branch="fix/a", finish="failed")
        diff = compare(client, feature["id"])
    assert (diff["baseRunId"], diff["baseBranch"], diff["baseReason"]) == (
        master["id"], "master", "defaultBranch")


def test_no_base_without_a_default_branch_run_or_without_a_branch(server):
    tenant = live.make_tenant(server)
    with tenant.as_key() as client:
        report(client, {"a": "passed"}, branch="develop")
        lonely = report(client, {"a": "failed"}, branch="feature/x", finish="failed")
        run = client.post("/api/runs", json={"status": "running"}).json()
        client.patch(f"/api/runs/{run['id']}", json={"status": "passed"})
        for run_id in (lonely["id"], run["id"]):
            diff = compare(client, run_id)
            assert (diff["baseRunId"], diff["baseBranch"], diff["baseReason"]) == (
                None, None, "none")


def test_a_bad_or_foreign_base_is_refused(tenant, other_tenant):
    with tenant.as_key() as client, other_tenant.as_key() as other:
        mine = report(client, {"a": "passed"})
        theirs = report(other, {"a": "passed"})
        empty = client.get(f"/api/runs/{mine['id']}/compare", params={"base": ""})
        foreign = client.get(f"/api/runs/{mine['id']}/compare", params={"base": theirs["id"]})
        too_long = client.get(f"/api/runs/{mine['id']}/compare", params={"base": "r" * 41})
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "VALIDATION_ERROR"
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "NOT_FOUND"
    assert too_long.status_code == 400
