"""Reports for the client tests: small JUnit files with chosen outcomes (for exact
assertions), the real runners' reports in tests/fixtures/reports (for realistic shapes), and a
test command that writes a report and exits like a test runner (for `redline exec`)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from xml.sax.saxutils import quoteattr

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
PLAYWRIGHT_JSON = FIXTURES / "playwright-json" / "playwright.json"
PYTEST_RERUNS = FIXTURES / "junit" / "pytest-reruns.xml"

FILE = "tests/test_app.py"
CLASS = "tests.test_app"


def junit(outcomes: dict[str, str], *, file: str = FILE, classname: str = CLASS,
          message: str = "assert 1 == 2") -> str:
    """A JUnit report (pytest's shape) with one test per name: passed, failed or skipped."""
    failures = sum(1 for s in outcomes.values() if s == "failed")
    skipped = sum(1 for s in outcomes.values() if s == "skipped")
    cases = []
    for name, status in outcomes.items():
        attrs = (f"classname={quoteattr(classname)} name={quoteattr(name)} "
                 f"file={quoteattr(file)} time=\"0.01\"")
        if status == "failed":
            cases.append(f"<testcase {attrs}><failure message={quoteattr(message)}>"
                         f"{file}:3: AssertionError</failure></testcase>")
        elif status == "skipped":
            cases.append(f"<testcase {attrs}><skipped message=\"later\"/></testcase>")
        else:
            cases.append(f"<testcase {attrs}/>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="pytest" '
            f'tests="{len(outcomes)}" failures="{failures}" errors="0" skipped="{skipped}" '
            f'time="0.1">' + "".join(cases) + "</testsuite></testsuites>\n")


def test_command(report: str, out: Path, exit_code: int) -> list[str]:
    """argv of a 'test runner' that writes `report` to `out` and exits `exit_code`."""
    script = textwrap.dedent(f"""
        import pathlib, sys
        path = pathlib.Path({str(out)!r})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text({report!r})
        print("collected tests, wrote", path)  # a runner's own output, on stdout
        sys.exit({exit_code})
    """)
    return [sys.executable, "-c", script]


test_command.__test__ = False  # not a pytest test
