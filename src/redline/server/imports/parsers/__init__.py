"""Report parsers: JUnit XML, Playwright JSON and CTRF JSON into Redline's results.

Pure Python: no database, no HTTP. The import service calls `parse_report` and stores what it
yields in one transaction.

    parse_report(stream, format="auto", filename=None) -> ParsedReport
        .format    'junit' | 'playwright-json' | 'ctrf'
        .results   generator of ParsedResult (the file is read while it is iterated)
        .metadata  run-level facts (startedAt, duration, playwrightVersion, shard, tool, ...)
    detect_format(head, filename) -> str
    combine_results(reports) -> iterator of ParsedResult, for several files of one run
    ReportParseError(ValueError): .message, .line, .column, .path

Every problem with a file's content raises ReportParseError, never another exception type and
never a silently partial result; because results are streamed, it may be raised while
iterating. Outcome words map to statuses through one table, `outcomes.OUTCOMES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from .ctrf import parse_ctrf
from .errors import ReportParseError
from .junit import parse_junit
from .model import ParsedError, ParsedReport, ParsedResult
from .playwright_json import parse_playwright_json

__all__ = [
    "FORMATS",
    "ParsedError",
    "ParsedReport",
    "ParsedResult",
    "ReportParseError",
    "combine_results",
    "detect_format",
    "parse_report",
]

FORMATS = ("junit", "playwright-json", "ctrf")
# how much of the file detect_format and the prolog check look at
HEAD_SIZE = 64 * 1024
_PARSERS = {"junit": parse_junit, "playwright-json": parse_playwright_json, "ctrf": parse_ctrf}
_UTF8_BOM = b"\xef\xbb\xbf"
_FIRST_JSON_KEY = re.compile(rb'^\s*\{\s*"((?:[^"\\]|\\.){0,64})"')
_CTRF_FIRST_KEYS = {b"results", b"reportFormat", b"specVersion", b"reportId", b"timestamp",
                    b"generatedBy", b"runId"}
_PLAYWRIGHT_FIRST_KEYS = {b"config", b"suites"}


def detect_format(head: bytes, filename: str | None) -> str:
    """Which format a report is in, from its first bytes (and its file name when the bytes
    alone cannot tell). Raises ReportParseError when it is none of the known formats."""
    text = _without_byte_order_mark(head).replace(b"\x00", b"").lstrip()
    lowered_name = (filename or "").lower()
    if text.startswith(b"<"):
        return "junit"
    if text.startswith(b"{"):
        match = _FIRST_JSON_KEY.match(text)
        first_key = match.group(1) if match else b""
        if first_key in _CTRF_FIRST_KEYS or b'"reportFormat": "CTRF"' in text[:4096]:
            return "ctrf"
        if first_key in _PLAYWRIGHT_FIRST_KEYS:
            return "playwright-json"
        if "ctrf" in lowered_name:
            return "ctrf"
        if b'"suites"' in text and b'"specs"' in text:
            return "playwright-json"
        raise ReportParseError("cannot tell the JSON report format: expected a Playwright JSON report "
                               "(\"config\", \"suites\") or a CTRF report (\"results\")", path="$")
    if lowered_name.endswith(".xml"):
        return "junit"
    if not text:
        raise ReportParseError("the report file is empty", line=1, column=1)
    raise ReportParseError("not a report: expected JUnit XML, Playwright JSON or CTRF JSON",
                           line=1, column=1)


def _without_byte_order_mark(head: bytes) -> bytes:
    """The bytes after a UTF-8/16/32 byte order mark. NULs are dropped by the callers, so a
    UTF-16 file reads as ASCII for the checks below."""
    for mark in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", _UTF8_BOM, b"\xfe\xff", b"\xff\xfe"):
        if head.startswith(mark):
            return head[len(mark):]
    return head


class _HeadThenRest:
    """A read()-able stream that replays the already-read head, then reads on."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)


