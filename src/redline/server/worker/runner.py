"""Workers: claim jobs from the outbox, run their handler, record the outcome.

`redline serve` runs one worker thread beside the API (unless `--no-worker`); `redline worker`
runs worker processes on any host that reaches the database. Shutdown is graceful: after a
stop request (SIGTERM) a worker claims nothing more and finishes the job in hand; a second
signal exits at once, and the job's lease lets another worker take it again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from redline.server.kit.ids import ulid
from redline.server.worker import outbox
from redline.server.worker.registry import handler_for, load_tasks

log = logging.getLogger("redline.worker")


class RetryLater(Exception):
    """A handler asks for its next attempt after `delay` seconds (e.g. a Retry-After)."""

    def __init__(self, message: str, delay: float):
        super().__init__(message)
        self.delay = delay


class Permanent(Exception):
    """A failure no retry can fix: the job goes to the dead letters at once."""


@dataclass
class Context:
    engine: Engine
    settings: object
    worker_id: str
    job: outbox.Job


class Worker:
    def __init__(self, engine: Engine, settings, poll_interval: float = 0.5,
                 name: str | None = None):
        load_tasks()
        self.engine = engine
        self.settings = settings
        self.poll_interval = poll_interval
        self.worker_id = name or f"{socket.gethostname()}:{os.getpid()}:{ulid()[-6:]}"
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Worker:
        self._thread = threading.Thread(target=self.run_forever, name="redline-worker",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Claim nothing more; wait for the job in hand."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def wake(self) -> None:
        """A hint that a job was just queued: look now instead of at the next poll."""
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------

    def run_forever(self) -> None:
        log.info("worker %s started", self.worker_id)
        while not self._stopping.is_set():
            try:
                worked = self.run_once()
            except Exception:  # the database went away, say: wait and try again
                log.exception("worker %s: claiming failed", self.worker_id)
                worked = False
            if not worked:
                self._wake.wait(self.poll_interval)
                self._wake.clear()
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> bool:
        """Claim and run one job; False when none was due."""
        lease = timedelta(seconds=getattr(self.settings, "job_lease_seconds", 60))
        jobs = outbox.claim(self.engine, self.worker_id, limit=1, lease=lease)
        if not jobs:
            return False
        self.execute(jobs[0])
        return True

    def _record(self, record, job, *args, **kwargs):
        patience = float(getattr(self.settings, "job_lease_seconds", 60))
        return _record_with_retries(record, self.engine, job, self.worker_id, *args,
                                    patience=patience, **kwargs)

    def execute(self, job: outbox.Job) -> str:
        context = Context(self.engine, self.settings, self.worker_id, job)
        started = time.monotonic()
        try:
            handler = handler_for(job.kind)
            handler(context, job.payload)
        except RetryLater as exc:
            status = self._record(outbox.fail, job, str(exc), delay=exc.delay)
        except Permanent as exc:
            job.attempts = job.max_attempts
            status = self._record(outbox.fail, job, f"permanent: {exc}")
        except Exception as exc:  # noqa: BLE001 - whatever a handler raises fails that job only
            log.warning("job %s (%s) attempt %d failed: %s", job.id, job.kind, job.attempts,
                        exc)
            status = self._record(outbox.fail, job, f"{type(exc).__name__}: {exc}")
        else:
            status = "done" if self._record(outbox.complete, job) else "lost"
        self.processed += 1
        log.debug("job %s (%s) -> %s in %.0f ms", job.id, job.kind, status,
                  (time.monotonic() - started) * 1000)
        return status


def _record_with_retries(record, engine, job, worker_id, *args, patience: float = 60.0,
                         **kwargs):
    """Record an attempt's outcome, retrying while the database is unreachable: the job ran,
    so leaving it `running` until its lease expires would run it again for nothing."""
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return record(engine, job, worker_id, *args, **kwargs)
        except Exception:
            if time.monotonic() > deadline:
                raise
            log.warning("job %s: cannot record its outcome yet; retrying", job.id)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def drain(engine: Engine, settings, max_jobs: int = 10_000) -> int:
    """Run due jobs until none is left (tests and one-off maintenance)."""
    worker = Worker(engine, settings, name="drain")
    count = 0
    while count < max_jobs and worker.run_once():
        count += 1
    return count
