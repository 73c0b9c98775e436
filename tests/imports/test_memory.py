"""Big reports are streamed: parsing a 100k-test JUnit file keeps Python's peak memory low,
and the Playwright JSON parser's peak does not grow with the number of tests."""

from __future__ import annotations

import io
import tracemalloc

from redline.server.imports.parsers import parse_report

from .synthetic import junit_report, playwright_report


def _resident_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _peak_while_parsing(data: bytes) -> tuple[int, int, int]:
    """(results, tracemalloc peak in bytes, largest resident-memory growth in kB seen while
    parsing). The RSS samples see libxml2's own allocations, which tracemalloc cannot."""
    stream = io.BytesIO(data)
    resident_before = _resident_kb()
    largest_growth = 0
    tracemalloc.start()
    try:
        count = 0
        for count, _ in enumerate(parse_report(stream).results, start=1):
            if count % 10_000 == 0:
                largest_growth = max(largest_growth, _resident_kb() - resident_before)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return count, peak, largest_growth


def test_100k_test_junit_report_parses_with_flat_memory():
    data = junit_report(100_000, rerun_every=50)
    assert len(data) > 20_000_000
    count, peak, rss_growth_kb = _peak_while_parsing(data)
    assert count == 100_000
    assert peak < 10 * 1024 * 1024, f"tracemalloc peak {peak / 1e6:.1f} MB"
    assert rss_growth_kb < 50 * 1024, f"resident memory grew {rss_growth_kb / 1024:.1f} MB"


def test_playwright_json_peak_does_not_grow_with_the_number_of_tests():
    _, small_peak, _ = _peak_while_parsing(playwright_report(1_000))
    count, large_peak, _ = _peak_while_parsing(playwright_report(10_000))
    assert count == 10_000
    assert large_peak < 2 * small_peak + 1024 * 1024, (small_peak, large_peak)


def test_synthetic_reports_count_like_their_shape():
    results = list(parse_report(io.BytesIO(junit_report(1_000, rerun_every=50))).results)
    statuses = [r.status for r in results]
    assert len(results) == 1_000
    assert statuses.count("flaky") == 20  # every 50th: a rerun placeholder, then a pass
    assert statuses.count("failed") == 100
    pw = list(parse_report(io.BytesIO(playwright_report(1_000))).results)
    assert len(pw) == 1_000 and {r.variant for r in pw} == {"chromium", "firefox"}
