"""CLI start-up: wall time of `redline --version` and `redline runs list --output json`
against a local server, beside bare Python start-up (`python -c pass`), in the same run.

Each command runs `--repeat` times (20), the three interleaved so drift on a shared machine hits
each alike; the table quotes medians (and the fastest run, which is what start-up costs on an
idle machine). The server is `redline serve`'s app under uvicorn in its own process, on a scratch
SQLite database seeded with a project, a CI key and `--runs` imported runs (25), so `runs list`
decodes and prints a real page of 25 runs. The CLI runs with the key in REDLINE_API_KEY, no
profile, and REDLINE_OUTPUT unset.

Goal (issue 7): each under 3x bare Python start-up (lazy imports). For scale, further lines
time importing the CLI's two dependencies (click, httpx without its own CLI) together and
apart, the floor of any command that talks to the server, and the standard library's
http.client. `--version` imports nothing; `runs list --output json`
imports no pydantic (it prints the server's JSON as sent), loads no CA store for an http://
URL, and no asyncio.

    .venv/bin/python bench/cli.py [--repeat 20] [--runs 25] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, Server, machine_description, scratch_database, temporary_directory

GOAL = 3.0
FLOOR = "floor: import click, httpx"
REPORT = ROOT / "tests" / "fixtures" / "reports" / "junit" / "pytest-xunit1.xml"


def seed(server: Server, database_url: str, runs: int) -> dict:
    """A user, team, project and CI key, and `runs` runs imported from a real report."""
    import httpx

    from redline.server.accounts import service
    from redline.server.db import WRITE, make_engine

    engine = make_engine(database_url)
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        service.create_user(conn, "bench@example.com", "bench password")
    engine.dispose()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        login = client.post("/api/auth/login", json={"email": "bench@example.com",
                                                     "password": "bench password"})
        login.raise_for_status()
        user = {"Authorization": f"Bearer {login.json()['token']}"}
        team = client.post("/api/teams", json={"name": "bench"}, headers=user).json()
        project = client.post("/api/projects", json={"name": "bench", "teamId": team["id"]},
                              headers=user).json()
        key = client.post("/api/api-keys", json={"projectId": project["id"], "name": "CI"},
                          headers=user).json()["key"]
        body = REPORT.read_bytes()
        for number in range(runs):
            imported = client.post("/api/runs/import", content=body,
                                   params={"branch": "main", "commitSha": f"c{number:04d}"},
                                   headers={"X-API-Key": key,
                                            "Content-Type": "application/xml"})
            imported.raise_for_status()
    return {"key": key, "project_id": project["id"]}


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="runs of each command")
    parser.add_argument("--runs", type=int, default=25, help="runs imported for runs list")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    python = sys.executable
    redline = str(Path(python).with_name("redline"))
    if not os.path.exists(redline):
        raise SystemExit(f"{redline} is missing: run `make install`")
    workdir = temporary_directory("redline-bench-cli-")
    server = None
    try:
        database_url, _ = scratch_database("sqlite", workdir)
        server = Server("redline", "redline.server.app:create_app", factory=True, env={
            "REDLINE_DATABASE_URL": database_url, "REDLINE_RATE_LIMIT_ENABLED": "false",
            "REDLINE_SECRET_KEY": "bench-secret-key", "REDLINE_DATA_DIR": str(workdir / "data"),
            "REDLINE_COOKIE_SECURE": "false", "REDLINE_LOG_LEVEL": "WARNING"})
        server.start(workdir)
        server.wait_ready("/api/health")
        tenant = seed(server, database_url, args.runs)

        env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
        env.update({"REDLINE_URL": server.url, "REDLINE_API_KEY": tenant["key"],
                    "REDLINE_CONFIG_DIR": str(workdir / "config")})
        commands = {"python -c pass": [python, "-c", "pass"],
                    "redline --version": [redline, "--version"],
                    "redline runs list --output json": [redline, "runs", "list", "--output",
                                                        "json"],
                    # what the CLI cannot go below while it is built on click and httpx
                    FLOOR: [python, "-c", ("import sys; sys.modules['httpx._main'] = None; "
                                           "import click, httpx")],
                    # ... and each part of that floor, with the standard library's own HTTP
                    # client for scale (what a client without httpx would start from)
                    "floor: import click": [python, "-c", "import click"],
                    "floor: import httpx": [python, "-c", ("import sys; sys.modules["
                                                           "'httpx._main'] = None; "
                                                           "import httpx")],
                    "for scale: import http.client": [python, "-c", "import http.client"]}
        listed = subprocess.run(commands["redline runs list --output json"], env=env,
                                capture_output=True, text=True, check=True)
        page = json.loads(listed.stdout)
        assert len(page["data"]) == min(args.runs, 50), page
        for command in commands.values():  # warm the page cache and .pyc files
            timed(command, env)
        samples: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.repeat):
            for label, command in commands.items():  # interleaved
                samples[label].append(timed(command, env))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    bare = statistics.median(samples["python -c pass"])
    bare_min = min(samples["python -c pass"])
    figures = {label: {"median_ms": statistics.median(values) * 1000,
                       "min_ms": min(values) * 1000,
                       "ratio_median": statistics.median(values) / bare,
                       "ratio_min": min(values) / bare_min}
               for label, values in samples.items()}
    print(f"CLI start-up, {args.repeat} runs each, interleaved ({machine_description()}; "
          f"runs list prints a page of {min(args.runs, 50)} runs)")
    print(f"{'command':34} {'median':>9} {'fastest':>9} {'x bare (median)':>16} "
          f"{'x bare (fastest)':>17}  goal <{GOAL:g}x")
    for label, figure in figures.items():
        goal = "" if not label.startswith("redline") else (
            "met" if figure["ratio_median"] < GOAL else "MISSED")
        print(f"{label:34} {figure['median_ms']:7.1f}ms {figure['min_ms']:7.1f}ms "
              f"{figure['ratio_median']:15.2f}x {figure['ratio_min']:16.2f}x  {goal}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"repeat": args.repeat, "runs": args.runs, "figures": figures}, out,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
