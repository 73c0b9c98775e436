"""What every report parser produces: one `ParsedReport` holding a stream of `ParsedResult`s.

The parsers know nothing about the database or HTTP; the import service turns these objects
into a run and its results.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class ParsedError:
    """Why a test failed (for a flaky result: why its failed attempt failed)."""

    message: str
    stack: str | None = None
    #: 'failure' / 'error' (JUnit's element) or the exception class / matcher when known
    type: str | None = None
    expected: str | None = None
    actual: str | None = None
    #: {"file": str, "line": int | None, "column": int | None}
    location: dict | None = None


@dataclass
class ParsedResult:
    """One test's outcome in one run (all its attempts folded into one result)."""

    title: str
    #: suite path and title joined with ' > '
    full_title: str
    #: relative, '/' separators, no leading './'; None when the format does not say
    file_path: str | None
    line_number: int | None
    #: describe/suite/class hierarchy, outermost first, without the file
    suite_path: list[str]
    #: e.g. the Playwright project name; None otherwise
    variant: str | None
    #: exactly one of 'passed', 'failed', 'skipped', 'flaky'
    status: str
    duration_ms: int
    #: attempts made (1 = no retry)
    attempt: int = 1
    #: attempt - 1
    retries: int = 0
    error: ParsedError | None = None
    #: [{title, category, status, duration, error, steps: [...]}]
    steps: list[dict] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    tags: list[str] = field(default_factory=list)
    #: [{type, description}]
    annotations: list[dict] = field(default_factory=list)
    #: [{name, contentType, path}] (+ "body", base64, when the report inlines the content)
    attachments: list[dict] = field(default_factory=list)
    #: everything else the format carries: properties, CTRF extra fields, worker info...
    extra: dict = field(default_factory=dict)


@dataclass
class ParsedReport:
    """A parsed report file.

    `results` is a generator: the file is read while it is iterated, so a malformed part may
    raise `ReportParseError` during iteration. `metadata` holds the run-level facts the file
    states before its first result as soon as `parse_report` returns; facts a format writes
    after its results (Playwright's `stats`: startedAt, duration) are added once `results` is
    exhausted.
    """

    #: 'junit' | 'playwright-json' | 'ctrf'
    format: str
    results: Iterator[ParsedResult]
    #: startedAt, duration (ms), playwrightVersion, workers, shardCurrent, shardTotal, tool...
    metadata: dict
