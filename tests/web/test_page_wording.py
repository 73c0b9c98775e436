"""What the dashboard's pages say, read as a person reads them (issue 21, "smaller things the
walk-through met in the pages"): runs named by title, CI build or branch (never a bare
`run_01...`), the base a run is compared with, a verdict that quarantine changed, a
quarantined test that fails, the trends' `groupBy`, and the scopes of a new API key."""

from __future__ import annotations

import html as html_lib
import re

from tests.api.test_intelligence import report


def text_of(page: str) -> str:
    """The page's text without tags (what a reader sees), spaces collapsed."""
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", page)))


def run_with(client, **fields) -> dict:
    run = client.post("/api/runs", json={"status": "running", **fields}).json()
    client.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": [
        {"title": "t", "fullTitle": "Suite > t", "status": "passed", "duration": 1}]})
    client.patch(f"/api/runs/{run['id']}", json={"status": "passed"})
    return run


def test_runs_are_named_by_title_ci_build_or_branch_never_by_bare_id(owner, tenant):
    with tenant.as_key() as client:
        titled = run_with(client, runTitle="Nightly e2e", branch="main", commitSha="aaaa1111")
        built = run_with(client, ciBuildId="4711", branch="release/2.0")
        branch_only = run_with(client, branch="feature/login", commitSha="bbbb2222cccc")
        bare = run_with(client)
    listing = owner.get(f"/projects/{tenant.project_id}/runs").text
    links = dict(re.findall(r'<a href="/runs/(run_[0-9A-Z]+)">([^<]+)</a>', listing))
    assert links[titled["id"]] == "Nightly e2e"
    assert links[built["id"]] == "CI build 4711 on release/2.0"
    assert links[branch_only["id"]] == "feature/login at bbbb2222"
    assert links[bare["id"]].startswith("Run of ") and links[bare["id"]].endswith(" UTC")
    assert not any(label.startswith("run_") for label in links.values())

    for run, name in ((titled, "Nightly e2e"), (built, "CI build 4711 on release/2.0")):
        page = owner.get(f"/runs/{run['id']}").text
        assert re.search(r"<h1>\s*" + re.escape(name) + r"\s*</h1>", page), name
        assert f"<title>Run {name}" in page
        assert f"<code>{run['id']}</code>" in page  # the id stays at hand, as a fact
        suites = owner.get(f"/runs/{run['id']}/suites").text
        assert f"Suites of {name}" in suites


def test_a_new_branch_is_compared_with_the_default_branch_and_says_so(owner, tenant):
    with tenant.as_key() as client:
        main = report(client, {"a": "passed", "b": "failed"}, commit="m1f00d")
        feature = report(client, {"a": "failed", "b": "passed"}, commit="f1", finish="failed",
                         branch="feature/login")
        later = report(client, {"a": "failed", "b": "passed"}, commit="f2", finish="failed",
                       branch="feature/login")
    first = owner.get(f"/runs/{feature['id']}").text
    assert "Compared with the latest run on main" in first
    assert "feature/login has no earlier completed run, so this run is compared with the " \
           "default branch's latest run before it." in text_of(first)
    assert f'Base: <a href="/runs/{main["id"]}">main at m1f00d</a>' in first
    second = owner.get(f"/runs/{later['id']}").text
    assert "Compared with the previous run on feature/login" in second
    assert f'<a href="/runs/{feature["id"]}">feature/login at f2</a>' not in second
    assert f'<a href="/runs/{feature["id"]}">feature/login at f1</a>' in second
    first_main = owner.get(f"/runs/{main['id']}").text
    assert "No earlier completed run on main or the default branch" in first_main


