"""JUnit XML, as written by pytest, Playwright, Maven Surefire, jest-junit, Vitest and gotestsum.

The file is streamed with lxml's iterparse, entity expansion, DTD loading and network access
off; each <testcase> is turned into a result and then removed from the tree, so memory stays
flat however many tests the file holds. A DOCTYPE (the carrier of entity bombs and external
entities) or an XInclude element is refused outright.

"JUnit XML" has no single specification, and writers disagree on what a repeated <testcase>
means. Each writer is recognised by its marks (its "dialect") and read by its own rule:

- pytest (+ pytest-rerunfailures): every rerun is written as an extra, empty <testcase> just
  before the final one, and <testsuite tests="..."> counts the test once. pytest's node ids
  are unique, so adjacent testcases with the same name are the attempts of one test, merged
  at once (memory stays flat however many reruns there are).
- Unknown writers: the runner's own count is the judge. Adjacent testcases with the same
  name are merged only as far as <testsuite tests="..."> says there are more <testcase>
  elements than tests; so two different tests that happen to share a name stay two results.
- gotestsum --rerun-fails: lists every failed attempt first and the passes after, anywhere in
  the package's <testsuite>; Go test names are unique within a package, so every repeat of a
  name is an attempt of that test.
- jest-junit: never writes retries; a repeated name is another test (test.each, or two tests
  with the same title), except the two entries it writes for a test file that failed to load.
- Surefire and Playwright (includeRetries): attempts are <rerunFailure>/<rerunError> (failed
  again) and <flakyFailure>/<flakyError> (passed in the end) inside the one <testcase>.
- Vitest: writes one <failure> per failed attempt or error inside the one <testcase>.
- Playwright: `classname` is the file, the name joins the describe titles with ' › ' and
  <testsuite hostname> is the project, i.e. the variant.

Results come in document order, except that from an unknown writer a group of same-named
testcases waits for the end of its <testsuite> (where the count that decides it is complete),
and gotestsum's tests come when their package's <testsuite> ends. A single text node may be
over libxml2's default 10 MB (huge_tree: an enormous <system-out> is valid XML); entity
expansion, DTDs and the network stay off, and `parse_report` cuts each result's output and
error text to its cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from lxml import etree

from . import outcomes
from .common import (
    MAX_XML_DEPTH,
    full_title,
    make_error,
    normalise_path,
    seconds_to_ms,
    tags_in_title,
    to_int,
)
from .errors import ReportParseError
from .model import ParsedError, ParsedResult

XINCLUDE_NAMESPACE = "http://www.w3.org/2001/XInclude"
_XINCLUDE_PREFIX = "{" + XINCLUDE_NAMESPACE + "}"
FAILURE_TAGS = ("failure", "error")
RETRY_TAGS = ("rerunFailure", "rerunError", "flakyFailure", "flakyError")
PLAYWRIGHT_SEPARATOR = " › "
VITEST_SEPARATOR = " > "
JEST_SUITE_ERROR_CLASSNAME = "Test suite failed to run"
# Jenkins' attachment convention, used by Playwright's junit reporter: "[[ATTACHMENT|path]]"
ATTACHMENT_MARKER = re.compile(r"\[\[ATTACHMENT\|(.+?)\]\]")
SOURCE_FILE = re.compile(r"\.(py|js|jsx|ts|tsx|mjs|cjs|mts|cts|go|java|kt|rb|cs|php|rs|swift)$")


# statuses, from the one outcome table
_PASSED = outcomes.map_outcome("passed")
_FAILED = outcomes.map_outcome("failure")
_SKIPPED = outcomes.map_outcome("skipped")
_XFAIL = outcomes.map_outcome("xfail")
_FAILURE_STATUS = {tag: outcomes.map_outcome(tag) for tag in FAILURE_TAGS}
# testcase attributes every writer has; others are kept in the result's extra
_KNOWN_ATTRIBUTES = frozenset(("name", "classname", "file", "line", "time"))


class _Failure:
    """A <failure>/<error> element, or one of Surefire's rerun/flaky elements."""

    __slots__ = ("duration_ms", "message", "stderr", "stdout", "tag", "text", "type")

    def __init__(self, tag: str, message: str | None, type: str | None, text: str | None,
                 duration_ms: int = 0, stdout: str = "", stderr: str = ""):
        self.tag = tag
        self.message = message
        self.type = type
        self.text = text
        self.duration_ms = duration_ms
        self.stdout = stdout
        self.stderr = stderr


