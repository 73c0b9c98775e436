"""Outbox benchmark: jobs per second with 1, 2 and 4 workers, and webhook deliveries per second
to a loopback receiver.

    .venv/bin/python bench/jobs.py [--db postgres|sqlite] [--jobs 2000] [--deliveries 500]

Workers are threads of this process, each with its own claims (as separate `redline worker`
processes would be, minus process start-up); the no-op job measures the outbox itself
(claim, complete), the delivery measures a real signed HTTP POST with its bookkeeping.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, insert

from bench._common import machine_description, scratch_database, temporary_directory
from redline.server.config import Settings
from redline.server.db import WRITE, make_engine
from redline.server.kit.clock import utcnow
from redline.server.tables import jobs, projects, teams, users, webhooks
from redline.server.webhooks import service as webhook_service
from redline.server.worker import outbox
from redline.server.worker.registry import task
from redline.server.worker.runner import Worker


@task("bench.noop")
def noop(ctx, payload):
    return None


def run_workers(engine, settings, count: int, expected: int, done) -> float:
    workers = [Worker(engine, settings, poll_interval=0.01, name=f"bench-{i}")
               for i in range(count)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    while done() < expected:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.stop()
    return elapsed


def bench_noop(engine, settings, n_jobs: int) -> list[tuple[int, float]]:
    figures = []
    for count in (1, 2, 4):
        with engine.begin() as conn:
            conn.execute(delete(jobs))
        with engine.connect().execution_options(**WRITE) as conn, conn.begin():
            for i in range(n_jobs):
                outbox.enqueue(conn, "bench.noop", {"i": i})

        def done():
            from sqlalchemy import func, select

            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(jobs)
                                    .where(jobs.c.status == "done")).scalar_one()

        elapsed = run_workers(engine, settings, count, n_jobs, done)
        figures.append((count, n_jobs / elapsed))
    return figures


class Sink(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Sink.received += 1
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def bench_deliveries(engine, settings, n: int) -> list[tuple[int, float]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(users).values(id="user_bench", email="b@example.com", name="b",
                                          password_hash="x", failed_logins=0, created_at=now,
                                          updated_at=now))
        conn.execute(insert(teams).values(id="team_bench", name="b", created_at=now,
                                          updated_at=now))
        conn.execute(insert(projects).values(id="proj_bench", team_id="team_bench", name="b",
                                             data_retention_days=90, flakiness_threshold=0.3,
                                             auto_quarantine_enabled=True,
                                             settings_updated_at=now, created_at=now,
                                             updated_at=now))
        conn.execute(insert(webhooks).values(id="wh_bench", project_id="proj_bench", url=url,
                                             events=["run.completed"], headers={},
                                             secret="whsec_" + "A" * 43 + "=", is_active=True,
                                             created_at=now, updated_at=now))
    figures = []
    for count in (1, 2, 4):
        with engine.begin() as conn:
            conn.execute(delete(jobs))
        Sink.received = 0
        with engine.connect().execution_options(**WRITE) as conn, conn.begin():
            for i in range(n):
                webhook_service.emit(conn, "proj_bench", "run.completed", {"i": i})
        elapsed = run_workers(engine, settings, count, n, lambda: Sink.received)
        figures.append((count, n / elapsed))
    server.shutdown()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--deliveries", type=int, default=500)
    args = parser.parse_args()
    workdir = temporary_directory("redline-jobs-")
    url, drop = scratch_database(args.db, workdir)
    engine = make_engine(url, 10, 10)
    settings = Settings(database_url=url, data_dir=workdir, webhook_allow_nets="127.0.0.0/8",
                        secret_key="bench")
    try:
        noop_figures = bench_noop(engine, settings, args.jobs)
        delivery_figures = bench_deliveries(engine, settings, args.deliveries)
    finally:
        engine.dispose()
        drop()
    print(f"jobs benchmark on {machine_description()}, database: {args.db}")
    print(f"\n{'workers':>8} {'no-op jobs/s':>14} {'deliveries/s':>14}")
    for (count, rate), (_, delivered) in zip(noop_figures, delivery_figures):
        print(f"{count:8d} {rate:14.0f} {delivered:14.0f}")
    scaling = noop_figures[-1][1] / noop_figures[0][1]
    print(f"\nno-op throughput with 4 workers is {scaling:.2f}x one worker's "
          f"(claims are one short transaction each; on 2 cores the workers share them)")


if __name__ == "__main__":
    main()
