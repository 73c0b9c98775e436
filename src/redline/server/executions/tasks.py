"""The executions' background loop, run by every worker (the embedded one of `redline serve`
and `redline worker`): runs whose runner was lost are queued again once or failed, queued
runs past their queue timeout are blocked, and due schedules queue their runs. Every replica
may run it at once: each change is a conditional UPDATE, and a schedule's due time fires once
(a unique key).

Its job: `executions.keep_log`, queued when a run ends, keeps the whole log as the run's
artifact."""

from __future__ import annotations

from sqlalchemy import Engine

from redline.server.db import WRITE
from redline.server.executions import service
from redline.server.kit.periodic import Periodic
from redline.server.worker.registry import task


@task(service.KEEP_LOG)
def keep_log(ctx, payload: dict) -> None:
    """An ended run's whole log, kept as its artifact (queued when the run ended)."""
    from redline.server.worker.runner import Permanent

    run_id = payload.get("runId")
    if not isinstance(run_id, str):
        raise Permanent("bad payload: no runId")
    service.keep_log(ctx.engine, ctx.settings, run_id)


def tick(engine: Engine) -> dict:
    """One pass: the sweep, then the schedules, each in its own short transaction (none
    when a read finds nothing to do)."""
    with engine.connect() as conn:
        if not service.work_due(conn):
            return {"retried": 0, "lost": 0, "queueTimeouts": 0, "scheduled": 0}
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        swept = service.sweep(conn)
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        swept["scheduled"] = len(service.fire_schedules(conn))
    return swept


class ExecutionsLoop(Periodic):
    """`tick` every `interval` seconds."""

    def __init__(self, engine: Engine, interval: float = 1.0):
        super().__init__("redline-executions", interval)
        self.engine = engine

    def run_once(self) -> None:
        tick(self.engine)