class _Testcase:
    """One <testcase> element, read whole (its children are complete at its end event)."""

    __slots__ = ("classname", "duration_ms", "failures", "file", "key", "line", "name",
                 "other_children", "properties", "retries", "skipped", "stderr", "stdout",
                 "unknown_attributes")

    def __init__(self, name: str, classname: str, file: str | None, line: int | None, duration_ms: int):
        self.name = name
        self.classname = classname
        self.file = file
        self.line = line
        self.duration_ms = duration_ms
        self.failures: list[_Failure] = []
        self.skipped: _Failure | None = None
        self.retries: list[_Failure] = []  # rerun*/flaky* elements
        self.stdout = ""
        self.stderr = ""
        self.properties: list[tuple[str, str]] = []
        self.other_children: list[str] = []
        #: attributes beyond _KNOWN_ATTRIBUTES, in document order (None when there are none)
        self.unknown_attributes: dict | None = None
        #: what makes two adjacent testcases the attempts of one test
        self.key = (classname, name, file)

    def own_status(self) -> str:
        if self.failures:
            return _FAILURE_STATUS[self.failures[-1].tag]
        if self.skipped is not None:
            if (self.skipped.type or "").lower() == "pytest.xfail":
                return _XFAIL
            return _SKIPPED
        return _PASSED

    def attempt_statuses(self) -> list[str]:
        """Statuses of the attempts this one element records, oldest first."""
        own = self.own_status()
        if not self.retries:
            return [own]
        retried = [_FAILED for r in self.retries]
        if own == _PASSED and any(r.tag.startswith("flaky") for r in self.retries):
            return [*retried, _PASSED]
        return [own, *retried] if own == _FAILED else [*retried, own]


@dataclass
class _Suite:
    """An open <testsuite>: what the parser remembers while reading its testcases."""

    name: str
    declared_tests: int | None
    attributes: dict
    dialect: str
    testcase_elements: int = 0
    #: adjacent testcases with the same name, not yet emitted
    pending: list[_Testcase] = field(default_factory=list)
    #: groups of adjacent same-name testcases, decided when the suite ends
    held_groups: list[list[_Testcase]] = field(default_factory=list)
    #: gotestsum: every attempt of every test, by name, in first-seen order
    by_key: dict = field(default_factory=dict)
    #: the last identity worked out: ((dialect, classname, file), identity) - a class's
    #: testcases come together, and one entry keeps memory flat however many classes there are
    last_identity: tuple | None = None


def _local(tag) -> str:
    """An element's name without its namespace."""
    if type(tag) is not str:
        return ""
    return tag.rsplit("}", 1)[-1] if tag[:1] == "{" else tag


def _text(element) -> str:
    if element is None:
        return ""
    if len(element) == 0:  # no child elements: its text is all there is
        return element.text or ""
    return "".join(element.itertext())


def _read_failure(element, tag: str) -> _Failure:
    failure = _Failure(tag, element.get("message"), element.get("type") or None, None,
                       seconds_to_ms(element.get("time")))
    if len(element) == 0:
        failure.text = element.text or ""
        return failure
    texts = [element.text or ""]
    for child in element:
        child_tag = _local(child.tag)
        if child_tag == "stackTrace":
            failure.text = _text(child)
        elif child_tag == "system-out":
            failure.stdout += _text(child)
        elif child_tag == "system-err":
            failure.stderr += _text(child)
        texts.append(child.tail or "")
    if failure.text is None:
        failure.text = "".join(texts)
    return failure


