"""JUnit XML from real runners: each writer's traps, on the report that writer produced."""

from __future__ import annotations

import io

from redline.server.imports.parsers import parse_report

from .helpers import FIXTURES, by_title, counts, one, parse_fixture

# ------------------------------------------------------------------ pytest

def test_pytest_outcomes_failure_error_skip_xfail_xpass():
    report, results = parse_fixture("junit/pytest-xunit1.xml")
    assert report.format == "junit" and report.metadata["tool"] == "pytest"

    failure = one(results, "test_fails_on_exception")
    assert failure.status == "failed"
    assert failure.error.type == "failure" and failure.extra["junitElement"] == "failure"
    assert failure.error.message == "ValueError: boom from the test body"
    assert failure.error.location == {"file": "basic/test_sample.py", "line": 34, "column": None}

    setup_error = one(results, "test_errors_in_setup")
    assert setup_error.status == "failed"
    assert setup_error.error.type == "error" and setup_error.extra["junitElement"] == "error"
    assert "RuntimeError: setup failed" in setup_error.error.message

    xfail = one(results, "test_xfail_that_fails")
    assert xfail.status == "skipped"
    assert xfail.annotations == [{"type": "xfail", "description": "known bug RL-7"}]
    assert one(results, "test_xfail_that_passes").status == "passed"  # non-strict xpass
    assert one(results, "test_xfail_strict_that_passes").status == "failed"
    assert one(results, "test_skipped_by_mark").annotations == [{"type": "skip", "description": "not ready"}]


def test_pytest_deselected_tests_are_absent():
    _, results = parse_fixture("junit/pytest-xunit1.xml")
    assert not [r for r in results if "deselected" in r.title]


def test_pytest_identity_file_line_and_class_path():
    _, results = parse_fixture("junit/pytest-xunit1.xml")
    nested = one(results, "TestGroup > TestNested > test_in_nested_class")
    assert nested.title == "test_in_nested_class"
    assert nested.suite_path == ["TestGroup", "TestNested"]
    assert nested.file_path == "basic/test_sample.py"
    source_lines = (FIXTURES / "pytest/basic/test_sample.py").read_text().splitlines()
    passes = one(results, "test_passes")
    assert source_lines[passes.line_number - 1] == "def test_passes():"  # pytest writes 0-based lines


def test_pytest_parametrised_cases_are_separate_results():
    _, results = parse_fixture("junit/pytest-xunit1.xml")
    statuses = {r.title: r.status for r in results if r.title.startswith("test_parametrised")}
    assert statuses == {"test_parametrised[1]": "passed", "test_parametrised[2]": "passed",
                        "test_parametrised[3]": "failed"}


def test_pytest_output_and_properties():
    report, results = parse_fixture("junit/pytest-xunit1.xml")
    with_output = one(results, "test_passes_with_output")
    assert "hello on stdout" in with_output.stdout
    assert "a log line captured by junit_logging=all" in with_output.stdout
    assert "warning on stderr" in with_output.stderr
    assert with_output.extra["properties"] == {"ticket": "RL-42"}
    # record_testsuite_property lands on the suite, i.e. the run
    assert report.metadata["properties"] == {"environment": "ci", "commit": "abc123"}
    assert report.metadata["startedAt"].startswith("20")


def test_pytest_rerunfailures_placeholders_fold_into_one_flaky_result():
    """pytest-rerunfailures writes each rerun as an extra, empty <testcase> (which looks like a
    pass) before the final one, and the suite's tests="6" counts each test once."""
    xml = (FIXTURES / "junit/pytest-reruns.xml").read_bytes()
    assert xml.count(b"<testcase ") == 12 and b'tests="6"' in xml
    _, results = parse_fixture("junit/pytest-reruns.xml")

    assert counts(results) == {"total": 6, "passed": 2, "failed": 1, "skipped": 0, "flaky": 3}
    flaky = one(results, "test_flaky_passes_on_second_attempt")
    assert (flaky.status, flaky.attempt, flaky.retries) == ("flaky", 2, 1)
    assert one(results, "test_passes_after_two_reruns").attempt == 3
    broken = one(results, "test_always_fails")
    assert (broken.status, broken.attempt) == ("failed", 3)
    assert "still broken" in broken.error.message
    # a parametrised case that was rerun, next to its sibling that was not
    assert one(results, "test_flaky_parametrised[1]").status == "passed"
    assert one(results, "test_flaky_parametrised[2]").status == "flaky"
    assert one(results, "test_stable").attempt == 1


def test_pytest_collection_error_is_a_failed_result():
    _, results = parse_fixture("junit/pytest-collection-error.xml")
    broken = one(results, "collection_error.test_broken_import")
    assert broken.status == "failed"
    assert broken.extra["kind"] == "collection-error"
    assert broken.error.message == "collection failure"
    assert "ModuleNotFoundError" in broken.error.stack
    assert [r.status for r in results if r is not broken] == ["passed", "passed"]


def test_pytest_internal_error_is_a_failed_result():
    _, results = parse_fixture("junit/pytest-internal-error.xml")
    internal = one(results, "internal")
    assert internal.status == "failed" and internal.extra["kind"] == "internal-error"
    assert "plugin crashed while reporting" in internal.error.stack
    assert not by_title(results, "test_never_reached")


