"""CTRF JSON (Common Test Report Format, https://ctrf.io), e.g. playwright-ctrf-json-reporter.

Shape: {"results": {"tool": {...}, "summary": {...}, "tests": [...], "environment": {...},
"extra": {...}}, plus "reportFormat", "specVersion", ... at the top in newer documents}. Each
test has a final `status` (passed | failed | skipped | pending | other), `flaky` when it passed
after failed attempts, `retries`, and the fields the writer chose to add; fields Redline has no
column for are kept in the result's `extra`.

playwright-ctrf-json-reporter needs three corrections to agree with what Playwright printed:
- it writes `suite` as "project > file > describe > ...": the project is the variant and the
  file is the path relative to Playwright's testDir (its `filePath` is absolute);
- it marks any retried pass as flaky, even when every attempt passed (a passing test retried
  with its serial group): when `retryAttempts` are present, they decide, as the CTRF spec
  defines flaky ("passed after one or more failed attempts");
- it marks a test.fail() that passed as "passed" (Playwright counts it as failed) and one that
  failed as "passed" too. With the reporter's `annotations: true` option the "fail"
  annotation is in `extra.annotations` and `rawStatus` says what really happened; without
  that option the report cannot tell, and its status is taken as is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from . import outcomes
from .common import (
    full_title,
    make_error,
    normalise_path,
    normalise_tags,
    number_to_ms,
    to_int,
)
from .errors import ReportParseError
from .json_stream import VALUE, JsonDocument, Shape
from .model import ParsedError, ParsedResult

MAX_RETRIES = 1000  # as the API's `retries` (a larger count is junk, not worth a failure)

# test fields that have a home in ParsedResult; every other field goes to `extra`
_MAPPED_FIELDS = {
    "name", "status", "duration", "suite", "message", "trace", "filePath", "line", "retries",
    "flaky", "tags", "steps", "stdout", "stderr", "attachments", "extra",
}
SUITE_SEPARATOR = " > "

# the containers walked; every value in them (tool, summary, one test) is built whole
TESTS = Shape("results.tests", "array")
RESULTS = Shape("results", "map", {"tests": TESTS})
REPORT = Shape("the report", "map", {"results": RESULTS})


def parse_ctrf(stream, metadata: dict) -> Iterator[ParsedResult]:
    """Stream the results of a CTRF JSON report; fills `metadata` as facts are read.

    Each test is built whole in C (json_stream). Raises ReportParseError (with the JSON
    path) for a malformed report.
    """
    document = JsonDocument(stream, REPORT)
    context: dict[str, Any] = {"tool": None}
    for event, container, key, value in document:
        if event != VALUE:
            continue
        if container is TESTS:
            if type(value) is not dict:
                raise ReportParseError("a test must be a JSON object", path=f"$.results.tests[{key}]")
            try:
                result = _test_result(value, context)
            except ReportParseError as exc:
                raise ReportParseError(exc.message, path=f"$.results.tests[{key}]") from exc
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ReportParseError(f"unreadable test: {exc}", path=f"$.results.tests[{key}]") from exc
            yield result
        elif container is RESULTS:
            if key == "tool":
                if isinstance(value, dict):
                    context["tool"] = str(value.get("name") or "") or None
                    metadata["tool"] = context["tool"]
                    if value.get("version"):
                        metadata["toolVersion"] = value["version"]
                    if value.get("extra"):
                        metadata["toolExtra"] = value["extra"]
            elif key == "summary":
                _summary_metadata(value, metadata)
            elif key == "environment":
                metadata["environment"] = value
            elif key == "extra":
                if isinstance(value, dict):
                    metadata.setdefault("extra", {}).update(value)
                else:
                    metadata.setdefault("extra", {})["extra"] = value
            else:
                metadata.setdefault("extra", {})[key] = value
        else:
            # reportFormat, specVersion, reportId, timestamp, generatedBy, extra, ...
            metadata[key] = value
    if not document.saw(TESTS):
        raise ReportParseError("not a CTRF report: no \"results.tests\"", path="$.results")


def _summary_metadata(summary, metadata: dict) -> None:
    if not isinstance(summary, dict):
        return
    # the tool's own counts (passed, failed, skipped, pending, other, flaky, tests)
    metadata["summary"] = summary
    start, stop = summary.get("start"), summary.get("stop")
    if isinstance(start, (int, float)) and not isinstance(start, bool) and start > 0:
        try:
            metadata["startedAt"] = dt.datetime.fromtimestamp(start / 1000, tz=dt.UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            pass  # a start time no calendar can hold is left out, not worth refusing the report
        if isinstance(stop, (int, float)) and not isinstance(stop, bool) and stop >= start:
            metadata["duration"] = number_to_ms(stop - start)
    if summary.get("duration") is not None:
        metadata["duration"] = number_to_ms(summary.get("duration"))


def _suite_parts(test: dict) -> list[str]:
    suite = test.get("suite")
    if isinstance(suite, list):
        return [str(part) for part in suite]
    if isinstance(suite, str) and suite:
        return suite.split(SUITE_SEPARATOR)
    return []


def _identity(test: dict, tool: str | None) -> tuple[list[str], str | None, str | None]:
    """(suite_path, file_path, variant) of a test."""
    parts = _suite_parts(test)
    file_path = normalise_path(test.get("filePath"))
    if tool == "playwright" and len(parts) >= 2 and file_path and (
            file_path == parts[1] or file_path.endswith("/" + parts[1])):
        # playwright-ctrf-json-reporter: "project > file > describe > ..."
        return parts[2:], normalise_path(parts[1]), parts[0] or None
    if file_path and parts and normalise_path(parts[0]) == file_path:
        parts = parts[1:]  # a suite path that starts with the file (pytest-json-ctrf does)
    return parts, file_path, None


def _annotations(extra: dict) -> list[dict]:
    annotations = extra.get("annotations") if isinstance(extra, dict) else None
    return [{"type": a.get("type"), "description": a.get("description")}
            for a in annotations or [] if isinstance(a, dict)]


def _status(test: dict, annotations: list[dict], tool: str | None) -> tuple[str, ParsedError | None]:
    """The result's status, and an error when the status itself is the failure."""
    raw = test.get("status")
    try:
        status = outcomes.map_outcome(str(raw))
    except KeyError:
        raise ReportParseError(f"unknown test status {raw!r}") from None
    expected_to_fail = any(a.get("type") == "fail" for a in annotations)
    raw_status = str(test.get("rawStatus") or "")
    if tool == "playwright" and expected_to_fail and raw_status:
        # see the module docstring: rawStatus is what happened, the annotation what was expected
        if raw_status == "passed":
            return outcomes.FAILED, ParsedError(message="Expected to fail, but passed.",
                                                type="expected-failure")
        if raw_status in ("failed", "timedOut"):
            return outcomes.PASSED, None
    if status == outcomes.PASSED:
        attempts = [a for a in test.get("retryAttempts") or [] if isinstance(a, dict)]
        if attempts:
            # The spec's flaky means "passed after failed attempts"; the attempts say whether
            # any failed (playwright-ctrf-json-reporter sets flaky on any retried pass, e.g. a
            # passing test retried with its serial group).
            statuses = [outcomes.OUTCOMES.get(str(a.get("status")).lower(), outcomes.FAILED)
                        for a in attempts]
            return outcomes.status_of_attempts([*statuses, outcomes.PASSED]), None
        if test.get("flaky") is True:
            return outcomes.FLAKY, None
    return status, None


