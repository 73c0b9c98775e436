"""The CLI's run, result and test-intelligence commands as subprocesses against the real
server: runs list/get/delete/compare, tests, suites, cases, flakiness, quarantine, errors,
trends, summary; and `exec`/`upload` gating on the verdict with quarantine honoured, end to end.

Independent invocations run side by side (`Cli.many`) to keep the suite quick."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.clients import reports
from tests.clients.conftest import Cli, Result

MISSING_RUN = "run_01HZZZZZZZZZZZZZZZZZZZZZZZ"


def many(cli: Cli, *calls: tuple[str, ...], **env: str) -> list[Result]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: cli(*args, **env), calls))


def failure(result: Result, code: str, exit_code: int) -> dict:
    assert result.code == exit_code, result
    assert result.stdout == ""
    error = result.envelope["error"]
    assert (error["code"], error["exitCode"]) == (code, exit_code)
    return error


@pytest.fixture
def tcli(triage, tmp_path) -> Cli:
    return Cli(tmp_path / "config", triage.server_url)


def test_runs_list_get_and_compare(triage, tcli):
    runs = {name: run.id for name, run in triage.runs.items()}
    env = {"REDLINE_API_KEY": triage.tenant.key}
    (listed, page2, bad_status, get_text, compare_json, compare_text, explicit, no_base,
     missing) = many(
        tcli, ("runs", "list", "--limit", "2", "-o", "json"),
        ("runs", "list", "--branch", "main"),
        ("runs", "list", "--status", "sleeping", "-o", "json"),
        ("runs", "get", runs["head"]),
        ("runs", "compare", runs["head"], "-o", "json"),
        ("runs", "compare", runs["head"]),
        ("runs", "compare", runs["rerun"], "--base", runs["base"], "-o", "json"),
        ("runs", "compare", runs["base"], "-o", "json"),
        ("runs", "compare", runs["head"], "--base", MISSING_RUN, "-o", "json"), **env)
    assert listed.code == 0, listed
    body = listed.json
    assert [r["id"] for r in body["data"]] == [runs["rerun"], runs["head"]]
    assert body["data"][1]["verdict"] == "failed" and "quarantinedFailures" in body["data"][1]
    assert body["nextCursor"] and body["total"] == 5
    assert [line.split("\t")[0] for line in page2.stdout.splitlines()] == \
        [runs["rerun"], runs["head"], runs["base"]]
    failure(bad_status, "VALIDATION_ERROR", 5)
    assert "verdict: failed" in get_text.stdout and "quarantinedFailures: 0" in get_text.stdout
    assert "Failed tests (1):" in get_text.stdout and "test_a" in get_text.stdout
    diff = compare_json.json
    assert (diff["runId"], diff["baseRunId"]) == (runs["head"], runs["base"])
    assert [i["fullTitle"].rsplit(".", 1)[-1] for i in diff["newFailures"]] == ["test_a"]
    assert compare_text.stdout.startswith(f"{runs['head']} against {runs['base']}: 1 new "
                                          "failures, 0 still failing, 1 fixed")
    assert "New failures:" in compare_text.stdout and "Fixed:" in compare_text.stdout
    assert explicit.json["summary"]["fixed"] == 1  # test_b, against the base run
    error = failure(no_base, "NOT_FOUND", 4)
    assert error["details"]["reason"] == "no_previous_run" and "--base" in error["nextAction"]
    failure(missing, "NOT_FOUND", 4)


def test_results_steps_history_and_suites(triage, tcli):
    runs = {name: run.id for name, run in triage.runs.items()}
    env = {"REDLINE_API_KEY": triage.tenant.key}
    nested = tcli("tests", "list", "--run", runs["pw"], "--search", "nested step", "-o",
                  "json", **env).json["data"][0]
    head_a = [t for t in tcli("tests", "list", "--run", runs["head"], "--status", "failed",
                              "-o", "json", **env).json["data"]]
    assert [t["fullTitle"].rsplit(".", 1)[-1] for t in head_a] == ["test_a"]
    (get_text, steps_text, steps_json, history, history_main, suites_text, suites_json,
     missing) = many(
        tcli, ("tests", "get", nested["id"]), ("tests", "steps", nested["id"]),
        ("tests", "steps", nested["id"], "-o", "json"),
        ("tests", "history", head_a[0]["id"], "-o", "json"),
        ("tests", "history", head_a[0]["testCaseId"], "--branch", "nope", "-o", "json"),
        ("suites", runs["pw"]), ("suites", runs["pw"], "-o", "json"),
        ("tests", "get", "test_01HZZZZZZZZZZZZZZZZZZZZZZZ", "-o", "json"), **env)
    assert "status: failed" in get_text.stdout and "\nerror:\n  Error:" in get_text.stdout
    assert steps_json.json["data"] and steps_text.code == 0
    lines = steps_text.stdout.splitlines()
    assert any(line.startswith("✗ ") for line in lines)
    assert any(line.startswith("  ") for line in lines), "nested steps are indented"
    assert [(h["runId"], h["status"]) for h in history.json["data"]] == [
        (runs["rerun"], "passed"), (runs["head"], "failed"), (runs["base"], "passed")]
    assert history_main.json == {"data": [], "total": 0}
    assert "Checkout  suite_" in suites_text.stdout
    assert "\n  without a card  suite_" in suites_text.stdout
    assert {s["title"] for s in suites_json.json["data"]} >= {"Checkout", "Serial group"}
    failure(missing, "NOT_FOUND", 4)


def test_cases_flakiness_errors_and_trends(triage, tcli):
    runs = {name: run.id for name, run in triage.runs.items()}
    env = {"REDLINE_API_KEY": triage.tenant.key}
    (cases, flaky_cases, flaky_json, flaky_text, errors_json, errors_text, errors_later,
     bad_since, trends_json, trends_text, bad_status) = many(
        tcli, ("cases", "list", "--search", reports.FILE, "--sort", "title"),
        ("cases", "list", "--status", "flaky", "--limit", "500", "-o", "json"),
        ("flakiness", "list", "--limit", "2", "-o", "json"), ("flakiness", "list"),
        ("errors", "list", "--since", "7d", "-o", "json"), ("errors", "list"),
        ("errors", "list", "--since", "2099-01-01", "-o", "json"),
        ("errors", "list", "--since", "last tuesday", "-o", "json"),
        ("trends", "--group-by", "run", "--branch", "main", "-o", "json"),
        ("trends", "--days", "7"),
        ("cases", "list", "--status", "sometimes", "-o", "json"), **env)
    rows = [line.split("\t") for line in cases.stdout.splitlines()]
    assert [row[6].rsplit(".", 1)[-1] for row in rows] == ["test_a", "test_b", "test_c",
                                                           "test_d"]
    assert rows[0][1] == "flaky" and rows[0][0].startswith("tc_")
    case_id = rows[0][0]
    assert case_id in {c["id"] for c in flaky_cases.json["data"]}
    report = flaky_json.json
    assert report["summary"]["threshold"] == 0.3 and len(report["data"]) == 2
    assert report["data"][0]["testId"].startswith("tc_")
    assert flaky_text.stdout.count("\n") == report["total"]
    assert "flaky at or above the threshold 0.3" in flaky_text.stderr
    assert errors_json.json["total"] >= 3
    assert all(len(line.split("\t")[0]) == 12 for line in errors_text.stdout.splitlines())
    assert errors_later.json["total"] == 0
    error = failure(bad_since, "VALIDATION_ERROR", 5)
    assert error["details"]["field"] == "--since"
    assert [p["key"] for p in trends_json.json["points"]] == [runs["base"], runs["head"],
                                                             runs["rerun"]]
    assert sum(int(line.split("\t")[1]) for line in trends_text.stdout.splitlines()) == 5
    failure(bad_status, "VALIDATION_ERROR", 5)
    case_text, case_json = many(tcli, ("cases", "get", case_id),
                                ("cases", "get", case_id, "-o", "json"), **env)
    assert "status: flaky" in case_text.stdout
    assert "Evidence (flaky):" in case_text.stdout and "same-commit" in case_text.stdout
    assert "Failed in:" in case_text.stdout and "flakinessScore =" in case_text.stdout
    assert {e["commitSha"] for e in case_json.json["evidence"]} == {"m2"}


def test_summary_of_a_pull_request_run(triage, tcli):
    runs = {name: run.id for name, run in triage.runs.items()}
    env = {"REDLINE_API_KEY": triage.tenant.key}
    markdown, as_json, first, text, pw = many(
        tcli, ("summary", runs["head"]), ("summary", runs["head"], "-o", "json"),
        ("summary", runs["base"]), ("summary", runs["head"], "--format", "text"),
        ("summary", runs["pw"], "--max-failures", "2"), **env)
    assert markdown.code == 0, markdown
    url = triage.server_url
    assert markdown.stdout.startswith("### ❌ Redline: failed\n")
    assert "on `main` at `m2`" in markdown.stdout
    assert f"**New failures (1)** since [main at m1]({url}/runs/{runs['base']}), the " \
           "previous run on `main`" in markdown.stdout
    assert "test_a`](" + url + "/tests/test_" in markdown.stdout
    assert ": assert 1 == 2" in markdown.stdout
    assert "**Fixed (1)**" in markdown.stdout
    assert markdown.stdout.rstrip().endswith(f"[View the run in Redline]({url}/runs/"
                                             f"{runs['head']})")
    data = as_json.json
    assert (data["verdict"], data["baseRunId"], data["newFailuresTotal"]) == \
        ("failed", runs["base"], 1)
    assert data["comparison"]["fixed"] == 1 and data["quarantined"] == []
    assert "No earlier run of this branch to compare with, nor of the default branch." \
        in first.stdout
    assert "**Failed (1)**" in first.stdout
    assert text.stdout.startswith(f"Redline run {runs['head']}: failed\n")
    assert "\nNEW FAILURE tests.test_app.test_a" in text.stdout or \
        "\nNEW FAILURE test_a" in text.stdout
    assert "**Flaky (2)**" in pw.stdout and "… and " in pw.stdout  # capped at 2 per section


def test_quarantine_then_exec_exits_by_the_verdict(tenant, tmp_path):
    """End to end: a case quarantined through the API stops failing `redline exec` (exit 0)
    while it fails in the test command; a failure outside quarantine still exits 1."""
    cli = Cli(tmp_path / "config", tenant.server.url)
    env = {"REDLINE_API_KEY": tenant.key}
    out = tmp_path / "reports" / "junit.xml"
    pattern = str(tmp_path / "reports" / "*.xml")
    only_q = reports.junit({"test_checkout": "failed", "test_cart": "passed"})
    both = reports.junit({"test_checkout": "failed", "test_cart": "failed"})

    first = cli("exec", "--report", pattern, "--branch", "main", "-o", "json", "--",
                *reports.test_command(only_q, out, 1), **env)
    assert first.code == 1 and first.json["verdict"] == "failed", first
    with tenant.as_key() as api:  # quarantine through the REST API
        failed = api.get("/api/tests", params={"runId": first.json["id"],
                                               "status": "failed"}).json()["data"]
        [checkout] = failed
        response = api.post("/api/flakiness", json={
            "testId": checkout["testCaseId"], "isQuarantined": True,
            "reason": "times out on CI", "owner": "alice",
            "expiresAt": (datetime.now(UTC) + timedelta(days=14)).isoformat()})
        assert response.status_code == 200, response.text

    quarantined = cli("exec", "--report", pattern, "--branch", "main", "-o", "json", "--",
                      *reports.test_command(only_q, out, 1), **env)
    assert quarantined.code == 0, quarantined  # the command itself exited 1
    run = quarantined.json
    assert (run["status"], run["verdict"], run["failedTests"], run["quarantinedFailures"]) == \
        ("failed", "passed", 1, 1)
    # JSON mode: stdout is the run alone; the test command's own output went to stderr
    assert quarantined.stderr.startswith("collected tests, wrote ")
    assert "error" not in quarantined.stderr.lower()

    other = cli("exec", "--report", pattern, "--branch", "main", "-o", "json", "--",
                *reports.test_command(both, out, 1), **env)
    assert other.code == 1, other
    assert (other.json["verdict"], other.json["failedTests"],
            other.json["quarantinedFailures"]) == ("failed", 2, 1)
    text = cli("exec", "--report", pattern, "--branch", "main", "--",
               *reports.test_command(only_q, out, 1), **env)
    assert text.code == 0 and "passed" in text.stderr and "1 quarantined" not in text.stderr

    report = tmp_path / "upload.xml"
    report.write_text(only_q)
    upload, summary = many(cli, ("upload", str(report), "--fail-on-failures", "--branch",
                                 "main", "-o", "json"),
                           ("summary", run["id"]), **env)
    assert upload.code == 0 and upload.json["verdict"] == "passed", upload
    assert summary.stdout.startswith("### ✅ Redline: passed\n"), summary
    assert "1 failure(s) in quarantine, not counted in the verdict" in summary.stdout
    assert "**Quarantined (1)**: failed, not counted in the verdict" in summary.stdout
    assert f"]({tenant.server.url}/cases/{checkout['testCaseId']})" in summary.stdout
    assert "owner alice" in summary.stdout and "“times out on CI”" in summary.stdout
    assert "**New failures (0)**" in summary.stdout  # the quarantined one is not "new"


def test_quarantine_and_unquarantine_commands(tenant, tmp_path):
    cli = Cli(tmp_path / "config", tenant.server.url)
    env = {"REDLINE_API_KEY": tenant.key}
    report = tmp_path / "r.xml"
    report.write_text(reports.junit({"test_flaky": "failed"}))
    run = cli("upload", str(report), "-o", "json", **env).json
    test = cli("tests", "list", "--run", run["id"], "-o", "json", **env).json["data"][0]
    done = cli("quarantine", test["id"], "--reason", "races", "--owner", "bob", "--expires",
               "7d", "-o", "json", **env)
    assert done.code == 0, done
    body = done.json
    assert (body["testId"], body["isQuarantined"], body["owner"], body["reason"]) == \
        (test["testCaseId"], True, "bob", "races")
    expires = datetime.fromisoformat(body["expiresAt"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    listed, case = many(cli, ("flakiness", "list", "--quarantined", "-o", "json"),
                        ("cases", "get", test["testCaseId"]), **env)
    released, past, bad, missing = many(  # after the reads: these change (or try to) the case
        cli, ("unquarantine", test["testCaseId"], "--reason", "fixed", "-o", "json"),
        ("quarantine", test["id"], "--expires", "2001-01-01", "-o", "json"),
        ("quarantine", test["id"], "--expires", "soon", "-o", "json"),
        ("quarantine", "tc_01HZZZZZZZZZZZZZZZZZZZZZZZ", "-o", "json"), **env)
    assert [t["testId"] for t in listed.json["data"]] == [test["testCaseId"]]
    assert "quarantine: since" in case.stdout and "owner bob" in case.stdout
    assert released.json["isQuarantined"] is False
    assert failure(past, "VALIDATION_ERROR", 5)["details"]["field"] == "expiresAt"
    assert failure(bad, "VALIDATION_ERROR", 5)["details"]["field"] == "--expires"
    failure(missing, "NOT_FOUND", 4)
    history = json.loads(cli("cases", "get", test["testCaseId"], "-o", "json",
                             **env).stdout)["quarantineHistory"]
    assert [(e["action"], e["reason"]) for e in history] == [("unquarantine", "fixed"),
                                                             ("quarantine", "races")]


def test_a_personal_token_needs_a_project_for_project_lists(triage, tcli):
    token = {"REDLINE_TOKEN": triage.tenant.token}
    (no_project, trends_no_project, with_flag, delete_missing) = many(
        tcli, ("flakiness", "list", "-o", "json"), ("trends", "-o", "json"),
        ("errors", "list", "--project", triage.tenant.project_id, "-o", "json"),
        ("runs", "delete", MISSING_RUN, "--yes", "-o", "json"), **token)
    failure(no_project, "VALIDATION_ERROR", 5)
    failure(trends_no_project, "VALIDATION_ERROR", 5)
    assert with_flag.code == 0 and with_flag.json["total"] >= 1
    failure(delete_missing, "NOT_FOUND", 4)


def test_json_output_is_the_servers_json_and_needs_no_pydantic(triage, tcli):
    """Print-only commands in JSON mode pass the server's JSON through: no models, so the
    CLI starts without importing pydantic (nor asyncio)."""
    import subprocess
    import sys

    probe = ("import sys; from redline.cli.main import main; code = main(sys.argv[1:]); "
             "sys.stderr.write(' '.join(m for m in ('pydantic', 'asyncio', 'rich') "
             "if m in sys.modules)); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, "runs", "list", "--branch", "main",
                           "-o", "json"], capture_output=True, text=True, check=False,
                          env=tcli.env(REDLINE_API_KEY=triage.tenant.key), timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done
    with triage.tenant.as_key() as http:
        assert json.loads(done.stdout) == http.get("/api/runs",
                                                   params={"branch": "main"}).json()
