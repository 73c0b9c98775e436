"""The streaming JSON reader under the Playwright and CTRF parsers (parsers/json_stream.py):
whatever the chunks the stream hands out, the same results; nesting counted as JSON nests,
not as brackets in strings; exact container types; the values a database cannot hold refused
or repaired."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from redline.server.imports.parsers import ReportParseError, parse_report
from redline.server.imports.parsers.common import MAX_JSON_DEPTH

from .helpers import FIXTURES
from .synthetic import playwright_report

JSON_FIXTURES = ["playwright-json/playwright.json", "playwright-json/playwright-shard-1-of-2.json",
                 "ctrf/playwright-ctrf.json"]


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes per read, so every token, escape and multi-byte
    character lands on a chunk boundary somewhere."""

    def __init__(self, data: bytes, sizes=(1, 2, 3, 5, 7, 11, 13, 64)):
        self._data = memoryview(data)
        self._sizes = sizes
        self._reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        step = self._sizes[self._reads % len(self._sizes)]
        self._reads += 1
        if size is not None and size >= 0:
            step = min(step, size)
        chunk, self._data = bytes(self._data[:step]), self._data[step:]
        return chunk


def parsed(data: bytes, stream=None, format: str = "auto") -> tuple[list[dict], dict]:
    report = parse_report(stream or io.BytesIO(data), format)
    results = [dataclasses.asdict(result) for result in report.results]
    return results, report.metadata


def refused(data: bytes, stream=None, format: str = "auto") -> ReportParseError:
    with pytest.raises(ReportParseError) as caught:
        parsed(data, stream, format)
    return caught.value


def playwright(suites: list, **top) -> bytes:
    return json.dumps({"config": {"rootDir": "/r"}, "suites": suites, **top}).encode()


def spec(title: str, **fields) -> dict:
    return {"title": title, "file": "a.spec.ts", "line": 1,
            "tests": [{"projectName": "p", "status": "expected", "results": []}], **fields}


@pytest.mark.parametrize("fixture", JSON_FIXTURES)
def test_tiny_reads_give_the_same_results(fixture):
    data = (FIXTURES / fixture).read_bytes()
    assert parsed(data, Trickle(data)) == parsed(data)


def test_tiny_reads_of_a_synthetic_report_and_of_multibyte_text():
    data = playwright_report(200)
    assert parsed(data, Trickle(data, sizes=(4096, 1, 999))) == parsed(data)
    accents = playwright([{"title": "f", "specs": [spec("prüft «Größe» ✓ 😀 \\\" [[[", tags=["é"])]}])
    assert parsed(accents, Trickle(accents)) == parsed(accents)
    assert parsed(accents)[0][0]["title"] == "prüft «Größe» ✓ 😀 \\\" [[["


def test_brackets_and_escaped_quotes_in_strings_are_not_nesting():
    noisy = "[" * 300 + '\\"' + "{" * 300 + "\\\\" + "]" * 10
    data = playwright([{"title": noisy, "specs": [spec(noisy)], "suites": []}])
    for stream in (None, Trickle(data, sizes=(1, 7, 300))):
        results, _ = parsed(data, stream)
        assert [r["title"] for r in results] == [noisy]


def _nested_config(levels: int) -> bytes:
    """A report whose config nests `levels` arrays (the root object is one level more)."""
    return b'{"config": {"x": ' + b"[" * (levels - 2) + b"]" * (levels - 2) + b'}, "suites": []}'


@pytest.mark.parametrize("sizes", [None, (1,), (5, 64)])
def test_nesting_is_refused_exactly_past_the_limit(sizes):
    deepest = _nested_config(MAX_JSON_DEPTH)
    assert parsed(deepest, Trickle(deepest, sizes) if sizes else None)[0] == []
    too_deep = _nested_config(MAX_JSON_DEPTH + 1)
    error = refused(too_deep, Trickle(too_deep, sizes) if sizes else None)
    assert error.message == f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    assert error.path == "$.config.x" + "[0]" * (MAX_JSON_DEPTH - 2)


def test_container_types_of_the_skeleton_are_exact():
    for suites, message in (({}, "suites must be a JSON array"), ([[]], "a suite must be a JSON object"),
                            ("x", "suites must be a JSON array")):
        assert refused(playwright(suites)).message == message
    assert refused(b'{"results": []}').message == "results must be a JSON object"
    assert refused(b'{"results": {"tests": {}}}').message == "results.tests must be a JSON array"
    assert refused(b'["config", "suites"]', format="playwright-json").message == "the report must be a JSON object"


def test_syntax_errors_point_inside_the_value():
    data = playwright([{"title": "f", "specs": [spec("a"), spec("b")]}]).replace(b'"title": "b"', b'"title": b"')
    error = refused(data)
    assert error.message.startswith("malformed JSON") and error.path == "$.suites[0].specs[1].title"
    truncated = playwright([{"title": "f", "specs": [spec("a"), spec("b")]}])[:-40]
    error = refused(truncated, Trickle(truncated))
    assert "premature EOF" in error.message and error.path.startswith("$.suites[0].specs[1].tests[0]")
    assert refused(playwright([]) + b" {}").message == "malformed JSON: Extra data after the document"


def test_not_utf8_is_refused_where_it_is():
    data = playwright([{"title": "f", "specs": [spec("a"), spec("b")]}]).replace(b'"b"', b'"\xff"')
    error = refused(data)
    assert error.message.startswith("malformed JSON: not UTF-8") and error.path == "$.suites[0].specs[1].title"


def test_numbers_json_cannot_mean_are_refused():
    assert "NaN" in refused(playwright([], stats={"duration": float("nan")})).message
    assert "out of range" in refused(b'{"config": {"workers": 1e400}, "suites": []}').message
    error = refused(b'{"config": {"workers": 12345678901234567890}, "suites": []}')
    assert error.message == "malformed JSON: integer overflow" and error.path == "$.config.workers"
    # 64 bits, and long digit runs in strings, are fine
    report = parse_report(io.BytesIO(b'{"config": {"workers": 9223372036854775807, "rootDir": '
                                     b'"12345678901234567890"}, "suites": []}'))
    assert list(report.results) == [] and report.metadata["workers"] == 2 ** 63 - 1


def test_half_surrogate_escapes_become_replacement_characters():
    data = playwright([{"title": "f", "specs": [spec("a \\ud800 b \\udc00 \\ud83d\\ude00")]}]).replace(b"\\\\u", b"\\u")
    results, _ = parsed(data, Trickle(data))
    assert results[0]["title"] == "a \ufffd b \ufffd \U0001f600"
    results[0]["title"].encode("utf-8")  # a database can store it


def test_suites_are_read_in_document_order():
    """A suite's title applies to the specs and suites that come after it; a key given twice
    counts twice (the reader walks suites as they come, it does not build them)."""
    data = (b'{"config": {}, "suites": [{"title": "f.spec.ts", "suites": [{"specs": [SPEC_A], '
            b'"title": "Outer", "specs": [SPEC_B], "suites": [{"title": "Inner", "specs": [SPEC_C]}], '
            b'"specs": [SPEC_D]}]}]}')
    for name in b"ABCD":
        data = data.replace(b"SPEC_" + bytes([name]), json.dumps(spec(chr(name))).encode())
    results, _ = parsed(data, Trickle(data))
    assert [r["full_title"] for r in results] == ["A", "Outer > B", "Outer > Inner > C", "Outer > D"]
