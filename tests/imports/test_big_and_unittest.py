"""Reports a new user met (issue 21): a test with more than 10 MB of output, and
unittest-style classes whose JUnit classname carries no file."""

from __future__ import annotations

import io

import pytest

from redline.server.imports.parsers import ReportParseError, cut_text, parse_report

MiB = 1024 * 1024


def _junit(testcases: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
            f'<testsuite name="pytest" tests="2">{testcases}</testsuite></testsuites>').encode()


def test_a_test_with_12_mb_of_output_is_kept_cut_to_the_cap_and_nothing_else_is_lost():
    output = "line of output\n" * (12 * MiB // 15)
    report = _junit(
        '<testcase classname="tests.test_log" name="test_noisy" time="0.5">'
        f'<failure message="it broke">Traceback...</failure><system-out>{output}</system-out>'
        '</testcase><testcase classname="tests.test_log" name="test_quiet" time="0.1"/>')
    results = list(parse_report(io.BytesIO(report), "junit", max_field_bytes=MiB).results)
    assert [r.title for r in results] == ["test_noisy", "test_quiet"]
    noisy = results[0]
    assert noisy.status == "failed" and noisy.error.message == "it broke"
    kept = noisy.stdout.encode()
    assert MiB - 100 <= len(kept) <= MiB
    cut = len(output.encode()) - len(kept) + len("\n[... 0 bytes cut ...]\n")
    assert "bytes cut ...]" in noisy.stdout
    assert noisy.stdout.startswith("line of output\n") and noisy.stdout.endswith("output\n")
    assert abs(int(noisy.stdout.split("[... ")[1].split(" bytes")[0]) - cut) < 16


def test_a_truly_malformed_report_is_still_refused():
    with pytest.raises(ReportParseError, match="malformed XML"):
        list(parse_report(io.BytesIO(_junit("<testcase name='x'>") [:-20]), "junit").results)


def test_entities_stay_unexpanded_with_huge_text_allowed():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaaaaaaaa">]>'
            b'<testsuite><testcase name="x">&a;</testcase></testsuite>')
    with pytest.raises(ReportParseError):
        list(parse_report(io.BytesIO(bomb), "junit").results)


def test_cut_text_keeps_short_text_and_cuts_long_text_visibly():
    assert cut_text("short", 100) == "short"
    long = "é" * 1000  # 2,000 bytes
    cut = cut_text(long, 500)
    assert len(cut.encode()) <= 500 and "[... " in cut and " bytes cut ...]" in cut


def test_unittest_classes_keep_their_module_as_the_file_and_the_class_in_the_title():
    report = _junit(
        '<testcase classname="tests.test_more.ChunkedTests" name="test_one" time="0.1"/>'
        '<testcase classname="tests.test_more.ChunkedTests" name="test_two" time="0.1"/>'
        '<testcase classname="tests.test_more.TestPlain" name="test_three" time="0.1"/>'
        '<testcase classname="tests.test_more" name="test_function" time="0.1"/>')
    results = list(parse_report(io.BytesIO(report), "junit").results)
    assert {r.file_path for r in results} == {"tests/test_more.py"}
    by_title = {r.title: r for r in results}
    assert by_title["test_one"].suite_path == ["ChunkedTests"]
    assert by_title["test_one"].full_title.startswith("ChunkedTests")
    assert by_title["test_three"].suite_path == ["TestPlain"]
    assert by_title["test_function"].suite_path == []


def test_an_import_through_the_api_keeps_12_mb_of_output_cut_to_the_setting(tenant):
    output = "x" * (12 * MiB)
    report = _junit('<testcase classname="tests.test_log" name="test_noisy" time="0.5">'
                    f'<system-out>{output}</system-out></testcase>'
                    '<testcase classname="tests.test_log" name="test_quiet" time="0.1"/>')
    with tenant.as_key() as client:
        client.timeout = 120
        response = client.post("/api/runs/import", content=report,
                               headers={"Content-Type": "application/xml"})
        assert response.status_code == 201, response.text[:300]
        run_id = response.json()["id"]
        tests = client.get("/api/tests", params={"runId": run_id}).json()["data"]
        assert len(tests) == 2
        noisy = next(t for t in tests if t["title"] == "test_noisy")
        full = client.get(f"/api/tests/{noisy['id']}").json()
    assert MiB - 100 <= len(full["stdout"].encode()) <= MiB  # REDLINE_MAX_RESULT_TEXT_BYTES
    assert "bytes cut ...]" in full["stdout"]
