"""Malformed reports: always ReportParseError (with a line/column or a JSON path), never another
exception type, never a silently partial result. And format detection."""

from __future__ import annotations

import copy
import io
import json
import random

import pytest

from redline.server.imports.parsers import ReportParseError, detect_format, parse_report

from .helpers import EXPECTED_FILES, FIXTURES, load_expected

SINGLE_FILE_FIXTURES = [load_expected(f)["fixture"] for f in EXPECTED_FILES
                        if not (FIXTURES / load_expected(f)["fixture"]).is_dir()]


def parse_all(data: bytes, **kwargs):
    report = parse_report(io.BytesIO(data), **kwargs)
    return report, list(report.results)


def refused(data: bytes, **kwargs) -> ReportParseError:
    with pytest.raises(ReportParseError) as caught:
        parse_all(data, **kwargs)
    return caught.value


# ------------------------------------------------------------------ format detection

@pytest.mark.parametrize("fixture", SINGLE_FILE_FIXTURES)
def test_detects_every_fixture_format(fixture):
    head = (FIXTURES / fixture).read_bytes()[:65536]
    expected = {"junit": "junit", "playwright-json": "playwright-json", "ctrf": "ctrf"}[fixture.split("/")[0]]
    assert detect_format(head, None) == expected


def test_detection_details():
    assert detect_format(b'\xef\xbb\xbf{"results": {}}', None) == "ctrf"
    assert detect_format(b'{"reportFormat": "CTRF", "specVersion": "1.0.0"}', None) == "ctrf"
    assert detect_format(b'  \n{"config": {}, "suites": []}', None) == "playwright-json"
    assert detect_format(b'{"unknown": 1}', "build-ctrf.json") == "ctrf"
    assert detect_format("<testsuites/>".encode("utf-16"), None) == "junit"
    with pytest.raises(ReportParseError):
        detect_format(b'{"unknown": 1}', "report.json")
    with pytest.raises(ReportParseError):
        detect_format(b"PK\x03\x04 a zip file", "report.zip")


def test_named_format_overrides_detection_and_unknown_names_are_refused():
    report, results = parse_all((FIXTURES / "junit/vitest-junit.xml").read_bytes(), format="junit")
    assert report.format == "junit" and len(results) == 10
    assert "unknown report format" in refused(b"<testsuites/>", format="html").message
    # a JUnit file named as JSON: a JSON parse error, not a crash
    assert refused(b"<testsuites/>", format="ctrf").path == "$"


# ------------------------------------------------------------------ where the problem is

def test_empty_and_garbage_files():
    assert refused(b"").message == "the report file is empty"
    assert refused(b"   \n").line == 1
    assert refused(b"\x00\x01\x02 not a report").line == 1


def test_malformed_xml_points_at_line_and_column():
    error = refused(b'<testsuites>\n<testsuite name="s">\n<testcase name="a">\n</testsuite>\n</testsuites>')
    assert error.message.startswith("malformed XML:")
    assert (error.line, error.column) == (4, 13)