def _read_testcase(element) -> _Testcase:
    attributes = element.attrib
    testcase = _Testcase(
        # jest-junit's "{classname} {title}" leaves a leading space when there is no describe
        (attributes.get("name") or "").strip(),
        (attributes.get("classname") or "").strip(),
        attributes.get("file") or None,
        to_int(attributes.get("line")),
        seconds_to_ms(attributes.get("time")),
    )
    if not _KNOWN_ATTRIBUTES.issuperset(attributes.keys()):
        testcase.unknown_attributes = {k: v for k, v in attributes.items() if k not in _KNOWN_ATTRIBUTES}
    for child in element:
        tag = child.tag
        if type(tag) is not str or tag[:1] == "{":
            tag = _local(tag)
        if tag == "system-out":
            testcase.stdout += (child.text or "") if len(child) == 0 else _text(child)
        elif tag in FAILURE_TAGS:
            testcase.failures.append(_read_failure(child, tag))
        elif tag == "skipped":
            testcase.skipped = _read_failure(child, tag)
        elif tag in RETRY_TAGS:
            testcase.retries.append(_read_failure(child, tag))
        elif tag == "system-err":
            testcase.stderr += _text(child)
        elif tag == "properties":
            for prop in child:
                if _local(prop.tag) == "property":
                    value = prop.get("value")
                    testcase.properties.append((prop.get("name") or "", value if value is not None else _text(prop)))
        else:
            testcase.other_children.append(tag)
    return testcase


