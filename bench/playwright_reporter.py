"""Playwright reporter benchmark: the cost of `@redline/playwright-reporter` on a suite of fast
tests, off and on, in one run (issue 26: reporting must never slow the run).

    (cd reporters/playwright && npm ci)   # installs @playwright/test and builds dist/
    .venv/bin/python bench/playwright_reporter.py [--tests 2000] [--repeat 3] [--workers 2]

Starts a Redline server (SQLite, rate limits off) with a project key, generates a suite of
trivial tests that open no browser (files of 100; a fast test is the worst case for a
reporter, whose cost is per test), then runs `playwright test` on it `--repeat` times with the
reporter off (`enabled: false`) and on (reporting to the server), the rounds interleaved so
drift on a shared machine hits both alike, plus once with the server down (everything goes to
the spool). Prints the wall time of each whole `playwright test` process (start-up, the
tests, the reporter's end of run), medians, the ratio on/off and the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import (
    Server,
    first_line,
    free_port,
    machine_description,
    run_timed,
    scratch_database,
    temporary_directory,
)

PACKAGE = Path(__file__).resolve().parent.parent / "reporters" / "playwright"
PER_FILE = 100
CONFIG = """
import { defineConfig } from '@playwright/test';
export default defineConfig({
  testDir: '.',
  workers: %(workers)d,
  fullyParallel: true,
  reporter: [['dot'], ['@redline/playwright-reporter',
                      { enabled: process.env.BENCH_REDLINE === '1' }]],
});
"""


def write_suite(root: Path, tests: int, workers: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    modules = root / "node_modules"
    modules.mkdir(exist_ok=True)
    for entry in (PACKAGE / "node_modules").iterdir():
        (modules / entry.name).symlink_to(entry)
    (modules / "@redline").mkdir()
    (modules / "@redline" / "playwright-reporter").symlink_to(PACKAGE)
    (root / "playwright.config.ts").write_text(CONFIG % {"workers": workers})
    for index in range(0, tests, PER_FILE):
        count = min(PER_FILE, tests - index)
        body = ["import { test, expect } from '@playwright/test';", ""]
        body += [f"test('adds {n}', () => {{ expect({n} + 1).toBe({n + 1}); }});"
                 for n in range(count)]
        (root / f"fast_{index // PER_FILE:03d}.spec.ts").write_text("\n".join(body) + "\n")


def run_playwright(root: Path, env: dict[str, str]) -> tuple[float, str, float]:
    """(wall seconds, output, CPU seconds of the run: its processes' user + system)."""
    cli = root / "node_modules" / "@playwright" / "test" / "cli.js"
    return run_timed(["node", str(cli), "test"], root, env, "playwright test")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not (PACKAGE / "dist" / "index.js").exists() or not shutil.which("node"):
        raise SystemExit("Build the reporter first: cd reporters/playwright && npm ci")
    workdir = temporary_directory("redline-playwright-reporter-")
    suite = workdir / "suite"
    write_suite(suite, args.tests, args.workers)
    url, drop = scratch_database("sqlite", workdir)
    server = Server("redline", "redline.server.app:create_app", factory=True, env={
        "REDLINE_DATABASE_URL": url, "REDLINE_DATA_DIR": str(workdir / "data"),
        "REDLINE_RATE_LIMIT_ENABLED": "false"})
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDLINE_", "CI"))}
    base.update(PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1", FORCE_COLOR="0")
    off: list[float] = []
    on: list[float] = []
    off_cpu: list[float] = []
    on_cpu: list[float] = []
    try:
        server.start(workdir)
        server.wait_ready("/api/health")
        key = httpx.post(f"{server.url}/api/setup", json={
            "email": "bench@example.com", "password": "benchmark-password"}).json()["apiKey"]
        reporting = {**base, "BENCH_REDLINE": "1", "REDLINE_URL": server.url,
                     "REDLINE_API_KEY": key["key"]}
        run_playwright(suite, base)  # warm-up: Playwright's transform cache, page cache
        sent = ""
        for _ in range(args.repeat):
            seconds, _, cpu = run_playwright(suite, base)
            off.append(seconds)
            off_cpu.append(cpu)
            seconds, output, cpu = run_playwright(suite, reporting)
            on.append(seconds)
            on_cpu.append(cpu)
            sent = first_line(output, "Redline:")
        down = {**reporting, "REDLINE_URL": f"http://127.0.0.1:{free_port()}"}
        spooled_s, spooled_out, spooled_cpu = run_playwright(suite, down)
        runs = httpx.get(f"{server.url}/api/runs", headers={"X-API-Key": key["key"]}).json()
    finally:
        server.stop()
        drop()
    off_s, on_s = statistics.median(off), statistics.median(on)
    print(f"Playwright reporter benchmark on {machine_description()}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"suite: {args.tests} fast tests (no browser) in {args.tests // PER_FILE} files, "
          f"{args.workers} workers; {args.repeat} rounds, interleaved")
    off_c, on_c = statistics.median(off_cpu), statistics.median(on_cpu)
    print(f"\n{'playwright test':34} {'wall s (median)':>16} {'CPU s':>7} "
          f"{'wall s of each round':>24}")
    print(f"{'reporter off':34} {off_s:16.3f} {off_c:7.2f} "
          f"{' '.join(f'{s:.2f}' for s in off):>24}")
    print(f"{'reporter on (to the server)':34} {on_s:16.3f} {on_c:7.2f} "
          f"{' '.join(f'{s:.2f}' for s in on):>24}")
    print(f"{'reporter on, server down (spool)':34} {spooled_s:16.3f} {spooled_cpu:7.2f} "
          f"{'1 round':>24}")
    print(f"\ncost of the reporter: {on_s / off_s - 1:+.1%} of the run's wall time "
          f"({(on_s - off_s) / args.tests * 1000:+.2f} ms a test); {on_c / off_c - 1:+.1%} "
          "of the run's CPU time (the server's is not counted)")
    print(f"last reported run: {sent}")
    print(f"server down: {first_line(spooled_out, 'Redline:')[:110]}")
    data = runs.get("data", [])
    if data:
        print(f"runs stored: {len(data)}, the newest with {data[0].get('totalTests')} tests")


if __name__ == "__main__":
    main()
