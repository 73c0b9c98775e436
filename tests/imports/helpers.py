"""Shared helpers for the parser tests: where the real fixtures are, and how to count results."""

from __future__ import annotations

import collections
import json
from pathlib import Path

from redline.server.imports.parsers import ParsedReport, ParsedResult, combine_results, parse_report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
EXPECTED_FILES = sorted(FIXTURES.glob("**/*.expected.json"))


def load_expected(expected_file: Path) -> dict:
    return json.loads(expected_file.read_text())


def parse_fixture(relative: str) -> tuple[ParsedReport | None, list[ParsedResult]]:
    """Parse one fixture file, or every XML file of a fixture folder as one run
    (Surefire writes one file per test class)."""
    path = FIXTURES / relative
    if path.is_dir():
        reports = [parse_report(file.open("rb"), filename=file.name) for file in sorted(path.glob("*.xml"))]
        return None, list(combine_results(reports))
    report = parse_report(path.open("rb"), filename=path.name)
    return report, list(report.results)


def counts(results: list[ParsedResult]) -> dict:
    """Redline's counting rule: total = number of results, each result in exactly one bucket."""
    by_status = collections.Counter(result.status for result in results)
    return {"total": len(results), **{s: by_status.get(s, 0) for s in ("passed", "failed", "skipped", "flaky")}}


def by_title(results: list[ParsedResult], full_title: str, variant: str | None = None) -> list[ParsedResult]:
    return [r for r in results if r.full_title == full_title and (variant is None or r.variant == variant)]


def one(results: list[ParsedResult], full_title: str, variant: str | None = None) -> ParsedResult:
    found = by_title(results, full_title, variant)
    assert len(found) == 1, f"{full_title!r} ({variant}): {len(found)} results"
    return found[0]