def _release(element) -> None:
    """Drop a processed element and the siblings before it, so memory stays flat."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


# ------------------------------------------------------------------ dialects

def _root_dialect(root) -> str:
    """Recognise the writer from the root element (see the module docstring)."""
    tag = _local(root.tag)
    name = root.get("name") or ""
    if tag == "testsuites":
        if name == "pytest tests":
            return "pytest"
        if name == "vitest tests":
            return "vitest"
        if name == "jest tests":
            return "jest"
        if list(root.attrib.keys())[:2] == ["id", "name"]:
            return "playwright"  # Playwright writes id="" name="" first, always
        return "junit"
    if name == "pytest":
        return "pytest"  # pytest < 5.1 wrote a bare <testsuite name="pytest">
    if "surefire" in (root.get("{http://www.w3.org/2001/XMLSchema-instance}noNamespaceSchemaLocation") or ""):
        return "surefire"
    return "junit"


def _suite_dialect(element, root_dialect: str) -> str:
    if root_dialect == "junit":
        if element.get("name") == "pytest":
            return "pytest"
        if "surefire" in (element.get("{http://www.w3.org/2001/XMLSchema-instance}noNamespaceSchemaLocation") or ""):
            return "surefire"
    return root_dialect


# ------------------------------------------------------------------ identity per dialect

def _pytest_identity(testcase: _Testcase) -> tuple[str, list[str], str | None, dict]:
    """pytest: classname is the module path with dots, then the class names."""
    extra: dict = {}
    if testcase.classname == "":
        # a collection error: name is the module ("pkg.test_mod")
        extra["kind"] = "collection-error"
        return testcase.name, [], testcase.file, extra
    if testcase.classname == "pytest" and testcase.name == "internal":
        extra["kind"] = "internal-error"
        return "internal", [], None, extra
    parts = testcase.classname.split(".")
    if testcase.file:
        module = testcase.file.removesuffix(".py")
        module_dotted = module.replace("/", ".")
        if testcase.classname == module_dotted:
            return testcase.name, [], testcase.file, extra
        if testcase.classname.startswith(module_dotted + "."):
            return testcase.name, testcase.classname[len(module_dotted) + 1:].split("."), testcase.file, extra
        return testcase.name, [testcase.classname], testcase.file, extra
    # xunit2 (pytest's default) has no file attribute: pytest builds classname from the file
    # path and the classes. Modules are lower case and classes CapWords (pytest's Test*,
    # unittest's TestCase subclasses such as ChunkedTests), so the module path ends before
    # the first part that names a class. A guess, flagged as one.
    first_class = next((i for i, part in enumerate(parts) if i > 0 and _names_a_class(part)),
                       len(parts))
    file_path = "/".join(parts[:first_class]) + ".py"
    extra["filePathGuessed"] = True
    return testcase.name, parts[first_class:], file_path, extra


def _names_a_class(part: str) -> bool:
    return part[:1].isupper() or part.startswith("Test")


def _identity(testcase: _Testcase, dialect: str, suite: _Suite) -> tuple[str, list[str], str | None, str | None, dict]:
    """(title, suite_path, file, variant, extra) for one testcase, by its writer's conventions."""
    suite_file = suite.attributes.get("file")
    if dialect == "pytest":
        title, suite_path, file_path, extra = _pytest_identity(testcase)
        return title, suite_path, file_path, None, extra
    if dialect == "playwright":
        variant = suite.attributes.get("hostname") or None
        name = testcase.name
        if variant and name.startswith(f"[{variant}] "):
            name = name[len(variant) + 3:]  # includeProjectInTestName
        parts = name.split(PLAYWRIGHT_SEPARATOR)
        return parts[-1], parts[:-1], testcase.file or testcase.classname or suite_file, variant, {}
    if dialect == "vitest":
        parts = testcase.name.split(VITEST_SEPARATOR)
        return parts[-1], parts[:-1], testcase.file or testcase.classname or suite_file, None, {}
    if dialect == "jest":
        if testcase.classname == JEST_SUITE_ERROR_CLASSNAME:
            return JEST_SUITE_ERROR_CLASSNAME, [], testcase.name, None, {"kind": "suite-error"}
        # jest-junit's default name is "<describe titles> <title>" joined with spaces, which
        # cannot be split back; the whole name is the title
        return testcase.name, [], testcase.file or suite_file, None, {}
    # Surefire, gotestsum and unknown writers: classname is the class (or the Go package,
    # whose import path has slashes but is not a file)
    file_path = testcase.file or suite_file
    classname = testcase.classname
    if classname and not file_path and dialect != "gotestsum" and SOURCE_FILE.search(classname):
        return testcase.name, [], classname, None, {}  # a writer that puts the file in classname
    if classname and file_path and normalise_path(classname) == normalise_path(file_path):
        return testcase.name, [], file_path, None, {}
    return testcase.name, [classname] if classname else [], file_path, None, {}


# ------------------------------------------------------------------ results

def _identity_of(testcase: _Testcase, suite: _Suite) -> tuple[str, list[str], str | None, str | None, dict]:
    """_identity with the file path normalised. For pytest's and the generic writers'
    ordinary testcases it depends only on the classname and file, so it is worked out once
    for a run of testcases of one class (a fresh list and dict are handed out each time)."""
    dialect = suite.dialect
    if dialect in ("playwright", "vitest", "jest") or not testcase.classname or (
            testcase.classname == "pytest" and testcase.name == "internal"):
        title, suite_path, file_path, variant, extra = _identity(testcase, dialect, suite)
        return title, suite_path, normalise_path(file_path), variant, extra
    cache_key = (dialect, testcase.classname, testcase.file)
    if suite.last_identity is not None and suite.last_identity[0] == cache_key:
        known = suite.last_identity[1]
    else:
        _, suite_path, file_path, variant, extra = _identity(testcase, dialect, suite)
        known = (suite_path, normalise_path(file_path), variant, extra)
        suite.last_identity = (cache_key, known)
    suite_path, file_path, variant, extra = known
    return testcase.name, list(suite_path), file_path, variant, dict(extra)


def _attachments_in(text: str) -> list[dict]:
    if not text or "[[ATTACHMENT|" not in text:
        return []
    return [{"name": path.rsplit("/", 1)[-1], "contentType": None, "path": path.strip()}
            for path in ATTACHMENT_MARKER.findall(text)]


