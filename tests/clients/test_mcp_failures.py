"""Issue 23: every MCP tool's failure, whatever raised it, is `[CODE] message` + `Next:` with
is_error (never a traceback), through the official `mcp` client; list_runs has completedAt."""

from __future__ import annotations

import pytest

from tests.clients.test_mcp import assert_error_result, call

BAD = "run_00000000000000000000000000"

# each tool with an argument it cannot act on, and the code it answers
CASES = [
    ("list_projects", {"team_id": "team_00000000000000000000000000"}, "NOT_FOUND"),
    ("list_runs", {"project_id": "proj_00000000000000000000000000"}, "NOT_FOUND"),
    ("get_run", {"run_id": BAD}, "NOT_FOUND"),
    ("compare_runs", {"run_id": BAD}, "NOT_FOUND"),
    ("get_test", {"test_id": "test_00000000000000000000000000"}, "NOT_FOUND"),
    ("test_history", {"test_id": "test_00000000000000000000000000"}, "NOT_FOUND"),
    ("test_steps", {"test_id": "test_00000000000000000000000000"}, "NOT_FOUND"),
    ("get_test_case", {"test_id": "tc_00000000000000000000000000"}, "NOT_FOUND"),
    ("flaky_tests", {"min_score": 7}, "VALIDATION_ERROR"),
    ("quarantine", {"test_id": "tc_00000000000000000000000000"}, "NOT_FOUND"),
    ("unquarantine", {"test_id": "tc_00000000000000000000000000"}, "NOT_FOUND"),
    ("error_groups", {"since": "yesterday-ish"}, "VALIDATION_ERROR"),
    ("trends", {"days": 0}, "VALIDATION_ERROR"),
    ("import_report", {"path": "/nonexistent/report.xml"}, "VALIDATION_ERROR"),
    ("import_report", {"path": "/tmp"}, "VALIDATION_ERROR"),
    ("wait_for_run", {"run_id": BAD, "timeout_seconds": 1}, "NOT_FOUND"),
    ("whoami", {"unexpected": 1}, None),  # extra arguments are ignored: it answers
    ("list_teams", {}, None),
]


def test_every_tool_fails_as_a_coded_result_never_a_traceback(triage, tmp_path):
    results = call(triage.env(), tmp_path, *[(name, args) for name, args, _ in CASES])
    for (name, args, code), result in zip(CASES, results, strict=True):
        text = result.content[0].text if result.content else ""
        assert "Traceback" not in text and "Error executing tool" not in text, (name, text)
        if code is None:
            assert not result.is_error, (name, text)
            continue
        assert_error_result(result, code)
        assert result.structured_content["error"]["code"] == code, name
    missing, folder = results[13], results[14]
    assert "/nonexistent/report.xml" in missing.content[0].text
    assert "folder" in folder.content[0].text


def test_wrong_credentials_fail_every_tool_alike(triage, tmp_path):
    env = {**triage.env(), "REDLINE_API_KEY": "rl_live_" + "x" * 40}
    names = ["whoami", "list_teams", "list_runs", "flaky_tests", "trends"]
    for result in call(env, tmp_path, *[(n, {}) for n in names]):
        assert_error_result(result, "AUTH_INVALID")


def test_list_runs_shows_when_finished_runs_completed(triage, tmp_path):
    (result,) = call(triage.env(), tmp_path, ("list_runs", {"limit": 5}))
    assert not result.is_error
    runs = result.structured_content["data"]
    assert runs and all(r["completedAt"] for r in runs if r["status"] != "running")


@pytest.mark.parametrize("path_kind", ["missing", "folder"])
def test_import_report_names_the_path(triage, tmp_path, path_kind):
    path = tmp_path / "nope.xml" if path_kind == "missing" else tmp_path
    (result,) = call(triage.env(), tmp_path / "cfg", ("import_report", {"path": str(path)}))
    assert_error_result(result, "VALIDATION_ERROR")
    assert result.structured_content["error"]["details"]["field"] == "path"
