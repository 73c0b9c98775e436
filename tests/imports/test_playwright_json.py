"""Playwright's JSON reporter output, from a real `npx playwright test` run with two projects."""

from __future__ import annotations

import io
import json

from redline.server.imports.parsers import parse_report

from .helpers import FIXTURES, by_title, one, parse_fixture


def test_nested_describes_become_the_suite_path_and_projects_the_variant():
    report, results = parse_fixture("playwright-json/playwright.json")
    assert report.format == "playwright-json"
    pays = by_title(results, "Checkout > with a saved card > pays")
    assert sorted(r.variant for r in pays) == ["chromium", "firefox"]
    first = pays[0]
    assert (first.title, first.suite_path) == ("pays", ["Checkout", "with a saved card"])
    assert (first.file_path, first.line_number) == ("nested/describe.spec.ts", 5)
    # same title in another describe block: another test
    assert len(by_title(results, "Checkout > without a card > pays")) == 2
    assert one(results, "passes at once", "chromium").suite_path == []


def test_retries_and_the_flaky_outcome():
    _, results = parse_fixture("playwright-json/playwright.json")
    flaky = one(results, "flaky: fails on the first attempt only", "chromium")
    assert (flaky.status, flaky.attempt, flaky.retries) == ("flaky", 2, 1)
    assert [a["status"] for a in flaky.extra["attempts"]] == ["failed", "passed"]
    assert flaky.duration_ms == sum(a["duration"] for a in flaky.extra["attempts"])
    # the failed attempt's error, without colour codes, with its location
    assert flaky.error.message.startswith("Error: fails on purpose on the first attempt")
    assert "\x1b" not in flaky.error.message
    assert flaky.error.location == {"file": "sample.spec.ts", "line": 19, "column": 67}
    assert flaky.stdout == "attempt 1\nattempt 2\n"

    failed = one(results, "fails on an expect", "firefox")
    assert (failed.status, failed.attempt) == ("failed", 3)
    assert failed.error.type == "expect.toEqual"


def test_error_location_type_expected_and_actual():
    _, results = parse_fixture("playwright-json/playwright.json")
    nested = one(results, "fails inside a nested step", "chromium")
    assert nested.error.type == "expect.toBe"
    assert (nested.error.expected, nested.error.actual) == ("5", "4")
    assert nested.error.location == {"file": "sample.spec.ts", "line": 41, "column": 21}
    assert "sample.spec.ts:41:21" in nested.error.stack
    thrown = one(results, "throws an error", "chromium")
    assert thrown.error.type == "TypeError"
    assert thrown.error.message == "TypeError: cannot read properties of undefined"


def test_nested_steps():
    _, results = parse_fixture("playwright-json/playwright.json")
    steps = one(results, "has steps", "firefox").steps
    assert [s["title"] for s in steps] == ["open the page", "check the title"]
    assert steps[0]["steps"][0]["title"] == "resolve the url"
    assert steps[0]["category"] == "test.step" and steps[0]["status"] == "passed"
    failing = one(results, "fails inside a nested step", "chromium").steps
    assert failing[0]["status"] == "failed" and failing[0]["steps"][0]["status"] == "failed"
    assert failing[0]["steps"][0]["error"].startswith("Error: expect(received).toBe(expected)")


def test_annotations_tags_output_and_attachments():
    _, results = parse_fixture("playwright-json/playwright.json")
    tagged = one(results, "has annotations and tags", "chromium")
    assert tagged.tags == ["smoke", "api"]
    assert tagged.annotations == [
        {"type": "issue", "description": "https://github.com/example/redline/issues/7"},
        {"type": "owner", "description": "team-core"},
        {"type": "runtime", "description": "added while running"},
    ]
    assert one(results, "title tag @fast", "chromium").tags == ["fast"]

    output = one(results, "writes to stdout and stderr", "chromium")
    assert (output.stdout, output.stderr) == ("a line on stdout\n", "a line on stderr\n")

    attached = one(results, "has attachments", "firefox").attachments
    assert attached[0] == {"name": "inline note", "contentType": "text/plain", "path": None,
                           "body": "cGxhaW4gdGV4dCBib2R5", "retry": 0}
    assert attached[1]["name"] == "data file" and attached[1]["path"].endswith(".json")


def test_did_not_run_is_skipped_with_expected_status_passed():
    _, results = parse_fixture("playwright-json/playwright.json")
    never = one(results, "Serial group > third step never runs", "firefox")
    assert never.status == "skipped" and never.attempt == 1
    assert never.extra["expectedStatus"] == "passed" and never.extra["didNotRun"] is True
    skipped = one(results, "skipped with test.skip", "firefox")
    assert skipped.status == "skipped" and "didNotRun" not in skipped.extra
    assert {"type": "skip", "description": None} in skipped.annotations
    runtime = by_title(results, "skipped at runtime")
    assert {r.variant: r.status for r in runtime} == {"chromium": "passed", "firefox": "skipped"}


def test_test_fail_that_fails_is_a_pass_and_one_that_passes_is_a_failure():
    _, results = parse_fixture("playwright-json/playwright.json")
    expected_failure = one(results, "expected to fail and fails", "chromium")
    assert expected_failure.status == "passed" and expected_failure.extra["expectedStatus"] == "failed"
    unexpected_pass = one(results, "expected to fail but passes", "chromium")
    assert unexpected_pass.status == "failed"
    assert unexpected_pass.error.message == "Expected to fail, but passed."


def test_run_metadata_worker_info_and_stats_after_the_results():
    report = parse_report((FIXTURES / "playwright-json/playwright.json").open("rb"))
    # config comes first in the file: known before any result is read
    assert report.metadata["playwrightVersion"] == "1.65.1"
    assert report.metadata["workers"] == 2
    assert report.metadata["projects"] == ["chromium", "firefox"]
    assert "shardTotal" not in report.metadata
    results = list(report.results)
    # stats come last: known once the results are read
    assert report.metadata["startedAt"].endswith("Z")
    assert report.metadata["duration"] > 0
    assert report.metadata["stats"] == {"expected": 23, "skipped": 7, "unexpected": 10, "flaky": 2}
    assert all(isinstance(r.extra["workerIndex"], int) for r in results)
    assert {"parallelIndex", "startTime", "projectId", "specId"} <= set(results[0].extra)


def test_shard_one_of_two():
    report, results = parse_fixture("playwright-json/playwright-shard-1-of-2.json")
    assert (report.metadata["shardCurrent"], report.metadata["shardTotal"]) == (1, 2)
    assert len(results) == 21


def test_unknown_fields_are_kept_not_fatal():
    document = {"config": {"version": "9.9.9", "newThing": 1}, "suites": [], "errors": [],
                "stats": {"startTime": "2026-01-01T00:00:00Z", "duration": 5}, "futureField": {"a": 1}}
    report = parse_report(io.BytesIO(json.dumps(document).encode()))
    assert list(report.results) == []
    assert report.metadata["extra"] == {"futureField": {"a": 1}}
    assert report.metadata["playwrightVersion"] == "9.9.9"
