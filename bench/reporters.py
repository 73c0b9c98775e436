"""Live reporter benchmark: the pytest plugin's cost on a suite of 5,000 fast tests, off and on,
in one run (issue 26; goal: under 5% of the suite's wall time).

    .venv/bin/python bench/reporters.py [--tests 5000] [--repeat 3]

Starts a Redline server (SQLite, rate limits off) with a project key, generates the suite (files
of 100 trivial tests: a fast test is the worst case for a reporter, whose cost is per test),
then runs `python -m pytest -q` on it `--repeat` times with the plugin off and on (`--redline`,
reporting to the server), the rounds interleaved so drift on a shared machine hits both alike,
plus once with the plugin on and the server down (everything goes to the spool). Prints the
wall time of each (the whole `pytest` process: start-up, collection, tests, the plugin's end
of session) and its CPU time, medians, and the ratio on/off. On a busy machine the wall times
of rounds differ by more than the plugin costs: raise `--repeat`, and read the CPU figure and
the paired figure (the median of each round's on/off ratio) too; the load average is printed at
the start and the end.
"""

from __future__ import annotations

import argparse
import os
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

GOAL = 0.05
PER_FILE = 100


def write_suite(root: Path, tests: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    fast: a fast test\n")
    for index in range(0, tests, PER_FILE):
        count = min(PER_FILE, tests - index)
        body = ["import pytest", ""]
        for n in range(count):
            mark = "@pytest.mark.fast\n" if n % 10 == 0 else ""
            body.append(f"{mark}def test_{n}():\n    assert {n} + 1 == {n + 1}\n")
        (root / f"test_fast_{index // PER_FILE:03d}.py").write_text("\n".join(body))


def run_pytest(root: Path, env: dict[str, str], *args: str) -> tuple[float, str, float]:
    """(wall seconds, output, CPU seconds of the pytest process: user + system)."""
    return run_timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                     root, env, "pytest")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workdir = temporary_directory("redline-reporters-")
    suite = workdir / "suite"
    write_suite(suite, args.tests)
    url, drop = scratch_database("sqlite", workdir)
    server = Server("redline", "redline.server.app:create_app", factory=True, env={
        "REDLINE_DATABASE_URL": url, "REDLINE_DATA_DIR": str(workdir / "data"),
        "REDLINE_RATE_LIMIT_ENABLED": "false"})
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDLINE_", "PYTEST_"))}
    base["REDLINE_CONFIG_DIR"] = str(workdir / "config")
    off: list[float] = []
    on: list[float] = []
    off_cpu: list[float] = []
    on_cpu: list[float] = []
    load_before = os.getloadavg()
    try:
        server.start(workdir)
        server.wait_ready("/api/health")
        key = httpx.post(f"{server.url}/api/setup", json={
            "email": "bench@example.com", "password": "benchmark-password"}).json()["apiKey"]
        reporting = {**base, "REDLINE_URL": server.url, "REDLINE_API_KEY": key["key"]}
        run_pytest(suite, base)  # warm-up: bytecode caches, page cache
        sent = ""
        for _ in range(args.repeat):
            seconds, _, cpu = run_pytest(suite, base)
            off.append(seconds)
            off_cpu.append(cpu)
            seconds, output, cpu = run_pytest(suite, reporting, "--redline")
            on.append(seconds)
            on_cpu.append(cpu)
            sent = first_line(output, "Redline:")
        down = {**base, "REDLINE_URL": f"http://127.0.0.1:{free_port()}",
                "REDLINE_API_KEY": "rl_live_x"}
        spooled_s, spooled_out, _ = run_pytest(suite, down, "--redline",
                                            f"--redline-spool-dir={workdir / 'spool'}")
        counts = httpx.get(f"{server.url}/api/runs", headers={"X-API-Key": key["key"]}).json()
    finally:
        server.stop()
        drop()
    load_after = os.getloadavg()
    off_s, on_s = statistics.median(off), statistics.median(on)
    ratio = on_s / off_s - 1
    paired = statistics.median(b / a for a, b in zip(off, on, strict=True)) - 1
    print(f"pytest plugin benchmark on {machine_description()}")
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_before)} at the "
          f"start, {' '.join(f'{x:.2f}' for x in load_after)} at the end")
    print(f"suite: {args.tests} fast tests in {args.tests // PER_FILE} files; "
          f"{args.repeat} rounds, interleaved")
    off_c, on_c = statistics.median(off_cpu), statistics.median(on_cpu)
    print(f"\n{'pytest':38} {'wall s (median)':>16} {'CPU s':>7} {'wall s of each round':>24}")
    print(f"{'plugin off':38} {off_s:16.3f} {off_c:7.2f} "
          f"{' '.join(f'{s:.2f}' for s in off):>24}")
    print(f"{'plugin on (--redline, to the server)':38} {on_s:16.3f} {on_c:7.2f} "
          f"{' '.join(f'{s:.2f}' for s in on):>24}")
    print(f"{'plugin on, server down (spool)':38} {spooled_s:16.3f} {'':7} {'1 round':>24}")
    print(f"\ncost of the plugin: {ratio:+.1%} of the suite's wall time "
          f"(goal: under {GOAL:.0%}: {'met' if ratio < GOAL else 'MISSED'}); "
          f"{on_c / off_c - 1:+.1%} of the pytest process's CPU time; "
          f"{paired:+.1%} paired (median of the rounds' on/off)")
    print(f"last reported session: {sent}")
    print(f"server down: {first_line(spooled_out, 'Redline:')[:110]}")
    runs = counts.get("data", [])
    if runs:
        print(f"runs stored: {len(runs)}, the newest with {runs[0].get('totalTests')} tests")


if __name__ == "__main__":
    main()
