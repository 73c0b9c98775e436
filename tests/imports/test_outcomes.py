"""The one outcome table, and how attempts fold into one status."""

from __future__ import annotations

import pytest

from redline.server.imports.parsers.outcomes import (
    OUTCOMES,
    STATUSES,
    map_outcome,
    status_of_attempts,
)


@pytest.mark.parametrize(("word", "status"), [
    ("pass", "passed"), ("passed", "passed"),
    ("failure", "failed"), ("error", "failed"), ("failed", "failed"),
    ("skip", "skipped"), ("skipped", "skipped"), ("xfail", "skipped"), ("pending", "skipped"),
    ("todo", "skipped"), ("did not run", "skipped"),
    ("flaky", "flaky"),
    ("expected", "passed"), ("unexpected", "failed"), ("timedOut", "failed"), ("other", "failed"),
])
def test_the_design_table(word, status):
    assert map_outcome(word) == status


def test_every_entry_maps_to_one_of_the_four_statuses():
    assert set(OUTCOMES.values()) == set(STATUSES)
    with pytest.raises(KeyError):
        map_outcome("exploded")


def test_failed_then_passed_is_flaky_and_the_last_attempt_decides_otherwise():
    assert status_of_attempts(["failed", "passed"]) == "flaky"
    assert status_of_attempts(["failed", "failed", "passed"]) == "flaky"
    assert status_of_attempts(["passed", "passed"]) == "passed"
    assert status_of_attempts(["failed", "failed"]) == "failed"
    assert status_of_attempts(["passed"]) == "passed"
    assert status_of_attempts(["skipped"]) == "skipped"
