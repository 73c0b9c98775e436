"""Runs and results through the SDK and the CLI on the real server: import reports, list and
read runs and results, wait, `upload`, `exec`, `summary` (the MCP tools and the test
intelligence commands: test_intelligence_*.py)."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from redline.sdk import Client
from redline.sdk import exceptions as errors
from tests.clients.conftest import Cli, run_in_terminal

FAILING = """\
<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="tests.test_login" tests="3" failures="1" errors="0" skipped="1" time="0.3">
    <testcase classname="tests.test_login" name="test_form_shows" file="tests/test_login.py"
              time="0.1"/>
    <testcase classname="tests.test_login" name="test_submit" file="tests/test_login.py"
              time="0.2">
      <failure message="assert 302 == 200">tests/test_login.py:12: AssertionError</failure>
    </testcase>
    <testcase classname="tests.test_login" name="test_later" file="tests/test_login.py"
              time="0.0"><skipped message="not yet"/></testcase>
  </testsuite>
</testsuites>
"""
PASSING = """\
<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="tests.test_math" tests="2" failures="0" errors="0" skipped="0" time="0.1">
    <testcase classname="tests.test_math" name="test_add" file="tests/test_math.py" time="0.1"/>
    <testcase classname="tests.test_math" name="test_sub" file="tests/test_math.py" time="0.0"/>
  </testsuite>
