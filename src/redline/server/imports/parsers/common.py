"""Small helpers every parser shares: paths, titles, ANSI colours, error details."""

from __future__ import annotations

import math
import re

from redline.server.kit.numbers import INT32_MAX, clamp_duration

from .model import ParsedError

TITLE_SEPARATOR = " > "

# Deepest nesting a report may have. Real reports stay far below (a JUnit file is 3-5 levels,
# a Playwright JSON report about 8 plus 2 per nested describe); the limits stop a hostile file
# from exhausting the parser's stack or memory.
MAX_XML_DEPTH = 64
MAX_JSON_DEPTH = 128

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:/")


def strip_ansi(text: str | None) -> str | None:
    """Remove terminal colour codes (Playwright and Jest colour their error messages)."""
    if text is None:
        return None
    if type(text) is str and "\x1b" not in text:  # nothing to remove
        return text
    return _ANSI_ESCAPE.sub("", text)


def normalise_path(path: str | None, root: str | None = None) -> str | None:
    """A file path as Redline stores it: '/' separators, no leading './', relative to `root`
    when it lies under it. An absolute path outside `root` is kept absolute: guessing a root
    would give the same test different identities on different machines."""
    if path is None:
        return None
    path = str(path).strip().replace("\\", "/")
    if not path:
        return None
    while "//" in path:
        path = path.replace("//", "/")
    if root:
        root = str(root).replace("\\", "/").rstrip("/") + "/"
        path = path.removeprefix(root)
    while path.startswith("./"):
        path = path[2:]
    return path or None


def is_absolute(path: str) -> bool:
    return path.startswith("/") or bool(_WINDOWS_DRIVE.match(path))


def full_title(suite_path: list[str], title: str) -> str:
    """'Suite > Describe > title'."""
    return TITLE_SEPARATOR.join([*suite_path, title])


def normalise_tags(tags) -> list[str]:
    """Tags without their leading '@' (Playwright's JSON drops it, its CTRF reporter keeps it)."""
    normalised = []
    for tag in tags or []:
        tag = str(tag).strip().lstrip("@")
        if tag and tag not in normalised:
            normalised.append(tag)
    return normalised


def tags_in_title(title: str) -> list[str]:
    """'@smoke' words in a title (Playwright's way of tagging by title)."""
    return normalise_tags(re.findall(r"(?:^|\s)(@[\w:-]+)", title))


def seconds_to_ms(value) -> int:
    """A duration in seconds ('0.012', '1,234.5') as whole milliseconds; junk or negative -> 0.

    Some JUnit writers format times with thousands separators; a duration that cannot be read
    is not worth refusing a whole report for.
    """
    if value is None:
        return 0
    try:
        # a plain number as it is (float() refuses any comma, so the result is the same)
        seconds = float(value) if type(value) is str else None
    except ValueError:
        seconds = None
    if seconds is None:
        try:
            seconds = float(str(value).replace(",", ""))
        except ValueError:
            return 0
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return 0
    return clamp_duration(round(seconds * 1000))


def number_to_ms(value) -> int:
    """A duration already in milliseconds (JSON formats) as a whole number; junk -> 0, and
    beyond what Redline keeps (`MAX_DURATION_MS`) -> that ceiling."""
    kind = type(value)
    if kind is int:
        return clamp_duration(max(value, 0))
    if kind is float:  # NaN compares false
        return clamp_duration(round(value)) if 0 <= value < math.inf else 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if math.isnan(value) or math.isinf(value) or value < 0:
        return 0
    return clamp_duration(round(value))


def to_int(value) -> int | None:
    """An integer attribute ('12') or None when missing, not a number, or beyond what an
    Integer column keeps (a line number, a count)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if -INT32_MAX - 1 <= number <= INT32_MAX else None


# "Expected: 5\nReceived: 4" (Jest, Vitest, Playwright) and JUnit 5's
# "expected: <4> but was: <5>".
_EXPECTED_RECEIVED = re.compile(r"^\s*Expected(?: value)?:\s?(.*?)\s*\n\s*Received(?: value)?:\s?(.*?)\s*$",
                                re.MULTILINE)
_EXPECTED_BUT_WAS = re.compile(r"expected:\s*<(.*?)>\s*but was:\s*<(.*?)>", re.DOTALL)
_ERROR_NAME = re.compile(r"^(?:Uncaught )?([A-Za-z_$][\w$.]*(?:Error|Exception|Failure))\b:?")
_MATCHER = re.compile(r"expect\(.*?\)\.(not\.)?(\w+)")
# "path/to/file.ts:12:5" or "file.py:30" inside a stack trace
_STACK_LOCATION = re.compile(r"(?:\(|\s|^|file://)((?:[A-Za-z]:)?[^\s()'\"<>:]+\.[A-Za-z]{1,5}):(\d+)(?::(\d+))?",
                             re.MULTILINE)


def expected_and_actual(text: str | None) -> tuple[str | None, str | None]:
    """The expected and actual values an assertion message states, when it states them."""
    if not text:
        return None, None
    # (each pattern only where its words are: a search costs more than a look for a word)
    match = _EXPECTED_RECEIVED.search(text) if "Received" in text else None
    if match:
        return match.group(1), match.group(2)
    match = _EXPECTED_BUT_WAS.search(text) if "but was:" in text else None
    if match:
        return match.group(1), match.group(2)
    return None, None


def error_type_from_message(message: str | None) -> str | None:
    """'TypeError' from 'TypeError: x', or 'expect.toBe' for a failed expect() matcher."""
    if not message:
        return None
    matcher = _MATCHER.search(message) if "expect(" in message else None
    if matcher:
        return f"expect.{matcher.group(1) or ''}{matcher.group(2)}"
    name = _ERROR_NAME.match(message.strip())
    return name.group(1) if name else None


def location_from_stack(stack: str | None, file_hint: str | None = None,
                        root: str | None = None) -> dict | None:
    """Where a stack trace says the failure happened: the frame in the test's own file when
    there is one, else the first frame outside dependencies."""
    if not stack:
        return None
    frames = [(m.group(1), int(m.group(2)), int(m.group(3)) if m.group(3) else None)
              for m in _STACK_LOCATION.finditer(stack)]
    frames = [f for f in frames if "node_modules/" not in f[0] and "site-packages/" not in f[0]
              and not f[0].startswith("node:")]
    if not frames:
        return None
    chosen = frames[0]
    if file_hint:
        for frame in frames:
            if (normalise_path(frame[0]) or "").endswith(file_hint):
                chosen = frame
                break
    return {"file": normalise_path(chosen[0], root), "line": chosen[1], "column": chosen[2]}


def first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def make_error(message: str | None, stack: str | None, error_type: str | None = None,
               location: dict | None = None, file_hint: str | None = None,
               root: str | None = None) -> ParsedError:
    """A ParsedError with colour codes removed and expected/actual/location filled in when the
    message or stack states them."""
    message = strip_ansi(message) or ""
    stack = strip_ansi(stack) or None
    if not message.strip():
        message = first_line(stack)
    expected, actual = expected_and_actual(message)
    if expected is None and stack:
        expected, actual = expected_and_actual(stack)
    if location is None:
        location = location_from_stack(stack, file_hint, root)
    return ParsedError(message=message, stack=stack, type=error_type or error_type_from_message(message),
                       expected=expected, actual=actual, location=location)
