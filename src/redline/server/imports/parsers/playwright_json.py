"""Playwright's JSON reporter output (`--reporter=json`).

Shape: {"config": {...}, "suites": [file suite, ...], "errors": [...], "stats": {...}}. A file
suite holds "specs" and nested "suites" (describe blocks); a spec holds one "test" per project
(the variant), and a test holds one "result" per attempt. One result per (spec, project).

Playwright has already decided each test's outcome in `test.status`: "expected" (passed, which
includes a test.fail() that failed), "unexpected" (failed, which includes a test.fail() that
passed), "flaky" (failed, then passed on a retry) and "skipped" (test.skip, fixme, and tests
that "did not run", e.g. after a failure in a serial group: expectedStatus stays "passed").
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator

from . import outcomes
from .common import (
    full_title,
    make_error,
    normalise_path,
    normalise_tags,
    number_to_ms,
    strip_ansi,
    to_int,
)
from .errors import ReportParseError
from .json_stream import JsonEvents
from .model import ParsedError, ParsedResult

# what config keys become run metadata
_CONFIG_METADATA = {"version": "playwrightVersion", "workers": "workers", "rootDir": "rootDir"}


def parse_playwright_json(stream, metadata: dict) -> Iterator[ParsedResult]:
    """Stream the results of a Playwright JSON report; fills `metadata` as facts are read.

    Raises ReportParseError (with the JSON path) for a malformed report.
    """
    events = JsonEvents(stream)
    events.expect_map("the report")
    metadata["tool"] = "playwright"
    context = {"rootDir": None}
    saw_suites = False
    for key in events.map_keys():
        if key == "config":
            config = events.read_value()
            if not isinstance(config, dict):
                raise events.error("config must be a JSON object")
            _config_metadata(config, metadata)
            context["rootDir"] = config.get("rootDir")
        elif key == "suites":
            saw_suites = True
            for first in events.array_items("suites"):
                yield from _walk_suite(events, first, [], context, top_level=True)
        elif key == "errors":
            errors = events.read_value()
            if errors:
                # errors outside any test (a file that failed to load, global setup)
                metadata["errors"] = [strip_ansi(e.get("message")) if isinstance(e, dict) else e
                                      for e in errors]
        elif key == "stats":
            stats = events.read_value()
            if isinstance(stats, dict):
                if stats.get("startTime"):
                    metadata["startedAt"] = stats["startTime"]
                if stats.get("duration") is not None:
                    metadata["duration"] = number_to_ms(stats.get("duration"))
                # Playwright's own counts: expected, unexpected, flaky, skipped
                metadata["stats"] = {k: v for k, v in stats.items() if k not in ("startTime", "duration")}
        else:
            metadata.setdefault("extra", {})[key] = events.read_value()
    events.finish()
    if not saw_suites:
        raise ReportParseError("not a Playwright JSON report: no \"suites\"", path="$")


def _config_metadata(config: dict, metadata: dict) -> None:
    for key, name in _CONFIG_METADATA.items():
        if config.get(key) is not None:
            metadata[name] = config[key]
    actual_workers = (config.get("metadata") or {}).get("actualWorkers")
    if actual_workers is not None:
        metadata["workers"] = actual_workers
    shard = config.get("shard")
    if isinstance(shard, dict):
        metadata["shardCurrent"] = to_int(shard.get("current"))
        metadata["shardTotal"] = to_int(shard.get("total"))
    projects = [p.get("name") or p.get("id") for p in config.get("projects") or [] if isinstance(p, dict)]
    if projects:
        metadata["projects"] = projects


def _walk_suite(events: JsonEvents, first, titles: list[str], context: dict,
                top_level: bool) -> Iterator[ParsedResult]:
    """Results of one suite object and the suites nested in it. A top-level suite is a file:
    its title is the file path, not part of the suite path."""
    if first[0] != "start_map":
        raise events.error("a suite must be a JSON object")
    suite_title = None
    for key in events.map_keys():
        if key == "title":
            suite_title = events.read_value()
        elif key == "specs":
            path = titles if top_level or suite_title is None else [*titles, str(suite_title)]
            for spec_first in events.array_items("specs"):
                spec = events.read_value(spec_first)
                if not isinstance(spec, dict):
                    raise events.error("a spec must be a JSON object")
                yield from _spec_results(events, spec, path, context)
        elif key == "suites":
            path = titles if top_level or suite_title is None else [*titles, str(suite_title)]
            for child_first in events.array_items("suites"):
                yield from _walk_suite(events, child_first, path, context, top_level=False)
        else:
            events.skip_value()


def _spec_results(events: JsonEvents, spec: dict, suite_path: list[str], context: dict) -> Iterator[ParsedResult]:
    tests = spec.get("tests") or []
    if not isinstance(tests, list):
        raise events.error("spec.tests must be a JSON array")
    title = str(spec.get("title", ""))
    root = context["rootDir"]
    file_path = normalise_path(spec.get("file"), root)
    for index, test in enumerate(tests):
        if not isinstance(test, dict):
            raise ReportParseError("a test must be a JSON object", path=f"{events.where()}.tests[{index}]")
        where = f"{events.where()}.tests[{index}]"
        try:
            result = _test_result(test, spec, title, suite_path, file_path, root)
        except ReportParseError as exc:
            raise ReportParseError(exc.message, path=exc.path or where) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReportParseError(f"unreadable test: {exc}", path=where) from exc
        yield result


def _test_result(test: dict, spec: dict, title: str, suite_path: list[str], file_path: str | None,
                 root: str | None) -> ParsedResult:
    results = [r for r in test.get("results") or [] if isinstance(r, dict)]
    status_word = test.get("status")
    if status_word is None:
        status_word = "expected" if spec.get("ok", True) else "unexpected"
    try:
        status = outcomes.map_outcome(str(status_word))
    except KeyError:
        raise ReportParseError(f"unknown test status {status_word!r}") from None
    if status == outcomes.SKIPPED and any(r.get("status") == "interrupted" for r in results):
        status = outcomes.map_outcome("interrupted")  # the run was stopped while it ran

    error = None
    failing = [r for r in results if r.get("error") or r.get("errors")]
    if status in (outcomes.FAILED, outcomes.FLAKY) and failing:
        error = _result_error(failing[-1], file_path, root)
    elif status == outcomes.FAILED and test.get("expectedStatus") == "failed":
        # a test.fail() that passed: Playwright's own words for it
        error = ParsedError(message="Expected to fail, but passed.", type="expected-failure")

    final = results[-1] if results else {}
    extra = {
        "expectedStatus": test.get("expectedStatus"),
        "projectId": test.get("projectId"),
        "timeout": test.get("timeout"),
        "specId": spec.get("id"),
        "attempts": [{"status": r.get("status"), "duration": number_to_ms(r.get("duration")),
                      "retry": r.get("retry"), "workerIndex": r.get("workerIndex"),
                      "startTime": r.get("startTime")} for r in results],
    }
    if final:
        extra["workerIndex"] = final.get("workerIndex")
        extra["parallelIndex"] = final.get("parallelIndex")
        extra["startTime"] = final.get("startTime")
    if status == outcomes.SKIPPED and test.get("expectedStatus") != "skipped":
        extra["didNotRun"] = True
    extra = {k: v for k, v in extra.items() if v is not None}

    attempt = 1 if status == outcomes.SKIPPED else max(len(results), 1)
    variant = test.get("projectName") or test.get("projectId") or None
    return ParsedResult(
        title=title,
        full_title=full_title(suite_path, title),
        file_path=file_path,
        line_number=to_int(spec.get("line")),
        suite_path=list(suite_path),
        variant=variant,
        status=status,
        duration_ms=sum(number_to_ms(r.get("duration")) for r in results),
        attempt=attempt,
        retries=attempt - 1,
        error=error,
        steps=[_step(s) for s in final.get("steps") or [] if isinstance(s, dict)],
        stdout="".join(_output_text(item) for r in results for item in r.get("stdout") or []),
        stderr="".join(_output_text(item) for r in results for item in r.get("stderr") or []),
        tags=normalise_tags(spec.get("tags")),
        annotations=[{"type": a.get("type"), "description": a.get("description")}
                     for a in test.get("annotations") or [] if isinstance(a, dict)],
        attachments=[_attachment(a, r) for r in results for a in r.get("attachments") or []
                     if isinstance(a, dict)],
        extra=extra,
    )


def _result_error(result: dict, file_hint: str | None, root: str | None) -> ParsedError:
    error = result.get("error") or (result.get("errors") or [{}])[0] or {}
    location = error.get("location") or result.get("errorLocation")
    if isinstance(location, dict):
        location = {"file": normalise_path(location.get("file"), root),
                    "line": to_int(location.get("line")), "column": to_int(location.get("column"))}
    else:
        location = None
    return make_error(error.get("message") or error.get("value"), error.get("stack"),
                      location=location, file_hint=file_hint, root=root)


def _step(step: dict) -> dict:
    error = step.get("error")
    message = None
    if isinstance(error, dict):
        message = strip_ansi(error.get("message") or error.get("value"))
    return {
        "title": str(step.get("title", "")),
        # the JSON reporter writes only test.step() steps and does not name the category
        "category": step.get("category") or "test.step",
        "status": "failed" if error else "passed",
        "duration": number_to_ms(step.get("duration")),
        "error": message,
        "steps": [_step(s) for s in step.get("steps") or [] if isinstance(s, dict)],
    }


def _output_text(item) -> str:
    """A stdout/stderr chunk: {"text": ...} or {"buffer": base64}."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        return ""
    if "text" in item:
        return str(item["text"])
    if "buffer" in item:
        try:
            return base64.b64decode(item["buffer"]).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            return ""
    return ""


def _attachment(attachment: dict, result: dict) -> dict:
    entry = {"name": attachment.get("name"), "contentType": attachment.get("contentType"),
             "path": attachment.get("path")}
    if attachment.get("body") is not None:
        entry["body"] = attachment["body"]  # base64, inlined by the reporter
    if result.get("retry") is not None:
        entry["retry"] = result.get("retry")
    return entry
