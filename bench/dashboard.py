"""Dashboard benchmark: the server time of the main pages beside the API calls that fetch the
same data, in the same run, on a project with many results.

    .venv/bin/python bench/dashboard.py [--db sqlite|postgres] [--results 1000000] [--repeat 15]

1. Loads a project through the real ingestion path (`runs.new_run`, `results.ingest`,
   `runs.refresh_counts`, `runs.finish`, one transaction per run, with a moved clock): 5,000
   test cases, runs of 5,000 results 12 hours apart over several branches, with flaky, broken
   and skipped tests, `--results` in all; then one run of 10,000 results on main (the newest,
   so its page compares it with the previous main run).
2. Starts the server (one uvicorn worker process), signs in through the dashboard's form
   and, for the API, gets a personal token of the same user.
3. Times, median and p90 of `--repeat` calls after warm-up, each page against the API calls
   a client needs for the same content:

   | page | API calls for the same data |
   |---|---|
   | runs list (30 runs) | GET /api/runs?limit=30 |
   | a run with 10,000 results | the run, its failures (500), its flaky results, the compare with the previous run on the branch, the quarantined cases, the first 100 results (a run over 2,000 tests links to its suite tree: neither side reads it) |
   | a test case | the case (evidence, quarantine history), its history, the team's members (names) |
   | trends (30 days) | GET /api/projects/{id}/trends |

   Times are client-measured round trips on loopback (the same client for both), so they
   include the same HTTP overhead on both sides.

Goals (issue 8): each page under 150 ms and within 2x of its API calls. Figures are printed
beside the goals; a missed goal is a figure, not a failure.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

GOAL_MS = 150.0
GOAL_RATIO = 2.0
CASES = 5_000
BIG_RUN = 10_000
EMAIL, PASSWORD = "bench@example.com", "benchmark-password"


BRANCHES = ["main", "main", "main", "feature/checkout", "feature/search", "fix/login"]
ERRORS = [
    ("TimeoutError", ("TimeoutError: locator.click: Timeout 10000ms exceeded.\n"
                      "waiting for locator('[data-row=\"{n}\"]')")),
    ("expect", "Error: expect(received).toBe(expected)\n\nExpected: {n}\nReceived: {m}"),
    ("TypeError", "TypeError: Cannot read properties of undefined (reading 'id')"),
]


def _cases(count: int, rng: random.Random) -> list[dict]:
    kinds = (["skipped"] * (count // 20) + ["flaky"] * (count // 25) + ["broken"] * (count // 100))
    kinds += ["stable"] * (count - len(kinds))
    rng.shuffle(kinds)
    cases = []
    for i, kind in enumerate(kinds):
        area = ["auth", "cart", "checkout", "search", "admin"][i % 5]
        suite = [f"{area.title()} {i // 50}", f"group {(i // 10) % 5}"]
        title = f"should handle scenario {i}"
        cases.append({"kind": kind, "file": f"tests/{area}/feature-{i // 50}.spec.ts",
                      "suite": suite, "title": title, "full": " > ".join([*suite, title]),
                      "variant": "chromium" if i % 3 else "firefox",
                      "ms": rng.lognormvariate(6.0, 1.0)})
    return cases


def _results(cases: list[dict], rng: random.Random):
    from redline.server.imports.parsers.model import ParsedError, ParsedResult

    for case in cases:
        status, attempt, error = "passed", 1, None
        roll = rng.random()
        if case["kind"] == "skipped":
            status = "skipped"
        elif case["kind"] == "broken" or (case["kind"] == "flaky" and roll < 0.08):
            status, attempt = "failed", 3
        elif case["kind"] == "flaky" and roll < 0.25:
            status, attempt = "flaky", 2
        elif roll < 0.002:
            status, attempt = "failed", 3
        if status in ("failed", "flaky"):
            kind, text = ERRORS[hash(case["full"]) % len(ERRORS)]
            n = rng.randint(1, 9999)
            error = ParsedError(text.format(n=n, m=n + 1), type=kind,
                                stack=f"{text.splitlines()[0]}\n    at {case['file']}:12:5")
        yield ParsedResult(title=case["title"], full_title=case["full"], file_path=case["file"],
                           line_number=12, suite_path=list(case["suite"]),
                           variant=case["variant"], status=status,
                           duration_ms=0 if status == "skipped" else int(case["ms"]),
                           attempt=attempt, retries=attempt - 1, error=error)


def _import(engine, project_id: str, cases, fields: dict, rng: random.Random) -> str:
    from redline.server.db import WRITE
    from redline.server.results import service as results
    from redline.server.runs import service as runs

    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        run_id = runs.new_run(conn, project_id, dict(fields))
        _ids, summed = results.ingest(conn, run_id, project_id, _results(cases, rng))
        runs.refresh_counts(conn, run_id, added_duration=summed // 4)
        runs.finish(conn, run_id)
    return run_id


def load_project(url: str, total: int, seed: int) -> dict:
    from sqlalchemy import select

    from redline.server.db import WRITE, make_engine
    from redline.server.demo import DemoClock
    from redline.server.kit.clock import utcnow
    from redline.server.system import service as system
    from redline.server.tables import test_case_windows, test_cases

    engine = make_engine(url)
    rng = random.Random(seed)
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        setup = system.setup(conn, EMAIL, PASSWORD, "Bench", "Bench", "Bench project", "ci")
    project_id = setup["project"]["id"]
    n_runs = max(2, total // CASES)
    end = utcnow() - timedelta(hours=1)
    cases = _cases(CASES, rng)
    clock = DemoClock()
    print(f"loading {n_runs} runs x {CASES:,} results ...", flush=True)
    started = time.perf_counter()
    with clock.installed():
        for k in range(n_runs):
            clock.moment = end - timedelta(hours=12) * (n_runs - 1 - k)
            branch = rng.choice(BRANCHES)
            _import(engine, project_id, cases, {
                "branch": branch, "commit_sha": f"{rng.getrandbits(160):040x}",
                "source": "github_action", "ci_build_url": f"https://ci.example.com/{k}",
                "run_title": f"CI #{k}"}, rng)
            if (k + 1) % 20 == 0 or k + 1 == n_runs:
                print(f"  loaded {k + 1}/{n_runs} runs, {(k + 1) * CASES:,} results, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
        seconds = time.perf_counter() - started
        clock.moment = end + timedelta(minutes=20)
        big_started = time.perf_counter()
        big = _import(engine, project_id, _cases(BIG_RUN, random.Random(seed)),
                      {"branch": "main", "commit_sha": "f" * 40, "source": "cli",
                       "run_title": f"the {BIG_RUN:,}-result run"}, rng)
        clock.moment = None
    print(f"  loaded the {BIG_RUN:,}-result run in {time.perf_counter() - big_started:.1f} s")
    with engine.connect() as conn:
        case = conn.execute(select(test_cases.c.id).join(
            test_case_windows, test_case_windows.c.test_case_id == test_cases.c.id).where(
            test_cases.c.project_id == project_id, test_case_windows.c.flaky_runs > 0)
            .order_by(test_case_windows.c.flakiness_score.desc()).limit(1)).scalar()
    engine.dispose()
    return {"project": project_id, "big": big, "case": case,
            "results": n_runs * CASES + BIG_RUN, "load_seconds": seconds}


def sign_in(base: str) -> tuple[httpx.Client, httpx.Client]:
    page = httpx.Client(base_url=base, timeout=60)
    form = page.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    response = page.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf": csrf})
    assert response.status_code == 303, response.text
    token = httpx.post(f"{base}/api/auth/login", json={"email": EMAIL, "password": PASSWORD}
                       ).json()["token"]
    api = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"})
    return page, api


def timed(calls, repeat: int) -> tuple[float, float]:
    def run():
        for call in calls:
            response = call()
            assert response.status_code == 200, (response.status_code, response.text[:300])

    for _ in range(2):
        run()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.9))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench._common import Server, machine_description, scratch_database, temporary_directory
    print(machine_description())
    workdir = temporary_directory("redline-bench-dashboard-")
    url, drop = scratch_database(args.db, workdir)
    server = None
    try:
        ids = load_project(url, args.results, args.seed)
        print(f"loaded {ids['results']:,} results in {ids['load_seconds']:.0f} s ({args.db})")
        server = Server("redline", "redline.server.app:create_app", factory=True, env={
            "REDLINE_DATABASE_URL": url, "REDLINE_DATA_DIR": str(workdir / "data"),
            "REDLINE_RATE_LIMIT_ENABLED": "false", "REDLINE_COOKIE_SECURE": "false",
            "REDLINE_SECRET_KEY": "bench"}).start(workdir)
        server.wait_ready("/api/health")
        page, api = sign_in(server.url)
        project, big, case = ids["project"], ids["big"], ids["case"]
        run = api.get(f"/api/runs/{big}").json()
        base = api.get("/api/runs", params={"projectId": project, "branch": "main",
                                            "limit": 2}).json()["data"][1]["id"]
        team = api.get(f"/api/projects/{project}").json()["teamId"]
        q = {"projectId": project}
        pairs = [
            ("runs list", [lambda: page.get(f"/projects/{project}/runs")],
             [lambda: api.get("/api/runs", params={**q, "limit": 30})]),
            (f"run, {BIG_RUN:,} results", [lambda: page.get(f"/runs/{big}")], [
                lambda: api.get(f"/api/runs/{big}"),
                lambda: api.get("/api/tests", params={**q, "runId": big, "status": "failed",
                                                      "limit": 500}),
                lambda: api.get("/api/tests", params={**q, "runId": big, "status": "flaky",
                                                      "limit": 200}),
                lambda: api.get("/api/flakiness", params={**q, "quarantined": "true",
                                                          "limit": 500}),
                lambda: api.get(f"/api/runs/{big}/compare", params={"base": base}),
                lambda: api.get("/api/tests", params={**q, "runId": big, "limit": 100})]),
            ("test case", [lambda: page.get(f"/cases/{case}")], [
                lambda: api.get(f"/api/test-cases/{case}"),
                lambda: api.get(f"/api/tests/{case}/history"),
                lambda: api.get("/api/team-members", params={"teamId": team, "limit": 500})]),
            ("trends (30 days)", [lambda: page.get(f"/projects/{project}/trends")],
             [lambda: api.get(f"/api/projects/{project}/trends")]),
        ]
        print(f"\nrun {big}: {run['totalTests']:,} results, {run['failedTests']} failed; "
              f"compared with {base}")
        print(f"\n{'page':<22} {'page ms':>9} {'p90':>7} {'API ms':>9} {'p90':>7} "
              f"{'ratio':>6}  goal (<{GOAL_MS:.0f} ms, <= {GOAL_RATIO:.0f}x)")
        for name, page_calls, api_calls in pairs:
            page_ms, page_p90 = timed(page_calls, args.repeat)
            api_ms, api_p90 = timed(api_calls, args.repeat)
            ratio = page_ms / api_ms if api_ms else float("inf")
            ok = "met" if page_ms < GOAL_MS and ratio <= GOAL_RATIO else "MISSED"
            print(f"{name:<22} {page_ms:>9.1f} {page_p90:>7.1f} {api_ms:>9.1f} {api_p90:>7.1f} "
                  f"{ratio:>6.2f}  {ok}  ({len(api_calls)} API call"
                  f"{'s' if len(api_calls) != 1 else ''})", flush=True)
        page.close()
        api.close()
    finally:
        if server is not None:
            server.stop()
        drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