# ------------------------------------------------------------------ Surefire

def test_surefire_reruns_and_flakes_inside_one_testcase():
    _, results = parse_fixture("junit/surefire")
    flaky = one(results, "com.example.redline.FlakyTest > passesOnTheSecondAttempt")
    assert (flaky.status, flaky.attempt) == ("flaky", 2)
    assert flaky.error.message.startswith("fails on the first attempt only")
    assert flaky.stdout == "attempt 1\n"  # the failed attempt's output, kept
    broken = one(results, "com.example.redline.FlakyTest > alwaysFails")
    assert (broken.status, broken.attempt) == ("failed", 3)
    assert broken.error.type == "org.opentest4j.AssertionFailedError"
    assert (broken.error.expected, broken.error.actual) == ("true", "false")
    error = one(results, "com.example.redline.CalculatorTest > throwsAnException")
    assert error.error.type == "java.lang.IllegalStateException" and error.extra["junitElement"] == "error"
    assert one(results, "com.example.redline.CalculatorTest > isDisabled").status == "skipped"


def test_surefire_per_class_counts_include_reruns_and_are_not_the_judge():
    """FlakyTest's file says tests="1" for three tests with five attempts; CalculatorTest's
    tests are split across two files (the rerun class-run in its own file)."""
    flaky_file = FIXTURES / "junit/surefire/TEST-com.example.redline.FlakyTest.xml"
    assert b'tests="1"' in flaky_file.read_bytes()
    results = list(parse_report(flaky_file.open("rb")).results)
    assert counts(results) == {"total": 3, "passed": 1, "failed": 1, "skipped": 0, "flaky": 1}

    _, combined = parse_fixture("junit/surefire")
    assert len(combined) == 12
    kept = one(combined, "com.example.redline.CalculatorTest > failsAnAssertion")
    assert kept.attempt == 2  # the file with the reruns wins over the first-attempt-only copy


# ------------------------------------------------------------------ gotestsum

def test_gotestsum_rerun_fails_repeats_are_attempts_wherever_they_are():
    """gotestsum lists all failed attempts first and the passes last; tests="15" counts them."""
    report, results = parse_fixture("junit/gotestsum.xml")
    assert report.metadata["tool"] == "gotestsum"
    assert report.metadata["declaredCounts"]["tests"] == 15 and len(results) == 8
    flaky = one(results, "example.com/redline/fixtures > TestFlaky")
    assert (flaky.status, flaky.attempt) == ("flaky", 2)
    assert "fails on the first run only" in flaky.error.stack
    failed = one(results, "example.com/redline/fixtures > TestFails")
    assert (failed.status, failed.attempt) == ("failed", 3)
    # go names the second same-named subtest "positive#01": two tests, not a retry
    assert one(results, "example.com/redline/fixtures > TestTable/positive").attempt == 1
    assert one(results, "example.com/redline/fixtures > TestTable/positive#01").attempt == 1


# ------------------------------------------------------------------ jest-junit

def test_jest_one_failure_element_per_message_is_one_result():
    _, results = parse_fixture("junit/jest-junit.xml")
    both = one(results, "hooks fails in the test and in afterEach")
    assert both.status == "failed" and both.attempt == 1
    assert both.extra["failureCount"] == 2
    assert both.error.message == "Error: test body failed"
    assert "afterEach cleanup failed" in both.error.stack


def test_jest_same_titles_are_two_tests_not_a_retry():
    _, results = parse_fixture("junit/jest-junit.xml")
    same = by_title(results, "math add adds 1 and 1")
    assert [(r.status, r.attempt) for r in same] == [("passed", 1), ("passed", 1)]


def test_jest_file_that_failed_to_load_is_one_failed_result():
    _, results = parse_fixture("junit/jest-junit.xml")
    broken = one(results, "Test suite failed to run")
    assert broken.status == "failed" and broken.attempt == 1
    assert broken.file_path == "broken.test.js" and broken.extra["kind"] == "suite-error"
    assert "cannot load this test file" in broken.error.stack
    assert broken.error.type == "error"


def test_jest_junit_writes_todo_as_a_pass():
    """A declared format loss: jest-junit gives a test.todo no <skipped/>."""
    _, results = parse_fixture("junit/jest-junit.xml")
    assert one(results, "math is still to write").status == "passed"
    assert one(results, "math is skipped").status == "skipped"


# ------------------------------------------------------------------ Vitest

def test_vitest_several_failures_per_test_with_retries_are_one_result():
    _, results = parse_fixture("junit/vitest-junit.xml")
    always = one(results, "always fails")
    assert always.status == "failed" and always.extra["failureCount"] == 3
    assert always.error.type == "AssertionError"
    assert (always.error.expected, always.error.actual) == ('"green"', '"red"')
    assert one(results, "passes on the second attempt").status == "passed"


