"""How a run reads to a person, the same on every surface (the dashboard's lists and
headers, the CLI's tables and summary, webhook payloads):

- `run_label`: its title, else its CI build, else its branch and commit, else when it
  started; never the bare `run_01...` id, which tells a reader nothing;
- `verdict_note`: why its verdict differs from its status (failures of quarantined tests do
  not count), so "failed" beside "verdict: passed" never reads as a contradiction.

They read the run's API JSON (camelCase keys), which the server and the clients share;
`run_label_of` reads the same fields as attributes (a database row). This module is imported
by clients too, so it depends on the standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SHORT_SHA = 8


def run_label(run: Mapping[str, Any]) -> str:
    """`run`'s name for people, e.g. "Nightly e2e", "CI build 4711 on main",
    "main at 1a2b3c4d" or "Run of 2026-12-07 12:35 UTC"."""
    title = (run.get("runTitle") or "").strip()
    if title:
        return title
    branch = (run.get("branch") or "").strip()
    build = (run.get("ciBuildId") or "").strip()
    sha = (run.get("commitSha") or "").strip()[:SHORT_SHA]
    if build:
        return f"CI build {build}" + (f" on {branch}" if branch else "")
    if branch or sha:
        return " at ".join(part for part in (branch, sha) if part)
    started = str(run.get("createdAt") or "")[:16].replace("T", " ")
    return f"Run of {started} UTC" if started else "Run without title"


def run_label_of(run: Any) -> str:
    """`run_label` of an object with the run's fields as attributes (a database row)."""
    return run_label({"runTitle": run.run_title, "ciBuildId": run.ci_build_id,
                      "branch": run.branch, "commitSha": run.commit_sha,
                      "createdAt": run.created_at})


def _failures(count: int) -> str:
    return f"{count} failure{'s' if count != 1 else ''}"


def not_counted(run: Mapping[str, Any]) -> str | None:
    """"2 failures of quarantined tests did not count" for a finished run that has some;
    None otherwise."""
    quarantined = run.get("quarantinedFailures") or 0
    if not quarantined or run.get("verdict") not in ("passed", "failed"):
        return None
    if quarantined == 1:
        return "1 failure of a quarantined test did not count"
    return f"{_failures(quarantined)} of quarantined tests did not count"


def verdict_note(run: Mapping[str, Any]) -> str | None:
    """A sentence on the quarantined failures of a run that has some, e.g. "Passed: 2
    failures of quarantined tests did not count."; None otherwise (the status says it all)."""
    clause = not_counted(run)
    if clause is None:
        return None
    if run.get("verdict") == "passed":
        return f"Passed: {clause}."
    counted = max((run.get("failedTests") or 0) - (run.get("quarantinedFailures") or 0), 0)
    return f"Failed: {_failures(counted)} counted; {clause}."