def test_quarantine_explains_the_verdict_and_a_failing_quarantined_test_is_not_stable(
        owner, tenant):
    with tenant.as_key() as client:
        for commit in ("c1", "c2", "c3"):
            report(client, {"checkout": "passed", "cart": "passed"}, commit=commit)
        case = next(c for c in client.get("/api/test-cases", params={"search": "checkout"})
                    .json()["data"] if c["title"] == "checkout")
        assert client.post("/api/flakiness", json={"testId": case["id"],
                                                   "isQuarantined": True}).status_code == 200
        for commit in ("c4", "c5"):
            run = report(client, {"checkout": "failed", "cart": "passed"}, commit=commit,
                         finish="failed")
        stored = client.get(f"/api/test-cases/{case['id']}").json()
    assert (run["status"], run["verdict"], run["quarantinedFailures"]) == ("failed", "passed", 1)
    # the score calls it stable (passes further back, no flaky evidence): the page does not
    assert (stored["status"], stored["lastStatus"], stored["isQuarantined"]) == (
        "stable", "failed", True)

    page = text_of(owner.get(f"/runs/{run['id']}").text)
    assert "Passed: 1 failure of a quarantined test did not count." in page
    assert "verdict: passed" not in page
    listing = text_of(owner.get(f"/projects/{tenant.project_id}/runs").text)
    assert "Passed: 1 failure of a quarantined test did not count." in listing

    case_page = owner.get(f"/cases/{case['id']}").text
    assert '<span class="badge c-broken">quarantined, failing</span>' in case_page
    assert ">stable<" not in case_page
    # the runs it failed in are named, not listed by id
    failed_in = case_page.split('id="failed-h"', 1)[1]
    assert re.findall(r'<a href="/runs/run_[0-9A-Z]+">([^<]+)</a>', failed_in) == [
        "main at c5", "main at c4"]
    flaky = owner.get(f"/projects/{tenant.project_id}/flaky").text
    row = next(r for r in flaky.split("<tr>") if f'/cases/{case["id"]}"' in r)
    assert '<span class="badge c-broken">quarantined, failing</span>' in row


def test_trends_speak_the_apis_group_by_and_old_links_redirect(owner, tenant):
    with tenant.as_key() as client:
        report(client, {"a": "passed"})
    page = f"/projects/{tenant.project_id}/trends"
    form = owner.get(page).text
    assert 'name="groupBy"' in form and 'name="by"' not in form
    per_run = owner.get(page, params={"groupBy": "run", "days": "7"})
    assert per_run.status_code == 200
    assert '<option value="run" selected>per run</option>' in per_run.text
    old = owner.get(page, params={"by": "run", "days": "7", "branch": "main"})
    assert old.status_code == 301
    assert old.headers["location"] == f"{page}?branch=main&days=7&groupBy=run"
    assert owner.get(page, params={"by": "day"}).headers["location"] == f"{page}?groupBy=day"
    bad = owner.get(page, params={"groupBy": "week"})
    assert bad.status_code == 400 and "groupBy" in bad.text


def test_a_new_key_gets_the_scopes_ticked_and_only_grantable_ones_are_offered(owner, tenant):
    page = f"/projects/{tenant.project_id}/settings"
    form = owner.get(page).text
    offered = re.findall(r'<input type="checkbox" name="scopes" value="([a-z:]+)"( checked)?',
                         form)
    # the owner may grant every scope of the catalog; the usual CI ones come ticked
    assert [name for name, _ in offered] == [
        "runs:read", "runs:write", "artifacts:read", "artifacts:write", "flakiness:write",
        "executions:write", "project:admin"]
    assert [name for name, ticked in offered if ticked] == [
        "runs:read", "runs:write", "artifacts:read", "artifacts:write", "flakiness:write"]

    created = owner.post_form(f"/projects/{tenant.project_id}/keys",
                              {"name": "Reader", "scopes": ["runs:read"]}, csrf_from=page)
    assert created.status_code == 201
    key = re.search(r'<code id="new-key">(rl_live_[^<]+)</code>', created.text).group(1)
    with tenant.server.client(**{"X-API-Key": key}) as api:
        assert api.get("/api/runs").status_code == 200
        refused = api.post("/api/runs", json={"status": "running"})
        assert refused.status_code == 403  # runs:write was not ticked

    none = owner.post_form(f"/projects/{tenant.project_id}/keys", {"name": "Empty"},
                           csrf_from=page)
    unknown = owner.post_form(f"/projects/{tenant.project_id}/keys",
                              {"name": "Odd", "scopes": ["runs:read", "root"]}, csrf_from=page)
    assert none.status_code == 400 and "Tick at least one scope" in none.text
    assert unknown.status_code == 400 and "Unknown scope(s): root" in unknown.text
    with tenant.as_user() as api:
        keys = {k["name"]: k for k in api.get("/api/api-keys", params={
            "projectId": tenant.project_id}).json()["data"]}
    assert keys["Reader"]["scopes"] == ["runs:read"]
    assert "Empty" not in keys and "Odd" not in keys
