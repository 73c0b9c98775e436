"""Big reports are streamed: parsing a 100k-test report (JUnit XML or Playwright JSON) keeps
the process's peak memory flat, no higher than for a 10k-test report.

Measured as peak resident memory (VmHWM) of a fresh process, which sees everything the parsers
allocate, libxml2's and the json scanner's included: the process writes the reports to files a
piece at a time (so generating them does not raise the peak), then parses the 10k-test file and
the 100k-test file from disk, reading the high-water mark around each. For scale: loading the
100k-test files whole (lxml's tree, json.load) raises it by about 180 MB and 560 MB. Both
formats are measured side by side, each in its own process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from redline.server.imports.parsers import parse_report

from .synthetic import junit_report, playwright_report

REPOSITORY = Path(__file__).resolve().parents[2]
# the growth a 100k-test parse may cause, and how much more than a 10k-test parse it may need
LIMIT_MB = 25
FLAT_MB = 8

_MEASURE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repository!r})
    from tests.imports import synthetic
    from redline.server.imports.parsers import parse_report

    def high_water_kb():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

    chunks = getattr(synthetic, {format!r} + "_report_chunks")
    sizes, counts, statuses, peaks = {{}}, {{}}, {{}}, [high_water_kb()]
    for n in (10_000, 100_000):
        path = f"{{sys.argv[1]}}/{{n}}.report"
        sizes[n] = synthetic.write_report(path, chunks(n, **{options!r}))
    peaks = [high_water_kb()]
    for n in (10_000, 100_000):
        with open(f"{{sys.argv[1]}}/{{n}}.report", "rb") as stream:
            seen = {{}}
            for result in parse_report(stream).results:
                seen[result.status] = seen.get(result.status, 0) + 1
        counts[n], statuses[n] = sum(seen.values()), seen
        peaks.append(high_water_kb())
    print(json.dumps({{"sizes": sizes, "counts": counts, "statuses": statuses, "peaks_kb": peaks}}))
""")


def _start(format: str, options: dict, directory: Path) -> subprocess.Popen:
    directory.mkdir()
    script = _MEASURE.format(repository=str(REPOSITORY), format=format, options=options)
    return subprocess.Popen([sys.executable, "-c", script, str(directory)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    """Both formats' measurements, taken by two processes running side by side."""
    base = tmp_path_factory.mktemp("memory")
    processes = {"junit": _start("junit", {"rerun_every": 50}, base / "junit"),
                 "playwright": _start("playwright", {}, base / "playwright")}
    found = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        found[name] = json.loads(out)
    return found


def _growth_mb(peaks_kb: list[int]) -> tuple[float, float]:
    """(peak growth over the 100k-test parse's start, of which beyond the 10k-test parse's)"""
    before, after_10k, after_100k = peaks_kb
    return (after_100k - before) / 1024, (after_100k - after_10k) / 1024


def test_100k_test_junit_report_parses_with_flat_memory(measured):
    junit = measured["junit"]
    assert junit["sizes"]["100000"] > 20_000_000
    assert junit["counts"]["100000"] == 100_000
    assert junit["statuses"]["100000"]["flaky"] == 2_000  # every 50th: a rerun placeholder, then a pass
    growth, beyond_10k = _growth_mb(junit["peaks_kb"])
    assert growth < LIMIT_MB, f"peak resident memory grew {growth:.1f} MB"
    assert beyond_10k < FLAT_MB, f"the 100k-test parse needed {beyond_10k:.1f} MB more than the 10k one"


def test_100k_test_playwright_json_report_parses_with_flat_memory(measured):
    playwright = measured["playwright"]
    assert playwright["sizes"]["100000"] > 80_000_000
    assert playwright["counts"]["100000"] == 100_000
    growth, beyond_10k = _growth_mb(playwright["peaks_kb"])
    assert growth < LIMIT_MB, f"peak resident memory grew {growth:.1f} MB"
    assert beyond_10k < FLAT_MB, f"the 100k-test parse needed {beyond_10k:.1f} MB more than the 10k one"


def test_synthetic_reports_count_like_their_shape():
    results = list(parse_report(io.BytesIO(junit_report(1_000, rerun_every=50))).results)
    statuses = [r.status for r in results]
    assert len(results) == 1_000
    assert statuses.count("flaky") == 20  # every 50th: a rerun placeholder, then a pass
    assert statuses.count("failed") == 100
    pw = list(parse_report(io.BytesIO(playwright_report(1_000))).results)
    assert len(pw) == 1_000 and {r.variant for r in pw} == {"chromium", "firefox"}
