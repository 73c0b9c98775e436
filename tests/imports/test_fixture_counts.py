"""For every report a real runner wrote: the parsed counts equal what that runner printed.

The expected counts come from tests/fixtures/reports/*.expected.json, which summarize.py
derived from the runner's own console output (kept beside each fixture as .console.txt).
Where a report format cannot carry what the runner printed (Playwright's junit without
includeRetries shows a flaky test as a pass; jest-junit shows test.todo as a pass), the
expected file says so in `format_losses`, and only that declared difference is applied.
"""

from __future__ import annotations

import pytest

from .helpers import EXPECTED_FILES, FIXTURES, counts, load_expected, parse_fixture

# every runner the issue lists has a fixture (none is missing silently)
EXPECTED_FIXTURES = {
    "junit/pytest-xunit1.xml", "junit/pytest-xunit2.xml", "junit/pytest-reruns.xml",
    "junit/pytest-collection-error.xml", "junit/pytest-internal-error.xml",
    "junit/playwright-junit.xml", "junit/playwright-junit-retries.xml", "junit/jest-junit.xml",
    "junit/vitest-junit.xml", "junit/gotestsum.xml", "junit/surefire",
    "playwright-json/playwright.json", "playwright-json/playwright-shard-1-of-2.json",
    "ctrf/playwright-ctrf.json",
}


def test_every_fixture_has_runner_counts():
    assert {load_expected(f)["fixture"] for f in EXPECTED_FILES} == EXPECTED_FIXTURES


@pytest.mark.parametrize("expected_file", EXPECTED_FILES, ids=lambda p: p.name.removesuffix(".expected.json"))
def test_parsed_counts_equal_what_the_runner_printed(expected_file):
    expected = load_expected(expected_file)
    assert (FIXTURES / expected["console"]).exists(), "the runner's console output is kept beside the fixture"
    printed = dict(expected["counts"])
    assert printed["total"] == sum(printed[s] for s in ("passed", "failed", "skipped", "flaky"))
    for loss in expected["format_losses"]:
        printed[loss["from"]] -= loss["count"]
        printed[loss["to"]] += loss["count"]

    _, results = parse_fixture(expected["fixture"])

    assert counts(results) == printed


def test_format_losses_are_only_the_two_known_ones():
    losses = {load_expected(f)["fixture"]: load_expected(f)["format_losses"] for f in EXPECTED_FILES}
    assert {fixture for fixture, items in losses.items() if items} == {
        "junit/playwright-junit.xml", "junit/jest-junit.xml"}
    assert losses["junit/playwright-junit.xml"][0] | {"why": ""} == {"from": "flaky", "to": "passed", "count": 2, "why": ""}
    assert losses["junit/jest-junit.xml"][0] | {"why": ""} == {"from": "skipped", "to": "passed", "count": 1, "why": ""}


def test_same_run_gives_same_identities_in_json_junit_and_ctrf():
    """One Playwright run wrote three reports: each test has the same identity (file, full
    title, variant) in all three, so importing any of them finds the same test cases."""
    identities = {}
    for fixture in ("playwright-json/playwright.json", "junit/playwright-junit.xml", "ctrf/playwright-ctrf.json"):
        _, results = parse_fixture(fixture)
        identities[fixture] = {(r.file_path, r.full_title, r.variant) for r in results}
        assert len(identities[fixture]) == len(results) == 42
    assert identities["playwright-json/playwright.json"] == identities["junit/playwright-junit.xml"]
    assert identities["playwright-json/playwright.json"] == identities["ctrf/playwright-ctrf.json"]


def test_pytest_xunit1_and_xunit2_give_the_same_identities():
    """xunit2 (pytest's default) has no file attribute; the file is rebuilt from classname."""
    _, xunit1 = parse_fixture("junit/pytest-xunit1.xml")
    _, xunit2 = parse_fixture("junit/pytest-xunit2.xml")
    assert [(r.file_path, r.full_title, r.status) for r in xunit1] == \
        [(r.file_path, r.full_title, r.status) for r in xunit2]
    assert all(r.extra.get("filePathGuessed") for r in xunit2)
