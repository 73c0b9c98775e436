"""The outcome-mapping table the parsers use: `redline.outcomes`, shared with the live
reporters (one table, never a copy)."""

from redline.outcomes import (
    FAILED,
    FLAKY,
    OUTCOMES,
    PASSED,
    SKIPPED,
    STATUSES,
    map_outcome,
    status_of_attempts,
)

__all__ = ["FAILED", "FLAKY", "OUTCOMES", "PASSED", "SKIPPED", "STATUSES", "map_outcome",
           "status_of_attempts"]
