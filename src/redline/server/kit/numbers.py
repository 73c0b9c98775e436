"""Bounds of the numbers Redline keeps, shared by the API's schemas and the report parsers."""

from __future__ import annotations

from typing import Any

INT32_MAX = 2**31 - 1  # an Integer column (PostgreSQL's int4): counts, line numbers
INT64_MAX = 2**63 - 1  # a BigInteger column
# A test's or a run's duration: about 31.7 years. Well under INT64_MAX, so that the sums of
# millions of durations (a run's, a trend's) still fit a BigInteger.
MAX_DURATION_MS = 10**12


def integral(value: Any) -> Any:
    """5.0 as the integer 5; anything else unchanged (for the validator to judge)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def clamp_duration(ms: int) -> int:
    """A duration read from a report, within what Redline keeps (a larger one is junk)."""
    return min(ms, MAX_DURATION_MS)