def _test_result(test: dict, context: dict) -> ParsedResult:
    tool = context["tool"]
    title = str(test.get("name", ""))
    test_extra = test["extra"] if isinstance(test.get("extra"), dict) else {}
    annotations = _annotations(test_extra)
    status, status_error = _status(test, annotations, tool)
    suite_path, file_path, variant = _identity(test, tool)

    retry_attempts = [a for a in test.get("retryAttempts") or [] if isinstance(a, dict)]
    retries = to_int(test.get("retries"))
    if retry_attempts:
        retries = len(retry_attempts)
    attempt = 1 if status == outcomes.SKIPPED else min(retries or 0, MAX_RETRIES) + 1

    error = status_error
    if error is None and status in (outcomes.FAILED, outcomes.FLAKY):
        message, trace = test.get("message"), test.get("trace")
        if status == outcomes.FLAKY or not (message or trace):
            failed = [a for a in retry_attempts if a.get("message") or a.get("trace")]
            if failed:
                message, trace = failed[-1].get("message"), failed[-1].get("trace")
        if message or trace:
            error = make_error(message, trace, file_hint=file_path)

    extra = dict(test_extra)
    extra.pop("annotations", None)
    for key, value in test.items():
        if key not in _MAPPED_FIELDS:
            extra.setdefault(key, value)

    duration = number_to_ms(test.get("duration"))
    if retry_attempts:
        duration += sum(number_to_ms(a.get("duration")) for a in retry_attempts)
    return ParsedResult(
        title=title,
        full_title=full_title(suite_path, title),
        file_path=file_path,
        line_number=to_int(test.get("line")),
        suite_path=suite_path,
        variant=variant,
        status=status,
        duration_ms=duration,
        attempt=attempt,
        retries=attempt - 1,
        error=error,
        steps=[_step(s) for s in test.get("steps") or [] if isinstance(s, dict)],
        stdout="".join(str(line) for line in test.get("stdout") or []),
        stderr="".join(str(line) for line in test.get("stderr") or []),
        tags=normalise_tags(test.get("tags")),
        annotations=annotations,
        attachments=[{"name": a.get("name"), "contentType": a.get("contentType"), "path": a.get("path")}
                     for a in test.get("attachments") or [] if isinstance(a, dict)],
        extra=extra,
    )


def _step(step: dict) -> dict:
    status = str(step.get("status") or "passed")
    try:
        status = outcomes.map_outcome(status)
    except KeyError:
        pass
    return {
        "title": str(step.get("name", "")),
        "category": step.get("category") or "test.step",
        "status": status,
        "duration": number_to_ms(step.get("duration")),
        "error": step.get("message"),
        "steps": [_step(s) for s in step.get("steps") or [] if isinstance(s, dict)],
    }
