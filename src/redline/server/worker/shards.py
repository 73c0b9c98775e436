"""The shard timeout's background loop, run by every worker (the embedded one of `redline
serve` and `redline worker`): a sharded run (or a live reporter's run) with no news for
`shard_timeout_seconds` is completed, naming the shards that never reported
(`runs.completion`). Every replica may run it
at once: each run is locked and read again before it is completed."""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from redline.server.db import WRITE
from redline.server.kit.periodic import Periodic
from redline.server.runs.completion import complete_abandoned_shard_runs

log = logging.getLogger("redline.worker")

#: the longest wait between two sweeps (a shorter timeout sweeps more often)
MAX_INTERVAL_SECONDS = 60.0


def sweep(engine: Engine, timeout_seconds: float) -> list[str]:
    """One pass, in one short transaction: the ids of the runs it completed."""
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        return complete_abandoned_shard_runs(conn, timeout_seconds)


class ShardTimeoutLoop(Periodic):
    """`sweep` every quarter of the timeout (at most a minute apart): a run is completed at
    most a quarter of the timeout late."""

    def __init__(self, engine: Engine, timeout_seconds: float):
        super().__init__("redline-shard-timeout",
                         min(MAX_INTERVAL_SECONDS, max(0.5, timeout_seconds / 4)))
        self.engine = engine
        self.timeout_seconds = timeout_seconds

    def run_once(self) -> None:
        completed = sweep(self.engine, self.timeout_seconds)
        if completed:
            log.info("shards: completed %d run(s) whose shards stopped reporting: %s",
                     len(completed), ", ".join(completed))