def _read_head(stream: BinaryIO) -> bytes:
    head = b""
    while len(head) < HEAD_SIZE:
        chunk = stream.read(HEAD_SIZE - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _refuse_doctype_in_prolog(head: bytes) -> None:
    """Refuse a DOCTYPE before lxml sees it: entity declarations (billion laughs, quadratic
    blowup, external entities) and external DTDs live there, and no JUnit writer emits one.
    NUL bytes are dropped first so a UTF-16 file cannot hide the keyword."""
    text = _without_byte_order_mark(head).replace(b"\x00", b"")
    root_start = re.search(rb"<[A-Za-z_]", text)
    prolog = text[: root_start.start()] if root_start else text
    declaration = re.search(rb"<!DOCTYPE|<!ENTITY", prolog, flags=re.IGNORECASE)
    if declaration:
        line = prolog[: declaration.start()].count(b"\n") + 1
        raise ReportParseError("DOCTYPE declarations are not allowed in a report file", line=line)


# Each result's stdout, stderr, error message and stack are kept up to this many bytes (UTF-8)
# by default (the server passes REDLINE_MAX_RESULT_TEXT_BYTES).
MAX_FIELD_BYTES = 1024 * 1024


def parse_report(stream: BinaryIO, format: str = "auto", filename: str | None = None,
                 max_field_bytes: int = MAX_FIELD_BYTES) -> ParsedReport:
    """Parse one report file (a binary stream, read once, never whole into memory).

    `format` is 'junit', 'playwright-json', 'ctrf' or 'auto' (detected from the first bytes
    and `filename`). Raises ReportParseError for an unknown format or a malformed file; the
    returned report's `results` may raise it too, while being iterated. Each result's output
    and error text over `max_field_bytes` is cut (`cut_text`).
    """
    head = _read_head(stream)
    if format == "auto":
        format = detect_format(head, filename)
    if format not in _PARSERS:
        raise ReportParseError(f"unknown report format {format!r}; expected one of {', '.join(FORMATS)} or auto")
    if not head.strip():
        raise ReportParseError("the report file is empty", line=1, column=1)
    if format == "junit":
        _refuse_doctype_in_prolog(head)
    elif head.startswith(_UTF8_BOM):
        head = head[len(_UTF8_BOM):]  # yajl does not accept a byte order mark
    metadata: dict = {}
    generator = _capped(_guarded(_PARSERS[format](_HeadThenRest(head, stream), metadata)),
                        max_field_bytes)
    return ParsedReport(format=format, results=_primed(_named(generator, filename)),
                        metadata=metadata)


def _named(results: Iterator[ParsedResult], filename: str | None) -> Iterator[ParsedResult]:
    """The results; a ReportParseError raised while they are read names the file (with
    several files, the error is raised far from where the file was known)."""
    try:
        yield from results
    except ReportParseError as exc:
        if exc.filename is None:
            exc.filename = filename
        raise


# What a parser may trip over on content it did not expect (a number where a string should
# be, ...). Stream errors (OSError, the server's own size-limit error) are not content errors
# and pass through unchanged.
_CONTENT_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError,
                   UnicodeError, OverflowError)


def _guarded(generator: Iterator[ParsedResult]) -> Iterator[ParsedResult]:
    """Let only ReportParseError out of a parser, whatever the content does to it."""
    try:
        yield from generator
    except ReportParseError:
        raise
    except _CONTENT_ERRORS as exc:
        raise ReportParseError(f"unreadable report: {type(exc).__name__}: {exc}") from exc


def cut_text(text: str, max_bytes: int) -> str:
    """`text` if it fits in `max_bytes` (UTF-8), else its head and tail with a visible
    `[... N bytes cut ...]` between them (the end of a log says most often why it failed)."""
    if len(text) * 4 <= max_bytes:  # fits whatever the characters
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    keep = max(0, max_bytes - 40)
    head, tail = data[:keep // 2], data[len(data) - (keep - keep // 2):]
    cut = len(data) - len(head) - len(tail)
    return (head.decode("utf-8", "ignore") + f"\n[... {cut} bytes cut ...]\n"
            + tail.decode("utf-8", "ignore"))


def _capped(generator: Iterator[ParsedResult], max_bytes: int) -> Iterator[ParsedResult]:
    for result in generator:
        result.stdout = cut_text(result.stdout, max_bytes)
        result.stderr = cut_text(result.stderr, max_bytes)
        if result.error is not None:
            result.error.message = cut_text(result.error.message, max_bytes)
            if result.error.stack is not None:
                result.error.stack = cut_text(result.error.stack, max_bytes)
        yield result


def _primed(generator: Iterator[ParsedResult]) -> Iterator[ParsedResult]:
    """Run the parser up to its first result now, so `metadata` already holds the facts that
    precede the results (and a file broken at its start fails in parse_report itself)."""
    try:
        first = next(generator)
    except StopIteration:
        return iter(())

    def results() -> Iterator[ParsedResult]:
        yield first
        yield from generator

    return results()


def combine_results(reports: Iterable[ParsedReport]) -> Iterator[ParsedResult]:
    """The results of several report files of ONE run (e.g. Surefire's TEST-*.xml, one per
    class), each test once.

    A test that appears in more than one file is one test reported twice: Surefire does this
    when it reruns the tests of a class that has @Nested classes, writing the first attempt
    in one file and all attempts in another. The occurrence with the most attempts is kept.
    Two results with the same identity in the SAME file stay two results (see junit.py).
    Holds the results in memory until all files are read.
    """
    kept: dict[tuple, tuple[int, ParsedResult]] = {}
    order: list[tuple] = []
    for file_index, report in enumerate(reports):
        seen_in_this_file: dict[tuple, int] = {}
        for result in report.results:
            identity = (result.file_path, result.full_title, result.variant)
            occurrence = seen_in_this_file.get(identity, 0)
            seen_in_this_file[identity] = occurrence + 1
            key = (*identity, occurrence)
            previous = kept.get(key)
            if previous is None:
                order.append(key)
                kept[key] = (file_index, result)
            elif previous[0] != file_index and result.attempt >= previous[1].attempt:
                kept[key] = (file_index, result)
    for key in order:
        yield kept[key][1]
