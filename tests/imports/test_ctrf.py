"""CTRF JSON written by playwright-ctrf-json-reporter in the same Playwright run as the JSON
fixture: it must say what Playwright printed, including where the reporter gets it wrong."""

from __future__ import annotations

import io
import json

from redline.server.imports.parsers import parse_report

from .helpers import FIXTURES, one, parse_fixture


def _raw_tests() -> list[dict]:
    return json.loads((FIXTURES / "ctrf/playwright-ctrf.json").read_text())["results"]["tests"]


def test_summary_tool_and_environment_become_metadata():
    report, _ = parse_fixture("ctrf/playwright-ctrf.json")
    metadata = report.metadata
    assert report.format == "ctrf" and metadata["tool"] == "playwright"
    assert metadata["summary"]["tests"] == 42
    assert metadata["environment"]["appName"] == "redline-fixtures"
    assert metadata["reportFormat"] == "CTRF" and metadata["generatedBy"] == "playwright-ctrf-json-reporter"
    assert metadata["startedAt"].startswith("20") and metadata["duration"] > 0


def test_suite_path_gives_project_file_and_describes():
    _, results = parse_fixture("ctrf/playwright-ctrf.json")
    pays = one(results, "Checkout > with a saved card > pays", "firefox")
    assert (pays.title, pays.suite_path, pays.file_path) == ("pays", ["Checkout", "with a saved card"],
                                                             "nested/describe.spec.ts")
    raw = next(t for t in _raw_tests() if t["name"] == "pays")
    assert raw["filePath"].startswith("/")  # absolute in the file, relative in Redline


def test_retries_and_flaky():
    _, results = parse_fixture("ctrf/playwright-ctrf.json")
    flaky = one(results, "flaky: fails on the first attempt only", "chromium")
    assert (flaky.status, flaky.attempt, flaky.retries) == ("flaky", 2, 1)
    assert flaky.error.message.startswith("Error: fails on purpose on the first attempt")
    failed = one(results, "fails on an expect", "chromium")
    assert (failed.status, failed.attempt) == ("failed", 3)


def test_a_pass_retried_with_its_serial_group_is_not_flaky():
    """The reporter sets flaky on any retried pass; every attempt passed, so Playwright (and
    the CTRF spec's definition) say passed."""
    raw = next(t for t in _raw_tests() if t["name"] == "first step succeeds")
    assert raw["flaky"] is True and {a["status"] for a in raw["retryAttempts"]} == {"passed"}
    _, results = parse_fixture("ctrf/playwright-ctrf.json")
    assert one(results, "Serial group > first step succeeds", "chromium").status == "passed"


def test_test_fail_outcomes_corrected_from_the_fail_annotation():
    raw = {t["name"]: t for t in _raw_tests()}
    assert raw["expected to fail but passes"]["status"] == "passed"  # what the reporter wrote
    _, results = parse_fixture("ctrf/playwright-ctrf.json")
    unexpected_pass = one(results, "expected to fail but passes", "chromium")
    assert unexpected_pass.status == "failed"
    assert unexpected_pass.error.message == "Expected to fail, but passed."
    assert one(results, "expected to fail and fails", "chromium").status == "passed"


def test_steps_tags_annotations_output_and_extra_fields_kept():
    _, results = parse_fixture("ctrf/playwright-ctrf.json")
    steps = one(results, "has steps", "chromium").steps
    assert [(s["title"], s["status"]) for s in steps] == [
        ("open the page", "passed"), ("resolve the url", "passed"), ("check the title", "passed")]
    tagged = one(results, "has annotations and tags", "chromium")
    assert tagged.tags == ["smoke", "api"]
    assert {"type": "owner", "description": "team-core"} in tagged.annotations
    output = one(results, "writes to stdout and stderr", "chromium")
    assert (output.stdout, output.stderr) == ("a line on stdout\n", "a line on stderr\n")
    # fields Redline has no column for stay in extra
    assert output.extra["rawStatus"] == "passed" and output.extra["type"] == "unit"
    assert {"start", "stop"} <= set(output.extra)
    attached = one(results, "has attachments", "chromium").attachments
    assert attached and attached[0]["name"] == "data file"


def test_skipped_and_did_not_run():
    _, results = parse_fixture("ctrf/playwright-ctrf.json")
    never = one(results, "Serial group > third step never runs", "chromium")
    assert (never.status, never.attempt) == ("skipped", 1)
    assert one(results, "marked fixme", "chromium").status == "skipped"


def _ctrf(tests: list[dict], **results) -> bytes:
    return json.dumps({"results": {"tool": {"name": "jest"}, "summary": {"tests": len(tests)},
                                   "tests": tests, **results}}).encode()


def test_generic_ctrf_statuses_suite_array_and_unknown_fields():
    """The mapping table on every CTRF status; a spec-style suite array; unknown fields kept."""
    tests = [
        {"name": "a", "status": "passed", "duration": 5, "suite": ["Login", "form"], "filePath": "./src/a.test.js",
         "line": 3, "labels": {"team": "core"}, "extra": {"owner": "me"}},
        {"name": "b", "status": "failed", "duration": 1, "message": "boom", "trace": "Error: boom\n    at src/b.test.js:9:3"},
        {"name": "c", "status": "pending", "duration": 0},
        {"name": "d", "status": "skipped", "duration": 0},
        {"name": "e", "status": "other", "duration": 0, "rawStatus": "interrupted"},
        {"name": "f", "status": "passed", "duration": 2, "flaky": True, "retries": 2},
    ]
    report = parse_report(io.BytesIO(_ctrf(tests, environment={"branchName": "main"}, extra={"ci": True})))
    results = {r.title: r for r in report.results}
    assert {t: r.status for t, r in results.items()} == {
        "a": "passed", "b": "failed", "c": "skipped", "d": "skipped", "e": "failed", "f": "flaky"}
    a = results["a"]
    assert (a.full_title, a.file_path, a.line_number) == ("Login > form > a", "src/a.test.js", 3)
    assert a.extra == {"owner": "me", "labels": {"team": "core"}}
    assert results["b"].error.location == {"file": "src/b.test.js", "line": 9, "column": 3}
    assert (results["f"].attempt, results["f"].retries) == (3, 2)
    assert report.metadata["extra"] == {"ci": True}
    assert report.metadata["environment"] == {"branchName": "main"}