def _error_of(failures: list[_Failure], file_hint: str | None) -> ParsedError | None:
    if not failures:
        return None
    first = failures[0]
    stack = "\n\n".join(f.text for f in failures if f.text) or None
    return make_error(first.message, stack, first.type or first.tag, file_hint=file_hint)


def _says_something(failures: list[_Failure]) -> bool:
    return any((f.message or "").strip() not in ("", "{}") or (f.text or "").strip() not in ("", "{}")
               for f in failures)


def _telling_failures(group: list[_Testcase]) -> list[_Failure]:
    """The <failure>/<error> elements that explain the test's failure: the last attempt's,
    unless they say nothing (jest-junit's second entry for a file that failed to load is a
    bare "<failure>{}</failure>"), then the latest earlier attempt's that do."""
    for testcase in reversed(group):
        if testcase.failures and _says_something(testcase.failures):
            return testcase.failures
    return group[-1].failures


def _build_result(group: list[_Testcase], suite: _Suite, repeats_are_attempts: bool = True) -> ParsedResult:
    """One result from one or more <testcase> elements of the same test: its attempts, or
    (repeats_are_attempts=False) several entries a writer made for one attempt."""
    final = group[-1]
    dialect = suite.dialect
    title, suite_path, file_path, variant, extra = _identity_of(final, suite)
    single = len(group) == 1

    # Attempts before the final element were retried, and a runner retries only after a
    # failure (pytest-rerunfailures even writes them as empty, pass-looking elements).
    if single and not final.retries:
        status = final.own_status()
        attempt = 1
    else:
        earlier_attempts = len(group) - 1 if repeats_are_attempts else 0
        statuses = [_FAILED] * earlier_attempts + final.attempt_statuses()
        status = outcomes.status_of_attempts(statuses)
        attempt = len(statuses)

    error = None
    if status == _FAILED:
        failures = _telling_failures(group)
        error = _error_of(failures, file_path)
        if error is None and final.retries:
            error = _error_of(final.retries[-1:], file_path)
        if failures:
            extra["junitElement"] = failures[0].tag  # 'failure' or 'error'
    elif status == outcomes.FLAKY:
        failed_attempts = [r for r in final.retries if r.tag.startswith(("flaky", "rerun"))]
        earlier = [f for tc in group[:-1] for f in tc.failures]
        error = _error_of((failed_attempts or earlier)[-1:], file_path)
    if len(final.failures) > 1:
        # jest-junit writes one <failure> per message, Vitest one per failed attempt
        extra["failureCount"] = len(final.failures)

    if single and not final.retries:
        stdout, stderr = final.stdout, final.stderr
    else:
        stdout = "".join(tc.stdout for tc in group) + "".join(r.stdout for r in final.retries)
        stderr = "".join(tc.stderr for tc in group) + "".join(r.stderr for r in final.retries)
    annotations = []
    if final.skipped is not None and not final.failures:
        skip_type = (final.skipped.type or "").lower()
        description = final.skipped.message or None
        if skip_type == "pytest.xfail":
            annotations.append({"type": "xfail", "description": description})
        elif description:
            annotations.append({"type": "skip", "description": description})
    if final.properties:
        properties: dict = {}
        for name, value in final.properties:
            properties.setdefault(name, []).append(value)
        extra["properties"] = {k: v[0] if len(v) == 1 else v for k, v in properties.items()}
        if dialect == "playwright":
            # Playwright writes the test's annotations as properties
            annotations.extend({"type": name, "description": value or None} for name, value in final.properties)
    line = final.line
    if dialect == "pytest" and line is not None:
        line += 1  # pytest writes the 0-based line of the def
    if final.other_children:
        extra["otherElements"] = sorted(set(final.other_children))
    if final.unknown_attributes:
        extra["attributes"] = final.unknown_attributes
    if not single:
        extra["testcaseElements"] = len(group)

    if single:
        duration = final.duration_ms
    else:
        duration = sum(tc.duration_ms for tc in group)
    if final.retries:
        duration += sum(r.duration_ms for r in final.retries)
    return ParsedResult(
        title=title,
        full_title=full_title(suite_path, title),
        file_path=file_path,
        line_number=line,
        suite_path=suite_path,
        variant=variant,
        status=status,
        duration_ms=duration,
        attempt=attempt,
        retries=attempt - 1,
        error=error,
        stdout=stdout,
        stderr=stderr,
        tags=tags_in_title(title) if dialect == "playwright" else [],
        annotations=annotations,
        attachments=_attachments_in(stdout),
        extra=extra,
    )