</testsuites>
"""


MISSING_RUN = "run_01HZZZZZZZZZZZZZZZZZZZZZZZ"


@pytest.fixture
def reports(tmp_path) -> dict[str, Path]:
    paths = {"failing": tmp_path / "failing.xml", "passing": tmp_path / "passing.xml"}
    paths["failing"].write_text(FAILING)
    paths["passing"].write_text(PASSING)
    return paths


def ci_client(tenant) -> Client:
    return Client(tenant.server.url, api_key=tenant.key, from_env=False)


def test_import_read_and_wait_through_the_sdk(tenant, reports):
    with ci_client(tenant) as client:
        run = client.runs.import_report(reports["failing"], branch="main", commit_sha="abc123",
                                        source="api")
        assert (run.total_tests, run.passed_tests, run.failed_tests, run.skipped_tests) == \
            (3, 1, 1, 1)
        assert run.status == "failed" and run.is_finished and run.project_id == \
            tenant.project_id
        assert client.runs.get(run.id).branch == "main"
        assert client.runs.wait(run.id).id == run.id  # finished: no waiting
        with pytest.raises(errors.RunFailedError):
            client.runs.wait(run.id, raise_on_failure=True)
        [failed] = client.tests.list(run_id=run.id, status="failed").data
        assert failed.full_title.endswith("test_submit")
        detail = client.tests.get(failed.id)
        assert detail.error and "302" in (detail.error.message or "")
        assert client.tests.steps(failed.id).data == []
        progress: list[tuple[int, int]] = []
        both = client.runs.import_report([reports["passing"], reports["failing"]],
                                         on_progress=lambda sent, total:
                                         progress.append((sent, total)))
        assert both.total_tests == 5
        size = reports["passing"].stat().st_size + reports["failing"].stat().st_size
        assert progress[-1] == (size, size)
        listed = [r.id for r in client.runs.iter(limit=1)]
        assert listed[:2] == [both.id, run.id]


def test_report_runs_and_results_one_by_one(tenant):
    with Client(tenant.server.url, token=tenant.token, project_id=tenant.project_id,
                from_env=False) as client:
        run = client.runs.create(branch="feature/x", ci_build_id="build-1")
        assert run.status == "running"
        suite = client.test_suites.create(run.id, "Login", file_path="tests/login.spec.ts")
        one = client.tests.create(run.id, title="shows", full_title="Login > shows",
                                  status="passed", duration=12, file_path="tests/login.spec.ts")
        batch = client.runs.add_tests(run.id, [
            {"title": "submits", "full_title": "Login > submits", "status": "failed",
             "duration": 30, "error": {"message": "boom"}},
            {"title": "flakes", "fullTitle": "Login > flakes", "status": "flaky",
             "duration": 5}])
        assert batch.created == 2 and len(batch.ids) == 2
        assert [s.id for s in client.test_suites.list(run.id).data] == [suite.id]
        done = client.runs.update(run.id, status="failed")
        assert (done.status, done.total_tests, done.failed_tests, done.flaky_tests) == \
            ("failed", 3, 1, 1)
        assert one.test_case_id
        assert client.runs.delete(run.id).success
        with pytest.raises(errors.NotFoundError):
            client.runs.get(run.id)


def test_cli_upload_gates_on_the_verdict(tenant, reports, tmp_path):
    cli = Cli(tmp_path / "c", tenant.server.url)
    env = {"REDLINE_API_KEY": tenant.key}
    result = cli("upload", str(reports["passing"]), "--fail-on-failures", "-o", "json", **env)
    assert result.code == 0, result
    assert result.json["status"] == "passed" and result.stderr == ""
    result = cli("upload", str(reports["failing"]), "--fail-on-failures", "--branch", "main",
                 "-o", "json", **env)
    assert result.code == 1, result
    run = result.json
    assert run["failedTests"] == 1 and run["branch"] == "main"
    assert result.stderr == ""  # a verdict is a result, not an error envelope
    assert cli("upload", str(reports["failing"]), "-o", "json", **env).code == 0  # no gate
    assert cli("wait", run["id"], "-o", "json", **env).code == 1
    rows = cli("runs", "list", **env).stdout.splitlines()
    assert len(rows) == 3 and rows[1].split("\t")[0] == run["id"]
    summary = cli("summary", run["id"], **env)
    assert summary.code == 0, summary
    assert "### ❌ Redline: failed" in summary.stdout
    assert "tests.test_login.test_submit" in summary.stdout or "test_submit" in summary.stdout
    assert "assert 302 == 200" in summary.stdout
    tests = cli("tests", "list", "--run", run["id"], "--status", "failed", "-o", "json", **env)
    assert [t["status"] for t in tests.json["data"]] == ["failed"]
    assert cli("runs", "delete", run["id"], "--yes", REDLINE_TOKEN=tenant.token).code == 0
    missing = cli("runs", "get", run["id"], "-o", "json", **env)
    assert missing.code == 4 and missing.envelope["error"]["code"] == "NOT_FOUND"


def test_upload_on_a_terminal_shows_progress(tenant, reports, tmp_path):
    code, output = run_in_terminal(Cli(tmp_path / "c", tenant.server.url), "upload",
                                   str(reports["passing"]), REDLINE_API_KEY=tenant.key)
    assert code == 0, output
    assert "Uploading [" in output and "100%" in output
    assert re.search(r"Run run_\w+ \(passed\): \d+ tests: \d+ passed", output), output
    assert f"{tenant.server.url}/runs/run_" in output  # the summary's dashboard link


def _test_command(report: str, exit_code: int, out: Path) -> list[str]:
    script = textwrap.dedent(f"""
        import pathlib, sys
        pathlib.Path({str(out)!r}).write_text({report!r})
        sys.exit({exit_code})
    """)
    return [sys.executable, "-c", script]


def test_exec_runs_the_command_imports_its_report_and_exits_by_the_verdict(tenant, tmp_path):
    cli = Cli(tmp_path / "c", tenant.server.url)
    env = {"REDLINE_API_KEY": tenant.key}
    out = tmp_path / "out" / "junit.xml"
    out.parent.mkdir()
    glob = str(tmp_path / "out" / "*.xml")
    passed = cli("exec", "--report", glob, "-o", "json", "--",
                 *_test_command(PASSING, 0, out), **env)
    assert passed.code == 0, passed
    assert passed.json["status"] == "passed"
    failed = cli("exec", "--report", glob, "-o", "json", "--",
                 *_test_command(FAILING, 1, out), **env)
    assert failed.code == 1 and failed.json["failedTests"] == 1
    nothing = cli("exec", "--report", str(tmp_path / "none" / "*.xml"), "-o", "json", "--",
                  sys.executable, "-c", "pass", **env)
    assert nothing.code == 5
    assert nothing.envelope["error"]["details"]["reason"] == "no_report"


@pytest.mark.parametrize("on_outage,exit_code", [("command", 3), ("pass", 0), ("fail", 10)])
def test_exec_when_redline_is_unreachable(tmp_path, closed_url, on_outage, exit_code):
    cli = Cli(tmp_path / "c", closed_url)
    out = tmp_path / "junit.xml"
    result = cli("exec", "--report", str(out), "--on-outage", on_outage, "--",
                 *_test_command(PASSING, 3, out), REDLINE_API_KEY="rl_live_x",
                 REDLINE_MAX_RETRIES="0")
    assert result.code == exit_code, result
    assert result.stdout == ""
    if on_outage == "fail":
        assert result.stderr.startswith("Error [NETWORK_ERROR]")
    else:  # says so, never silently
        assert "could not report" in result.stderr and "NETWORK_ERROR" in result.stderr
