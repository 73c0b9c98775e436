"""What the CLI says about runs, read as a person reads it (issue 21): `runs list` and
`runs get` name a run by title, CI build or branch beside its id; a verdict that quarantine
changed says so; `summary` and `runs compare` say which base they used, the default branch's
latest run for a new branch. Subprocesses against the real server."""

from __future__ import annotations

from tests.api.test_intelligence import report
from tests.clients.conftest import Cli
from tests.clients.test_intelligence_cli import many


def test_runs_list_and_get_name_the_run_and_explain_a_quarantine_verdict(tenant, tmp_path):
    cli = Cli(tmp_path / "config", tenant.server.url)
    with tenant.as_key() as client:
        for commit in ("c1", "c2"):
            report(client, {"checkout": "passed", "cart": "passed"}, commit=commit)
        case = next(c for c in client.get("/api/test-cases", params={"search": "checkout"})
                    .json()["data"] if c["title"] == "checkout")
        client.post("/api/flakiness", json={"testId": case["id"], "isQuarantined": True})
        quarantined = report(client, {"checkout": "failed", "cart": "passed"}, commit="c3",
                             finish="failed")
        titled = client.post("/api/runs", json={"status": "running", "runTitle": "Nightly",
                                                "ciBuildId": "77"}).json()
        client.patch(f"/api/runs/{titled['id']}", json={"status": "passed"})
    env = {"REDLINE_API_KEY": tenant.key}
    listed, got, as_json = many(cli, ("runs", "list"), ("runs", "get", quarantined["id"]),
                                ("runs", "list", "-o", "json"), **env)
    assert listed.code == 0, listed
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    # id first (scripts cut it), then the run's name
    assert [row[:2] for row in rows] == [[titled["id"], "Nightly"],
                                         [quarantined["id"], "main at c3"],
                                         [rows[2][0], "main at c2"], [rows[3][0], "main at c1"]]
    assert "run" not in as_json.json["data"][0]  # JSON stays the API's own fields
    assert got.code == 0, got
    fields = dict(line.split(": ", 1) for line in got.stdout.splitlines() if ": " in line)
    assert (fields["run"], fields["status"], fields["verdict"]) == (
        "main at c3", "failed", "passed")
    assert fields["verdictNote"] == "Passed: 1 failure of a quarantined test did not count."


def test_summary_and_compare_say_which_base_they_used(tenant, tmp_path):
    cli = Cli(tmp_path / "config", tenant.server.url)
    with tenant.as_key() as client:
        main = report(client, {"a": "passed", "b": "failed"}, commit="m1")
        feature = report(client, {"a": "failed", "b": "passed"}, commit="f1",
                         branch="feature/login", finish="failed")
        again = report(client, {"a": "failed", "b": "passed"}, commit="f2",
                       branch="feature/login", finish="failed")
    env = {"REDLINE_API_KEY": tenant.key}
    url = tenant.server.url
    markdown, as_json, text, compared, next_one = many(
        cli, ("summary", feature["id"]), ("summary", feature["id"], "-o", "json"),
        ("summary", feature["id"], "--format", "text"), ("runs", "compare", feature["id"]),
        ("summary", again["id"]), **env)
    assert markdown.code == 0, markdown
    assert f"[feature/login at f1]({url}/runs/{feature['id']}): 2 tests" in markdown.stdout
    assert (f"**New failures (1)** since [main at m1]({url}/runs/{main['id']}), the latest "
            "run on `main`, the default branch (`feature/login` has no earlier run)"
            ) in markdown.stdout
    data = as_json.json
    assert (data["baseRunId"], data["baseReason"], data["baseBranch"], data["baseLabel"]) == (
        main["id"], "defaultBranch", "main", "main at m1")
    assert data["runLabel"] == "feature/login at f1"
    assert "Compared with main at m1: the latest run on main, the default branch (this " \
           "branch has no earlier run)" in text.stdout
    assert compared.code == 0, compared
    assert "Base: the latest run on main, the default branch (this branch has no earlier " \
           "run)." in compared.stdout
    assert (f"since [feature/login at f1]({url}/runs/{feature['id']}), the previous run on "
            "`feature/login`") in next_one.stdout