def test_vitest_suite_path_same_titles_todo_and_expected_fail():
    _, results = parse_fixture("junit/vitest-junit.xml")
    adds = one(results, "math > add > adds two numbers")
    assert adds.suite_path == ["math", "add"] and adds.file_path == "math.test.ts"
    assert "adding 1 and 2" in adds.stdout and "a warning on stderr" in adds.stderr
    assert [r.status for r in by_title(results, "math > add > adds 1 and 1")] == ["passed", "passed"]
    assert one(results, "math > is still to write").status == "skipped"
    assert one(results, "math > is expected to fail and fails").status == "passed"
    assert one(results, "throws a TypeError").error.location == {"file": "math.test.ts", "line": 36, "column": 16}


# ------------------------------------------------------------------ Playwright junit

def test_playwright_junit_projects_describes_and_annotations():
    report, results = parse_fixture("junit/playwright-junit.xml")
    assert report.metadata["tool"] == "playwright"
    pays = by_title(results, "Checkout > with a saved card > pays")
    assert {r.variant for r in pays} == {"chromium", "firefox"}
    assert pays[0].file_path == "nested/describe.spec.ts" and pays[0].suite_path == ["Checkout", "with a saved card"]
    tagged = one(results, "has annotations and tags", "chromium")
    assert {"type": "issue", "description": "https://github.com/example/redline/issues/7"} in tagged.annotations
    assert one(results, "title tag @fast", "firefox").tags == ["fast"]
    attached = one(results, "has attachments", "chromium")
    # "[[ATTACHMENT|path]]" lines in system-out are the attachments
    assert len(attached.attachments) == 1
    assert attached.attachments[0]["path"].rsplit("/", 1)[-1].startswith("data-file-")


def test_playwright_junit_did_not_run_and_test_fail_semantics():
    _, results = parse_fixture("junit/playwright-junit.xml")
    assert one(results, "Serial group > third step never runs", "chromium").status == "skipped"
    assert one(results, "expected to fail and fails", "chromium").status == "passed"
    unexpected_pass = one(results, "expected to fail but passes", "chromium")
    assert unexpected_pass.status == "failed"
    assert unexpected_pass.error.message == "sample.spec.ts:82:1 expected to fail but passes"


def test_playwright_junit_without_retries_shows_flaky_as_pass_with_summed_time():
    _, junit = parse_fixture("junit/playwright-junit.xml")
    _, json_results = parse_fixture("playwright-json/playwright.json")
    for project in ("chromium", "firefox"):
        in_junit = one(junit, "flaky: fails on the first attempt only", project)
        in_json = one(json_results, "flaky: fails on the first attempt only", project)
        assert in_json.status == "flaky" and in_junit.status == "passed"
        # the junit time is the sum of both attempts (the JSON keeps them apart)
        assert in_junit.duration_ms == in_json.duration_ms == sum(a["duration"] for a in in_json.extra["attempts"])
        assert "attempt 1" in in_junit.stdout and "attempt 2" in in_junit.stdout


def test_playwright_junit_include_retries_marks_flaky_and_reruns():
    _, results = parse_fixture("junit/playwright-junit-retries.xml")
    flaky = one(results, "flaky: fails on the first attempt only", "firefox")
    assert (flaky.status, flaky.attempt) == ("flaky", 2)
    assert "fails on purpose on the first attempt" in flaky.error.message
    failed = one(results, "fails on an expect", "chromium")
    assert (failed.status, failed.attempt) == ("failed", 3)
    assert failed.error.type == "expect.toEqual"


def test_time_with_thousands_separator_and_junk_is_read_leniently():
    xml = (b'<testsuite name="s" tests="2"><testcase classname="C" name="a" time="1,234.5"/>'
           b'<testcase classname="C" name="b" time="soon"/></testsuite>')
    results = list(parse_report(io.BytesIO(xml)).results)
    assert [r.duration_ms for r in results] == [1234500, 0]


def test_unknown_elements_and_attributes_are_kept_not_fatal():
    xml = (b'<testsuites><testsuite name="s" tests="1"><testcase classname="C" name="a" owner="me">'
           b'<custom>x</custom></testcase></testsuite></testsuites>')
    result = next(parse_report(io.BytesIO(xml)).results)
    assert result.status == "passed"
    assert result.extra == {"otherElements": ["custom"], "attributes": {"owner": "me"}}


def test_generic_writer_repeats_are_merged_only_as_far_as_the_suite_count_says():
    """The runner's count is the judge: tests="2" with three elements means one repeat is a
    rerun; tests="3" with the same three elements means three tests."""
    body = (b'<testcase classname="C" name="same"><failure message="boom"/></testcase>'
            b'<testcase classname="C" name="same"/><testcase classname="C" name="other"/>')
    rerun = list(parse_report(io.BytesIO(b'<testsuite name="s" tests="2">' + body + b"</testsuite>")).results)
    assert sorted((r.title, r.status, r.attempt) for r in rerun) == [("other", "passed", 1), ("same", "flaky", 2)]
    distinct = list(parse_report(io.BytesIO(b'<testsuite name="s" tests="3">' + body + b"</testsuite>")).results)
    assert sorted((r.title, r.status) for r in distinct) == [("other", "passed"), ("same", "failed"), ("same", "passed")]
