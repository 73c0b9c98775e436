"""When the database goes away the API answers UNAVAILABLE (503, Retry-After), and it
recovers by itself when the database comes back: a real PostgreSQL stopped and started."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import missing_service
from tests.support import live

PGBIN = Path("/usr/lib/postgresql/15/bin")


def run_as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                   capture_output=True, timeout=60)


@pytest.fixture
def throwaway_postgres():
    """A private PostgreSQL cluster this test may stop and start."""
    if not (PGBIN / "initdb").exists() or shutil.which("runuser") is None or os.geteuid() != 0:
        missing_service("a throwaway PostgreSQL cluster needs PostgreSQL 15's binaries and root "
                        "(to run them as the postgres user)")
    # Not under pytest's tmp dir: that one is private to root, and postgres must reach it.
    directory = Path(tempfile.mkdtemp(prefix="redline-pg-"))
    os.chmod(directory, 0o700)
    shutil.chown(directory, "postgres")
    data = directory / "data"
    port = live.free_port()
    run_as_postgres(str(PGBIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                    "--no-sync")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off"

    def start():
        run_as_postgres(str(PGBIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"),
                        "-w", "start", "-o", options)

    def stop():
        run_as_postgres(str(PGBIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")

    start()
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", start, stop
    try:
        stop()
    except subprocess.CalledProcessError:
        pass
    shutil.rmtree(directory, ignore_errors=True)


def test_unavailable_while_the_database_is_down_then_recovers(throwaway_postgres, tmp_path):
    from redline.server.db import migrate

    url, start, stop = throwaway_postgres
    migrate(url)
    with live.LiveServer.start(url, tmp_path / "data") as srv:
        tenant = live.make_tenant(srv)
        with tenant.as_key() as client:
            assert client.get(f"/api/projects/{tenant.project_id}").status_code == 200
            stop()
            down = client.get(f"/api/projects/{tenant.project_id}")
            health = client.get("/api/health")
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "UNAVAILABLE"
            assert int(down.headers["retry-after"]) >= 1
            assert health.status_code == 503
            start()
            deadline = time.time() + 20
            while client.get("/api/health").status_code != 200:
                assert time.time() < deadline, "the API did not recover"
                time.sleep(0.2)
            assert client.get(f"/api/projects/{tenant.project_id}").status_code == 200


def test_workers_survive_a_database_outage_without_losing_jobs(throwaway_postgres, tmp_path):
    """Stop PostgreSQL under a working worker: it waits, reconnects, and every job runs."""
    from redline.server.config import Settings
    from redline.server.db import WRITE, make_engine, migrate
    from redline.server.tables import jobs
    from redline.server.worker import outbox
    from redline.server.worker.registry import task
    from redline.server.worker.runner import Worker

    done = []

    @task("test.outage")
    def record(ctx, payload):
        done.append(payload["n"])

    url, start, stop = throwaway_postgres
    migrate(url)
    engine = make_engine(url, 4, 4)
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        for n in range(50):
            outbox.enqueue(conn, "test.outage", {"n": n})
    worker = Worker(engine, Settings(database_url=url), poll_interval=0.05, name="w").start()
    deadline = time.time() + 20
    while not done and time.time() < deadline:
        time.sleep(0.01)
    stop()
    time.sleep(2)
    start()
    deadline = time.time() + 60
    while len(set(done)) < 50 and time.time() < deadline:
        time.sleep(0.1)
    worker.stop()
    with engine.connect() as conn:
        stuck = conn.execute(select(func.count()).select_from(jobs).where(
            jobs.c.status != "done")).scalar_one()
    engine.dispose()
    assert set(done) == set(range(50)) and stuck == 0
