"""A run's completion, in the one place that orders it: its status, its cases' statistics
and its verdict (intelligence/stats.py), the automatic quarantine it triggers, its error
groups, and the events it emits (webhooks). Runs, results, intelligence and webhooks each
keep their own part; this module is the only one that calls them all, so none of them needs
another to finish a run (and none imports another inside a function to dodge a cycle).

The counts come first: whoever completes a run refreshes them from its results before
(`runs.service.refresh_counts`), and the statistics read them (an outage run, the verdict).

A sharded run completes when its last shard says so (`runs.service.complete_shard`). A shard
that never reports (its CI job crashed, was cancelled or never started) must not leave the run
in progress forever: the worker's sweep (`worker/shards.py`) completes a sharded run that had
no news for `shard_timeout_seconds` (`complete_abandoned_shard_runs`), keeping the results the
shards did send and naming the shards that never reported in `missing_shards`. A live
reporter's run whose process died before it ended the run is completed the same way.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection

from redline.server.intelligence import stats
from redline.server.kit.clock import iso, utcnow
from redline.server.runs import repository as repo
from redline.server.webhooks import service as webhooks


def complete_run(conn: Connection, run_id: str, requested: str | None = None,
                 outcomes: list | None = None) -> None:
    """Complete a run. `cancelled` when asked; otherwise `failed` when the client says so or a
    result failed (a run with failures cannot be called passed), else `passed`. `outcomes`:
    all of the run's results, from the import that made it (`stats.apply_run`). Its
    statistics, quarantine, error groups and events happen once (`runs.stats_applied`)."""
    run = repo.get_run(conn, run_id)
    if requested == "cancelled":
        status = "cancelled"
    else:
        status = "failed" if requested == "failed" or run.failed_tests else "passed"
    now = utcnow()
    repo.update_run(conn, run_id, status=status, completed_at=now, updated_at=now)
    applied = stats.apply_run(conn, run_id, outcomes)
    if applied is None:  # applied before (or statistics off: bench/_without_stats.py)
        return
    run = repo.get_run(conn, run_id)  # completed, its counts refreshed
    hooks = webhooks.active_webhooks(conn, run.project_id)  # read once for the run's events
    if applied.auto_quarantine:
        stats.set_quarantine(conn, run.project_id, applied.auto_quarantine, True,
                             actor_id=None, reason="auto", owner=None, expires_at=None,
                             automatic=True)
        webhooks.emit_each(conn, run.project_id, "test.quarantined", stats.quarantined_payloads(
            conn, applied.auto_quarantine, reason="auto", owner=None, automatic=True,
            expires_at=iso(None)), hooks)
    stats.record_error_groups(conn, run.project_id, run_id)
    if hooks:  # (the payload names failing tests: read only when someone subscribes)
        data = webhooks.run_event_data(conn, run, applied.verdict,
                                       applied.quarantined_failures)
        webhooks.emit(conn, run.project_id, "run.completed", data, hooks)
        if applied.verdict == "failed":
            webhooks.emit(conn, run.project_id, "run.failed", data, hooks)
    if applied.became_flaky:
        webhooks.emit_each(conn, run.project_id, "test.flaky",
                           stats.flaky_payloads(conn, run.id, applied.became_flaky), hooks)


def complete_abandoned_shard_runs(conn: Connection, timeout_seconds: float,
                                  now=None) -> list[str]:
    """Complete the sharded runs, and the runs of a live reporter (source `reporter`), with no
    news (no shard joining, no result, no shard finishing) for `timeout_seconds`: `failed`,
    since a shard or the reporter's end is missing (whatever the results sent say), a sharded
    run with `missing_shards` naming the shards that never reported completion. Returns the
    ids completed. Each run is locked and read again first: a shard that reported meanwhile,
    or another worker's sweep, wins."""
    now = now or utcnow()
    quiet_since = now - timedelta(seconds=timeout_seconds)
    completed = []
    for run_id in repo.stale_reporter_run_ids(conn, quiet_since):
        run = repo.get_run(conn, run_id, for_update=True)
        if run is None or run.status != "running" or run.updated_at >= quiet_since:
            continue
        if run.shard_total:
            done = set(run.shards_done or [])
            repo.update_run(conn, run_id, missing_shards=[
                shard for shard in range(1, run.shard_total + 1) if shard not in done])
        complete_run(conn, run_id, "failed")
        completed.append(run_id)
    return completed