def test_truncated_xml_after_some_results_raises_while_iterating():
    """The first results stream out; the broken end still raises, so the caller (one
    transaction) stores nothing."""
    data = (FIXTURES / "junit/pytest-xunit1.xml").read_bytes()
    report = parse_report(io.BytesIO(data[: len(data) * 2 // 3]))
    results = report.results
    assert next(results).title == "test_passes"
    with pytest.raises(ReportParseError) as caught:
        list(results)
    assert caught.value.line is not None


def test_xml_that_is_not_junit():
    error = refused(b"<html><body>hello</body></html>", format="junit")
    assert "root element is <html>" in error.message and error.line == 1


def test_json_errors_carry_the_json_path():
    base = json.loads((FIXTURES / "playwright-json/playwright.json").read_text())
    broken = copy.deepcopy(base)
    broken["suites"][1]["specs"][2]["tests"] = "not a list"
    assert refused(json.dumps(broken).encode()).path == "$.suites[1].specs[2]"

    broken = copy.deepcopy(base)
    broken["suites"][0]["suites"][0]["suites"][0]["specs"][1]["tests"][0]["status"] = "exploded"
    error = refused(json.dumps(broken).encode())
    assert "exploded" in error.message and error.path == "$.suites[0].suites[0].suites[0].specs[1].tests[0]"

    assert refused(b'{"config": {}, "suites": {"a": 1}}').path == "$.suites"
    assert refused(b'{"config": {}, "suites": [1]}').path == "$.suites[0]"

    ctrf = b'{"results": {"tool": {"name": "x"}, "summary": {}, "tests": [{"name": "a", "status": "passed", "duration": 1}, 7]}}'
    assert refused(ctrf).path == "$.results.tests[1]"
    unknown = b'{"results": {"tool": {"name": "x"}, "tests": [{"name": "a", "status": "exploded", "duration": 1}]}}'
    assert refused(unknown).path == "$.results.tests[0]"


def test_truncated_and_trailing_json():
    data = (FIXTURES / "ctrf/playwright-ctrf.json").read_bytes()
    error = refused(data[: len(data) // 2])
    assert error.message.startswith("malformed JSON") and error.path.startswith("$.results.tests[")
    error = refused(data + b"{}")
    assert "malformed JSON" in error.message


def test_json_nested_too_deep():
    deep = b'{"config": {}, "suites": [' + b'{"title": "x", "suites": [' * 200 + b"]}" * 200 + b"]}"
    error = refused(deep)
    assert "nested deeper than" in error.message and error.path.startswith("$.suites[0].suites[0]")
    very_deep = b'{"config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert "nested deeper than" in refused(very_deep).message


def test_documents_missing_their_main_part():
    assert "no \"suites\"" in refused(b'{"config": {"version": "1"}}').message
    assert "no \"results.tests\"" in refused(b'{"results": {"tool": {"name": "x"}}}').message


def test_error_fields_for_a_validation_answer():
    error = ReportParseError("bad", line=3, column=4)
    assert error.to_dict() == {"message": "bad", "line": 3, "column": 4, "path": None}
    assert isinstance(error, ValueError) and str(error) == "bad (line 3, column 4)"


# ------------------------------------------------------------------ fuzzing the real fixtures

@pytest.mark.parametrize("fixture", SINGLE_FILE_FIXTURES)
def test_every_truncation_of_a_fixture_is_refused(fixture):
    data = (FIXTURES / fixture).read_bytes()
    for cut in range(1, len(data), max(1, len(data) // 15)):
        with pytest.raises(ReportParseError):
            parse_all(data[:cut])


@pytest.mark.parametrize("fixture", SINGLE_FILE_FIXTURES)
def test_corrupted_bytes_give_a_result_or_a_report_parse_error(fixture):
    data = bytearray((FIXTURES / fixture).read_bytes())
    rng = random.Random(fixture)
    for _ in range(25):
        corrupted = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            corrupted[rng.randrange(len(corrupted))] = rng.choice(b'<>"{}[],:&;\x00\xff/ \\a1')
        try:
            parse_all(bytes(corrupted))
        except ReportParseError:
            pass


def _mutate(node, rng: random.Random):
    """Replace random values in a JSON tree with values of other types."""
    replacements = [None, 7, -1, 1e308, "", "x", [], {}, [1, "a"], {"k": []}, True]
    if isinstance(node, dict):
        for key in list(node):
            if rng.random() < 0.08:
                node[key] = rng.choice(replacements)
            else:
                _mutate(node[key], rng)
    elif isinstance(node, list):
        for index in range(len(node)):
            if rng.random() < 0.08:
                node[index] = rng.choice(replacements)
            else:
                _mutate(node[index], rng)


@pytest.mark.parametrize("fixture", ["playwright-json/playwright.json", "ctrf/playwright-ctrf.json"])
def test_json_with_values_of_the_wrong_type_gives_a_result_or_a_report_parse_error(fixture):
    document = json.loads((FIXTURES / fixture).read_text())
    rng = random.Random(fixture)
    for _ in range(40):
        mutated = copy.deepcopy(document)
        _mutate(mutated, rng)
        try:
            _, results = parse_all(json.dumps(mutated).encode())
        except ReportParseError:
            continue
        for result in results:
            assert result.status in ("passed", "failed", "skipped", "flaky")
            assert isinstance(result.title, str) and isinstance(result.duration_ms, int)