def _add_testcase(suite: _Suite, testcase: _Testcase) -> ParsedResult | list[ParsedResult] | None:
    """Feed one testcase to its suite; returns what is now decided: one result (the common
    case, without a generator), a list of results, or None."""
    suite.testcase_elements += 1
    if suite.dialect == "gotestsum":
        suite.by_key.setdefault(testcase.key, []).append(testcase)
        return None
    pending = suite.pending
    if pending and testcase.key == pending[-1].key:
        pending.append(testcase)
        return None
    suite.pending = [testcase]
    if not pending:
        return None
    if len(pending) == 1:
        return _build_result(pending, suite)
    return list(_decide_group(suite, pending))


def _flush_pending(suite: _Suite) -> Iterator[ParsedResult]:
    group, suite.pending = suite.pending, []
    if group:
        yield from _decide_group(suite, group)


def _decide_group(suite: _Suite, group: list[_Testcase]) -> Iterator[ParsedResult]:
    """The results of a group of adjacent testcases with the same name, as far as they can be
    decided now (an unknown writer's group waits for the end of its suite)."""
    if len(group) == 1:
        yield _build_result(group, suite)
    elif suite.dialect == "pytest":
        yield _build_result(group, suite)  # unique node ids: the repeats are reruns
    elif suite.dialect == "jest":
        if group[0].classname == JEST_SUITE_ERROR_CLASSNAME:
            # jest-junit's two entries (<error>, then "<failure>{}</failure>") for one file
            yield _build_result(group, suite, repeats_are_attempts=False)
        else:
            for testcase in group:  # different tests that share a title
                yield _build_result([testcase], suite)
    else:
        suite.held_groups.append(group)


def _finish_suite(suite: _Suite) -> Iterator[ParsedResult]:
    """Decide the held groups now that the suite's testcase count is known."""
    yield from _flush_pending(suite)
    if suite.dialect == "gotestsum":
        for group in suite.by_key.values():
            yield _build_result(group, suite)
        return
    # The runner's own count is the judge: only as many adjacent repeats are reruns as there
    # are <testcase> elements beyond the tests the suite says it holds.
    surplus = 0
    if suite.declared_tests is not None:
        surplus = suite.testcase_elements - suite.declared_tests
    for group in suite.held_groups:
        repeats = len(group) - 1
        if surplus >= repeats:
            surplus -= repeats
            yield _build_result(group, suite)
        else:
            for testcase in group:
                yield _build_result([testcase], suite)


# ------------------------------------------------------------------ the parser

def _refuse_doctype(root) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.system_url or docinfo.public_id:
        raise ReportParseError("DOCTYPE declarations are not allowed in a report file",
                               line=root.sourceline)


