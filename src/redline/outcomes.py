"""THE outcome-mapping table: every word a report format or a test runner uses for a test's
outcome, mapped to Redline's four statuses. The server's report parsers and the live reporters
(the pytest plugin) never decide a status any other way; it lives here, beside the error
catalog, because a client must not import the server.

Rules (DESIGN.md section 6): pass -> passed; failure and error -> failed (the parser keeps which
one in `error.type`); skip, xfail, pending, todo, "did not run" -> skipped; failed then passed
on a retry in the same run -> flaky (see `status_of_attempts`).
"""

from __future__ import annotations

PASSED, FAILED, SKIPPED, FLAKY = "passed", "failed", "skipped", "flaky"
STATUSES = (PASSED, FAILED, SKIPPED, FLAKY)

OUTCOMES: dict[str, str] = {
    # passes
    "pass": PASSED,
    "passed": PASSED,
    "success": PASSED,
    "xpassed": PASSED,  # pytest: an xfail test that passed (not strict), as its JUnit XML says
    "expected": PASSED,  # Playwright test outcome: ended as expected (test.fail() that failed too)
    # failures and errors
    "failure": FAILED,
    "failed": FAILED,
    "error": FAILED,
    "unexpected": FAILED,  # Playwright: did not end as expected (test.fail() that passed too)
    "timedout": FAILED,  # Playwright result status timedOut
    "interrupted": FAILED,  # Playwright: the run was stopped while the test ran
    "other": FAILED,  # CTRF: a status the tool could not map; never shown as green
    # not run
    "skip": SKIPPED,
    "skipped": SKIPPED,
    "xfail": SKIPPED,  # pytest expected failure: <skipped type="pytest.xfail">
    "xfailed": SKIPPED,  # pytest's summary word for the same
    "pending": SKIPPED,
    "todo": SKIPPED,
    "did not run": SKIPPED,
    "disabled": SKIPPED,
    # retried
    "flaky": FLAKY,
}


def map_outcome(word: str) -> str:
    """Redline's status for a format's outcome word (case-insensitive).

    Raises KeyError for a word the table does not know; callers turn that into a
    ReportParseError that names the word.
    """
    return OUTCOMES[word.strip().lower()]


def status_of_attempts(attempt_statuses: list[str]) -> str:
    """Fold the statuses of a test's attempts in one run (oldest first) into one status.

    A test that passed on its last attempt after a failed one is flaky; otherwise the last
    attempt decides.
    """
    final = attempt_statuses[-1]
    if final == PASSED and any(status == FAILED for status in attempt_statuses[:-1]):
        return FLAKY
    return final
