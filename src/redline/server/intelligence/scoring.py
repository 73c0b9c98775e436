"""Flakiness, as arithmetic on a test case's recent results (pure functions, no database).

The window: a case's newest 50 results that ran (skipped ones say nothing), newest first, each
an `Entry`. A result is **flaky evidence** when it

- has status `flaky` (failed, then passed on a retry in the same run), or
- is a pass or a fail on the same commit as an older result of the case with the opposite
  outcome, in another run (a re-run that changed its mind),

unless it comes from an **outage run**: one where over 80% of at least 10 executed tests
failed at once (an infrastructure failure says nothing about one test).

    flakinessScore = sum(w_i * evidence_i) / sum(w_i),   w_i = 0.5 ** (i / 10)

with i = 0 the newest result: the weight of a result halves every 10 results. `totalRuns` and
`flakyRuns` are plain counts over the same window. A case that failed every time over the
window (at least twice) is `broken`, not flaky; one at or above the project's threshold is
`flaky`; one with no results yet is `new`; anything else `stable`.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW = 50
HALF_LIFE = 10
OUTAGE_SHARE = 0.8
OUTAGE_MIN_TESTS = 10


@dataclass(frozen=True)
class Entry:
    status: str  # passed | failed | flaky
    commit: str | None
    run_id: str
    at: str  # ISO time of the result
    outage: bool
    duration: int

    def to_json(self) -> list:
        return [self.status, self.commit, self.run_id, self.at, self.outage, self.duration]

    @classmethod
    def from_json(cls, data: list) -> "Entry":
        return cls(*data)


def is_outage(failed: int, executed: int) -> bool:
    return executed >= OUTAGE_MIN_TESTS and failed > OUTAGE_SHARE * executed


def merge(new_newest_first: list[Entry], old: list[Entry]) -> list[Entry]:
    """The window after new results arrive (both lists newest first)."""
    return (new_newest_first + old)[:WINDOW]


def evidence(entries: list[Entry]) -> list[bool]:
    flags = []
    for i, entry in enumerate(entries):
        if entry.outage:
            flags.append(False)
        elif entry.status == "flaky":
            flags.append(True)
        else:
            opposite = "failed" if entry.status == "passed" else "passed"
            flags.append(entry.commit is not None and any(
                older.commit == entry.commit and older.status == opposite
                and older.run_id != entry.run_id and not older.outage
                for older in entries[i + 1:]))
    return flags


def score(flags: list[bool]) -> float:
    if not flags:
        return 0.0
    weights = [0.5 ** (i / HALF_LIFE) for i in range(len(flags))]
    return round(sum(w for w, flag in zip(weights, flags) if flag) / sum(weights), 4)


@dataclass(frozen=True)
class CaseStats:
    status: str
    flakiness_score: float
    total_runs: int
    flaky_runs: int
    failed_runs: int
    avg_duration: int
    last_status: str | None
    last_run_at: str | None
    last_flaky_at: str | None
    last_failed_at: str | None


def case_stats(entries: list[Entry], threshold: float) -> CaseStats:
    flags = evidence(entries)
    value = score(flags)
    failed = sum(1 for e in entries if e.status == "failed")
    if not entries:
        status = "new"
    elif len(entries) >= 2 and failed == len(entries):
        status, value = "broken", 0.0
    elif any(flags) and value >= threshold:
        status = "flaky"
    else:
        status = "stable"
    flaky_at = next((e.at for e, flag in zip(entries, flags) if flag), None)
    failed_at = next((e.at for e in entries if e.status == "failed"), None)
    return CaseStats(
        status=status, flakiness_score=value, total_runs=len(entries), flaky_runs=sum(flags),
        failed_runs=failed,
        avg_duration=int(sum(e.duration for e in entries) / len(entries)) if entries else 0,
        last_status=entries[0].status if entries else None,
        last_run_at=entries[0].at if entries else None, last_flaky_at=flaky_at,
        last_failed_at=failed_at)