def parse_junit(stream, metadata: dict) -> Iterator[ParsedResult]:
    """Stream the results of a JUnit XML report; fills `metadata` as facts are read.

    Raises ReportParseError (with line and column) for malformed or unsafe XML.
    """
    context = etree.iterparse(
        stream,
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=True,  # text nodes over 10 MB; entities, DTDs and the network stay off
        remove_comments=True,
        remove_pis=True,
    )
    depth = 0
    suites: list[_Suite] = []
    root_dialect = None
    top_level_duration = 0
    try:
        for event, element in context:
            raw_tag = element.tag
            tag = raw_tag if type(raw_tag) is str and raw_tag[:1] != "{" else _local(raw_tag)
            if event == "start":
                depth += 1
                if depth > MAX_XML_DEPTH:
                    raise ReportParseError(f"XML nested deeper than {MAX_XML_DEPTH} levels",
                                           line=element.sourceline)
                if tag is not raw_tag and isinstance(raw_tag, str) and raw_tag.startswith(_XINCLUDE_PREFIX):
                    raise ReportParseError("XInclude is not allowed in a report file", line=element.sourceline)
                if root_dialect is None:
                    _refuse_doctype(element)
                    if tag not in ("testsuites", "testsuite"):
                        raise ReportParseError(f"not a JUnit XML report: the root element is <{tag}>, "
                                               "expected <testsuites> or <testsuite>", line=element.sourceline)
                    root_dialect = _root_dialect(element)
                    _root_metadata(element, root_dialect, metadata)
                if tag == "testsuite":
                    suite = _Suite(name=element.get("name") or "", declared_tests=to_int(element.get("tests")),
                                   attributes=dict(element.attrib), dialect=_suite_dialect(element, root_dialect))
                    suites.append(suite)
                    if "startedAt" not in metadata and element.get("timestamp"):
                        metadata["startedAt"] = element.get("timestamp")
                continue

            depth -= 1
            if tag == "testcase":
                if not suites:
                    suites.append(_Suite(name="", declared_tests=None, attributes={}, dialect=root_dialect or "junit"))
                decided = _add_testcase(suites[-1], _read_testcase(element))
                _release(element)
                if decided is not None:
                    if isinstance(decided, list):
                        yield from decided
                    else:
                        yield decided
            elif tag == "properties" and suites and _local(getattr(element.getparent(), "tag", "")) == "testsuite":
                _suite_properties(element, suites[-1], metadata)
            elif tag == "testsuite":
                suite = suites.pop()
                yield from _finish_suite(suite)
                if not suites:
                    top_level_duration += seconds_to_ms(suite.attributes.get("time"))
                metadata["suites"] = metadata.get("suites", 0) + 1
                _release(element)
        if suites:  # a bare <testcase> list under <testsuites>
            for suite in suites:
                yield from _finish_suite(suite)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (None, None)
        raise ReportParseError(f"malformed XML: {exc.msg}", line=line, column=column) from exc
    except LookupError as exc:  # an encoding lxml does not know
        raise ReportParseError(f"malformed XML: {exc}") from exc
    if root_dialect is None:
        raise ReportParseError("not a JUnit XML report: no root element")
    if "duration" not in metadata and top_level_duration:
        metadata["duration"] = top_level_duration


def _root_metadata(root, dialect: str, metadata: dict) -> None:
    metadata["tool"] = dialect
    declared = {key: to_int(root.get(key)) for key in ("tests", "failures", "errors", "skipped")
                if to_int(root.get(key)) is not None}
    if declared:
        # what the writer says it holds; for reruns these count attempts for some writers
        metadata["declaredCounts"] = declared
    if root.get("time") is not None:
        metadata["duration"] = seconds_to_ms(root.get("time"))
    if root.get("timestamp"):
        metadata["startedAt"] = root.get("timestamp")
    if dialect == "surefire" and root.get("version"):
        metadata["surefireReportVersion"] = root.get("version")
    if root.get("name") and _local(root.tag) == "testsuites":
        metadata["name"] = root.get("name")


def _suite_properties(element, suite: _Suite, metadata: dict) -> None:
    properties = metadata.setdefault("properties", {})
    for prop in element:
        if _local(prop.tag) != "property":
            continue
        name = prop.get("name") or ""
        value = prop.get("value")
        properties.setdefault(name, value if value is not None else _text(prop))
        if name == "go.version":
            suite.dialect = "gotestsum"
            metadata["tool"] = "gotestsum"
