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
from .json_stream import END, START, VALUE, JsonDocument, Shape
from .model import ParsedError, ParsedResult

# what config keys become run metadata
_CONFIG_METADATA = {"version": "playwrightVersion", "workers": "workers", "rootDir": "rootDir"}

# the containers walked (a suite's suites nest); every value in them (config, stats, a suite's
# title, one spec) is built whole
SPECS = Shape("specs", "array")
SUITE = Shape("a suite", "map")
SUITES = Shape("suites", "array", item=SUITE)
SUITE.children.update({"specs": SPECS, "suites": SUITES})
REPORT = Shape("the report", "map", {"suites": SUITES})


class _Suite:
    """A suite object being read: its JSON path and the titles of the suites around it.
    A top-level suite is a file: its title is the file path, not part of the suite path."""

    __slots__ = ("child_titles", "path", "spec_titles", "title", "titles", "top_level")

    def __init__(self, path: str, titles: list[str], top_level: bool):
        self.path = path
        self.titles = titles
        self.top_level = top_level
        self.title = None
        self.spec_titles = titles  # for the specs that follow, and the suites that follow
        self.child_titles = titles

    def titles_so_far(self) -> list[str]:
        """Keys are read in document order: specs listed before the suite's title do not get it."""
        if self.top_level or self.title is None:
            return self.titles
        return [*self.titles, str(self.title)]


def parse_playwright_json(stream, metadata: dict) -> Iterator[ParsedResult]:
    """Stream the results of a Playwright JSON report; fills `metadata` as facts are read.

    Suites are walked as they are read; each spec is built whole in C (json_stream). Raises
    ReportParseError (with the JSON path) for a malformed report.
    """
    document = JsonDocument(stream, REPORT)
    metadata["tool"] = "playwright"
    context = {"rootDir": None}
    suites: list[_Suite] = []  # the suites being read, outermost first
    for event, shape, key, value in document:
        if event == VALUE:
            if shape is SPECS:
                suite = suites[-1]
                if type(value) is not dict:
                    raise ReportParseError("a spec must be a JSON object", path=f"{suite.path}.specs[{key}]")
                yield from _spec_results(value, suite.path, key, suite.spec_titles, context)
            elif shape is SUITE:
                if key == "title":
                    suites[-1].title = value
            elif key == "config":
                if not isinstance(value, dict):
                    raise ReportParseError("config must be a JSON object", path="$.config")
                _config_metadata(value, metadata)
                context["rootDir"] = value.get("rootDir")
            elif key == "errors":
                if value:
                    # errors outside any test (a file that failed to load, global setup)
                    metadata["errors"] = [strip_ansi(e.get("message")) if isinstance(e, dict) else e
                                          for e in value]
            elif key == "stats":
                if isinstance(value, dict):
                    if value.get("startTime"):
                        metadata["startedAt"] = value["startTime"]
                    if value.get("duration") is not None:
                        metadata["duration"] = number_to_ms(value.get("duration"))
                    # Playwright's own counts: expected, unexpected, flaky, skipped
                    metadata["stats"] = {k: v for k, v in value.items() if k not in ("startTime", "duration")}
            else:
                metadata.setdefault("extra", {})[key] = value
        elif event == START:
            if shape is SUITE:
                parent = suites[-1] if suites else None
                suites.append(_Suite(value, parent.child_titles if parent else [], top_level=parent is None))
            elif shape is SPECS:
                suites[-1].spec_titles = suites[-1].titles_so_far()
            elif shape is SUITES and suites:
                suites[-1].child_titles = suites[-1].titles_so_far()
        elif event == END and shape is SUITE:
            suites.pop()
    if not document.saw(SUITES):
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


def _spec_results(spec: dict, suite_where: str, spec_index: int, suite_path: list[str],
                  context: dict) -> list[ParsedResult]:
    """The results of the spec at `{suite_where}.specs[{spec_index}]`, one per test (project)."""
    tests = spec.get("tests") or []
    if type(tests) is not list:
        raise ReportParseError("spec.tests must be a JSON array", path=f"{suite_where}.specs[{spec_index}]")
    title = str(spec.get("title", ""))
    root = context["rootDir"]
    file_path = normalise_path(spec.get("file"), root)
    facts: dict = {}  # what every test of the spec shares, worked out once (see _test_result)
    results = []
    for index, test in enumerate(tests):
        try:
            if type(test) is not dict:
                raise ReportParseError("a test must be a JSON object")
            results.append(_test_result(test, spec, title, suite_path, file_path, root, facts))
        except ReportParseError as exc:
            raise ReportParseError(exc.message, path=exc.path or f"{suite_where}.specs[{spec_index}].tests[{index}]") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReportParseError(f"unreadable test: {exc}",
                                   path=f"{suite_where}.specs[{spec_index}].tests[{index}]") from exc
    return results


