"""Executed runs benchmark: trigger-to-running latency with an idle runner (beside the claim's
own database time), throughput of no-op runs with 1, 2 and 4 runners, and the time from a
cancel to the last process of the run gone.

    .venv/bin/python bench/executions.py [--db sqlite|postgres] [--runs 1000] [--samples 30]

A real server (uvicorn in a thread of this process, on loopback) and real runners
(`redline runner` processes for the throughput, by default; `redline.runner.Runner` threads
of this process for the latency and cancel figures), all talking HTTP to it. Goals: latency p50 under 1 s; cancel-to-gone under the grace period
plus 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from bench._common import machine_description, scratch_database, temporary_directory
from redline.runner.agent import Runner, RunnerConfig
from redline.runner.client import RunnerClient
from redline.server.db import WRITE
from redline.server.executions import service
from redline.server.tables import runs
from tests.support import live

GRACE = 2.0
TERMINAL = ("passed", "failed", "blocked", "cancelled")


def _plan(client, project_id: str, **fields) -> dict:
    body = {"projectId": project_id, "name": "bench", "command": ["true"], "sandbox": "none",
            "maxConcurrentRuns": 100, **fields}
    response = client.post("/api/plans", json=body)
    response.raise_for_status()
    return response.json()


def _token(client, team_id: str) -> str:
    response = client.post("/api/runner-tokens", json={"teamId": team_id, "name": "bench"})
    response.raise_for_status()
    return response.json()["token"]


def _runners(url: str, token: str, count: int, poll: float) -> list[Runner]:
    return [Runner(RunnerClient(url, token),
                   RunnerConfig(poll_interval=poll, heartbeat_interval=0.5),
                   name=f"bench-{i}").start() for i in range(count)]


def _stop(runners: list[Runner]) -> None:
    for runner in runners:
        runner.stop(timeout=30)
        runner.client.close()


def _wait(client, run_id: str, statuses=TERMINAL, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while True:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in statuses or time.time() > deadline:
            return run
        time.sleep(0.01)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z"))


def bench_latency(server, client, tenant, token: str, samples: int) -> dict:
    """Idle runner (polling every 0.5 s, its default): queuedAt -> startedAt, server clock."""
    plan = _plan(client, tenant.project_id, maxConcurrentRuns=1)
    runners = _runners(server.url, token, 1, poll=0.5)
    waits = []
    try:
        for _ in range(samples):
            run = client.post(f"/api/plans/{plan['id']}/runs", json={}).json()
            done = _wait(client, run["id"])
            waits.append((_at(done["startedAt"]) - _at(done["queuedAt"])).total_seconds())
            time.sleep(random.uniform(0, 0.5))  # triggers land anywhere in the poll cycle
    finally:
        _stop(runners)
    # the claim's own database time: service.claim in its transaction, a run queued each time
    caller = service.RunnerCaller("bench", tenant.team_id, None)
    claim_ms = []
    for _ in range(samples):
        client.post(f"/api/plans/{plan['id']}/runs", json={}).raise_for_status()
        started = time.perf_counter()
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            job = service.claim(conn, caller, "bench-direct", server.app.state.settings)
        claim_ms.append((time.perf_counter() - started) * 1000)
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            service.repo.update_run(conn, job["runId"], status="cancelled")
    waits.sort()
    return {"p50_s": statistics.median(waits), "p95_s": waits[int(len(waits) * 0.95) - 1],
            "claim_db_p50_ms": statistics.median(claim_ms)}


def _runner_processes(url: str, token: str, count: int, poll: float) -> list:
    """`redline runner` processes, as an operator starts them."""
    redline = str(Path(sys.executable).parent / "redline")
    return [subprocess.Popen([redline, "runner", "--url", url, "--token", token, "--name",
                              f"bench-{i}", "--poll-interval", str(poll), "--log-level",
                              "WARNING"]) for i in range(count)]


def _stop_processes(children: list) -> None:
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        child.wait(timeout=60)


def bench_throughput(server, client, tenant, token: str, total: int,
                     kind: str = "process") -> list[tuple[int, float]]:
    """`total` runs queued, then `count` runners take them; the rate is over the server's
    clock, from the first run's start to the last one's finish (runner start-up excluded)."""
    figures = []
    per_plan = 100
    for count in (1, 2, 4):
        plans = [_plan(client, tenant.project_id) for _ in range((total + per_plan - 1)
                                                                 // per_plan)]
        ids = []
        for i in range(total):
            response = client.post(f"/api/plans/{plans[i // per_plan]['id']}/runs", json={})
            response.raise_for_status()
            ids.append(response.json()["id"])
        threads = _runners(server.url, token, count, poll=0.05) if kind == "thread" else []
        children = _runner_processes(server.url, token, count, 0.05) if kind == "process" \
            else []
        try:
            while True:
                with server.engine.connect() as conn:
                    left = conn.execute(select(func.count()).select_from(runs).where(
                        runs.c.id.in_(ids), runs.c.status.in_(("queued", "running")))
                    ).scalar_one()
                if not left:
                    break
                time.sleep(0.05)
        finally:
            _stop(threads)
            _stop_processes(children)
        with server.engine.connect() as conn:
            first, last = conn.execute(select(func.min(runs.c.started_at),
                                              func.max(runs.c.finished_at))
                                       .where(runs.c.id.in_(ids))).one()
        figures.append((count, total / (last - first).total_seconds()))
    return figures


def _alive(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def bench_cancel(server, client, tenant, token: str, samples: int) -> dict:
    """Cancel -> no process of the run left, for a command that exits on SIGTERM and for one
    that ignores it (SIGKILL after the grace period)."""
    figures = {}
    runners = _runners(server.url, token, 1, poll=0.05)
    try:
        for kind, trap in (("exits on SIGTERM", ""),
                           ("ignores SIGTERM", "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n")):
            times = []
            for _ in range(max(3, samples // 5)):
                marker = f"bench-cancel-{secrets.token_hex(6)}"
                code = ("import signal, subprocess, sys, time\n" + trap +
                        "subprocess.Popen([sys.executable, '-c', 'import time; "
                        "time.sleep(600)', sys.argv[1]])\n"
                        "print('started', flush=True)\ntime.sleep(600)\n")
                plan = _plan(client, tenant.project_id, sandbox="auto",
                             command=[sys.executable, "-c", code, marker])
                run = client.post(f"/api/plans/{plan['id']}/runs", json={}).json()
                while "started" not in client.get(f"/api/runs/{run['id']}/log").json()["text"]:
                    time.sleep(0.02)
                started = time.perf_counter()
                client.post(f"/api/runs/{run['id']}/cancel").raise_for_status()
                while _alive(marker):
                    time.sleep(0.005)
                times.append(time.perf_counter() - started)
                _wait(client, run["id"])
            figures[kind] = statistics.median(times)
    finally:
        _stop(runners)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--runners", choices=("process", "thread"), default="process",
                        help="throughput with `redline runner` processes (default) or Runner "
                        "threads in this process (they share its GIL with the server)")
    args = parser.parse_args()
    workdir = temporary_directory("redline-bench-executions-")
    url, drop = scratch_database(args.db, workdir)
    os.environ.pop("REDLINE_DATA_DIR", None)
    server = live.LiveServer.start(url, workdir / "data", rate_limit_enabled=False,
                                   runner_cancel_grace_seconds=GRACE).__enter__()
    try:
        tenant = live.make_tenant(server, "bench")
        with tenant.as_user() as client:
            token = _token(client, tenant.team_id)
            print(f"executed runs on {args.db} ({machine_description()})")
            latency = bench_latency(server, client, tenant, token, args.samples)
            print(f"  trigger -> running, idle runner polling every 0.5 s: "
                  f"p50 {latency['p50_s']:.3f} s, p95 {latency['p95_s']:.3f} s "
                  f"(goal: p50 < 1 s); the claim's own database time: p50 "
                  f"{latency['claim_db_p50_ms']:.1f} ms")
            for count, rate in bench_throughput(server, client, tenant, token, args.runs,
                                                args.runners):
                print(f"  {args.runs} no-op runs, {count} runner {args.runners}(s): "
                      f"{rate:.1f} runs/s")
            for kind, seconds in bench_cancel(server, client, tenant, token,
                                              args.samples).items():
                print(f"  cancel -> last process gone, command {kind}: {seconds:.2f} s "
                      f"(goal: < grace {GRACE:g} s + 1 s)")
    finally:
        server.__exit__(None, None, None)
        drop()


if __name__ == "__main__":
    main()
