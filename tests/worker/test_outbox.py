"""The job outbox and workers (RELIABILITY.md section 8), on the session's real database."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from redline.server.config import Settings
from redline.server.db import WRITE, make_engine
from redline.server.kit.clock import utcnow
from redline.server.tables import jobs
from redline.server.worker import outbox
from redline.server.worker.registry import task
from redline.server.worker.runner import RetryLater, Worker, drain
from tests.conftest import TEST_DB

RAN: Counter = Counter()


@task("test.record")
def record(ctx, payload):
    RAN[payload["n"]] += 1
    if payload.get("sleep"):
        time.sleep(payload["sleep"])


@task("test.flaky")
def flaky(ctx, payload):
    raise RuntimeError("the receiver is down")


@task("test.later")
def later(ctx, payload):
    raise RetryLater("429 from the receiver", delay=120)


@pytest.fixture
def engine(migrated_url):
    engine = make_engine(migrated_url, 10, 10)
    with engine.begin() as conn:
        conn.execute(delete(jobs))
    RAN.clear()
    yield engine
    engine.dispose()


def queue(engine, kind="test.record", count=1, **payload):
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        return [outbox.enqueue(conn, kind, {"n": i, **payload}) for i in range(count)]


def status_of(engine, job_id):
    with engine.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).one()


def test_a_job_exists_only_if_its_transaction_commits(engine):
    with engine.connect().execution_options(**WRITE) as conn:
        conn.begin()
        outbox.enqueue(conn, "test.record", {"n": 1})
        conn.rollback()  # the change that caused it failed
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 0
    [job_id] = queue(engine)
    assert status_of(engine, job_id).status == "queued"


def test_a_claimed_job_runs_and_is_done(engine):
    [job_id] = queue(engine)
    assert drain(engine, Settings()) == 1
    row = status_of(engine, job_id)
    assert (row.status, row.attempts, row.locked_by) == ("done", 1, None)
    assert RAN[0] == 1


def test_lease_boundaries(engine):
    """River's rescuer cases: expired by a minute -> due again; a minute before -> untouched;
    last attempt expired -> dead; done -> untouched."""
    ids = queue(engine, count=4)
    now = utcnow()
    with engine.begin() as conn:
        for job_id, (status, lease, attempts) in zip(ids, [
                ("running", now - timedelta(minutes=1), 1),
                ("running", now + timedelta(minutes=1), 1),
                ("running", now - timedelta(minutes=1), 10),
                ("done", None, 1)]):
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                status=status, lease_until=lease, attempts=attempts, locked_by="dead-worker"))
    claimed = outbox.claim(engine, "w2", limit=10)
    assert [j.id for j in claimed] == [ids[0]] and claimed[0].attempts == 2
    assert status_of(engine, ids[1]).locked_by == "dead-worker"
    assert status_of(engine, ids[2]).status == "dead"
    assert status_of(engine, ids[3]).status == "done"


def test_failures_back_off_with_jitter_then_dead_letter_with_their_history(engine):
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        job_id = outbox.enqueue(conn, "test.flaky", {}, max_attempts=3)
    worker = Worker(engine, Settings(), name="w")
    delays = []
    for attempt in range(1, 4):
        with engine.begin() as conn:  # make it due now
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(run_after=utcnow()))
        assert worker.run_once()
        row = status_of(engine, job_id)
        delays.append((row.run_after - row.updated_at).total_seconds())
        assert row.attempts == attempt
    assert row.status == "dead"
    assert [e["attempt"] for e in row.errors] == [1, 2, 3]
    assert "the receiver is down" in row.last_error
    assert 2.5 <= delays[0] <= 5 and 10 <= delays[1] <= 20  # 5 s, then 20 s, with jitter


def test_backoff_grows_and_is_capped():
    assert [outbox.retry_delay(n) <= 5 * 4 ** (n - 1) for n in range(1, 6)] == [True] * 5
    assert outbox.retry_delay(30) <= outbox.MAX_DELAY


def test_a_handler_can_ask_for_a_later_retry(engine):
    [job_id] = queue(engine, kind="test.later")
    Worker(engine, Settings(), name="w").run_once()
    row = status_of(engine, job_id)
    assert row.status == "queued"
    assert (row.run_after - row.updated_at).total_seconds() == pytest.approx(120, abs=1)


def test_a_worker_that_lost_its_lease_cannot_complete(engine):
    [job_id] = queue(engine)
    [job] = outbox.claim(engine, "slow")
    with engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(
            lease_until=utcnow() - timedelta(seconds=1)))
    [again] = outbox.claim(engine, "fast")
    assert again.attempts == 2
    assert outbox.complete(engine, job, "slow") is False
    assert outbox.complete(engine, again, "fast") is True


def test_stopping_finishes_the_job_in_hand_and_claims_no_more(engine):
    queue(engine, count=3, sleep=0.5)
    worker = Worker(engine, Settings(), poll_interval=0.05, name="w").start()
    deadline = time.time() + 10
    while not RAN and time.time() < deadline:
        time.sleep(0.01)
    worker.stop()
    with engine.connect() as conn:
        statuses = Counter(conn.execute(select(jobs.c.status)).scalars())
    assert statuses["done"] == sum(RAN.values()) >= 1
    assert statuses["running"] == 0 and statuses["queued"] == 3 - statuses["done"]


@pytest.mark.skipif(TEST_DB != "postgres", reason="SKIP LOCKED concurrency is PostgreSQL's")
def test_eight_workers_share_a_thousand_jobs_without_overlap(engine):
    queue(engine, count=1000)
    claims: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work(name):
        worker = Worker(engine, Settings(), name=name)
        while True:
            taken = outbox.claim(engine, name, limit=5)
            if not taken:
                return
            with lock:
                claims.extend((job.id, name) for job in taken)
            for job in taken:
                worker.execute(job)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claims) == 1000 and len({job for job, _ in claims}) == 1000  # no double claim
    assert sum(RAN.values()) == 1000 and set(RAN.values()) == {1}
    assert len({name for _, name in claims}) > 1


def test_sqlite_or_postgres_two_workers_and_api_writes_never_fail(engine, tenant):
    """SQLite mode with two workers and API writes at once: no 'database is locked'."""
    queue(engine, count=200)
    workers = [Worker(engine, Settings(), poll_interval=0.01, name=f"w{i}").start()
               for i in range(2)]
    with tenant.as_key() as client:
        statuses = [client.post("/api/runs", json={"status": "running"}).status_code
                    for _ in range(30)]
    deadline = time.time() + 30
    while sum(RAN.values()) < 200 and time.time() < deadline:
        time.sleep(0.05)
    for worker in workers:
        worker.stop()
    assert statuses == [201] * 30
    assert sum(RAN.values()) == 200 and set(RAN.values()) == {1}