_SKIPPED, _FAILED, _FLAKY = outcomes.SKIPPED, outcomes.FAILED, outcomes.FLAKY


def _test_result(test: dict, spec: dict, title: str, suite_path: list[str], file_path: str | None,
                 root: str | None, facts: dict) -> ParsedResult:
    """One result. `facts` caches what the spec's tests share (full title, line, tags); each
    is worked out where a problem with it would have shown before, so a malformed report
    fails the same way."""
    results = [r for r in test.get("results") or [] if type(r) is dict]
    status_word = test.get("status")
    if status_word is None:
        status_word = "expected" if spec.get("ok", True) else "unexpected"
    status = outcomes.OUTCOMES.get(status_word) if type(status_word) is str else None
    if status is None:
        try:
            status = outcomes.map_outcome(str(status_word))
        except KeyError:
            raise ReportParseError(f"unknown test status {status_word!r}") from None
    if status == _SKIPPED and any(r.get("status") == "interrupted" for r in results):
        status = outcomes.map_outcome("interrupted")  # the run was stopped while it ran

    error = None
    if status == _FAILED or status == _FLAKY:
        failing = [r for r in results if r.get("error") or r.get("errors")]
        if failing:
            error = _result_error(failing[-1], file_path, root)
    if error is None and status == _FAILED and test.get("expectedStatus") == "failed":
        # a test.fail() that passed: Playwright's own words for it
        error = ParsedError(message="Expected to fail, but passed.", type="expected-failure")

    durations = [number_to_ms(r.get("duration")) for r in results]
    # extra: these keys in this order, each only when not None
    extra = {}
    expected_status = test.get("expectedStatus")
    if expected_status is not None:
        extra["expectedStatus"] = expected_status
    project_id = test.get("projectId")
    if project_id is not None:
        extra["projectId"] = project_id
    if (timeout := test.get("timeout")) is not None:
        extra["timeout"] = timeout
    if (spec_id := spec.get("id")) is not None:
        extra["specId"] = spec_id
    extra["attempts"] = [{"status": r.get("status"), "duration": duration, "retry": r.get("retry"),
                          "workerIndex": r.get("workerIndex"), "startTime": r.get("startTime")}
                         for r, duration in zip(results, durations)]
    final = results[-1] if results else {}
    if final:
        if (worker := final.get("workerIndex")) is not None:
            extra["workerIndex"] = worker
        if (parallel := final.get("parallelIndex")) is not None:
            extra["parallelIndex"] = parallel
        if (start_time := final.get("startTime")) is not None:
            extra["startTime"] = start_time
    if status == _SKIPPED and expected_status != "skipped":
        extra["didNotRun"] = True

    attempt = 1 if status == _SKIPPED else max(len(results), 1)
    variant = test.get("projectName") or project_id or None
    if not facts:
        facts["full_title"] = full_title(suite_path, title)
        facts["line"] = to_int(spec.get("line"))
    steps = final.get("steps")
    steps = [_step(s) for s in steps if isinstance(s, dict)] if steps else []
    stdout = _output(results, "stdout")
    stderr = _output(results, "stderr")
    tags = facts.get("tags")
    if tags is None:
        tags = facts["tags"] = normalise_tags(spec.get("tags"))
    annotations = test.get("annotations")
    annotations = [{"type": a.get("type"), "description": a.get("description")}
                   for a in annotations if isinstance(a, dict)] if annotations else []
    attachments = [_attachment(a, r) for r in results for a in r.get("attachments") or []
                   if isinstance(a, dict)]
    return ParsedResult(
        title=title,
        full_title=facts["full_title"],
        file_path=file_path,
        line_number=facts["line"],
        suite_path=list(suite_path),
        variant=variant,
        status=status,
        duration_ms=sum(durations),
        attempt=attempt,
        retries=attempt - 1,
        error=error,
        steps=steps,
        stdout=stdout,
        stderr=stderr,
        tags=list(tags),
        annotations=annotations,
        attachments=attachments,
        extra=extra,
    )


def _output(results: list[dict], key: str) -> str:
    """All attempts' stdout (or stderr) chunks as one text."""
    texts = []
    for result in results:
        items = result.get(key)
        if items:
            for item in items:
                if type(item) is dict and "text" in item:
                    texts.append(str(item["text"]))
                else:
                    texts.append(_output_text(item))
    return "".join(texts)


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
    children = step.get("steps")
    return {
        "title": str(step.get("title", "")),
        # the JSON reporter writes only test.step() steps and does not name the category
        "category": step.get("category") or "test.step",
        "status": "failed" if error else "passed",
        "duration": number_to_ms(step.get("duration")),
        "error": message,
        "steps": [_step(s) for s in children if isinstance(s, dict)] if children else [],
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
