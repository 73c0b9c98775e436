"""Dashboard benchmark: the server time of the main pages beside the API calls that fetch the
same data, in the same run, on a project with many results.

    .venv/bin/python bench/dashboard.py [--db sqlite|postgres] [--results 1000000] [--repeat 15]

1. Loads a project through the real ingestion path (the loader of bench/intelligence.py:
   5,000 test cases, runs of 5,000 results 12 hours apart over several branches, flaky,
   broken and outage runs), `--results` in all, then one run of 10,000 results on main (the
   newest, so its page compares it with the previous main run).
2. Starts the server (one uvicorn worker process), signs in through the dashboard's form
   and, for the API, gets a personal token of the same user.
3. Times, median and p90 of `--repeat` calls after warm-up, each page against the API calls
   a client needs for the same content:

   | page | API calls for the same data |
   |---|---|
   | runs list (30 runs) | GET /api/runs?limit=30 |
   | a run with 10,000 results | the run, its failures (500), its flaky results, the compare with the previous run on the branch, the suite tree, the quarantined cases, the first 100 results |
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
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench import intelligence as loader  # noqa: E402
from bench._common import Server, machine_description, scratch_database, temporary_directory  # noqa: E402,E501

GOAL_MS = 150.0
GOAL_RATIO = 2.0
CASES = 5_000
BIG_RUN = 10_000
EMAIL, PASSWORD = "bench@example.com", "benchmark-password"


def load_project(url: str, total: int, seed: int) -> dict:
    from redline.server.db import make_engine
    from redline.server.kit.clock import utcnow

    engine = make_engine(url)
    rng = random.Random(seed)
    setup = loader.setup_project(engine)
    project_id = setup["project"]["id"]
    n_runs = max(2, total // CASES)
    end = utcnow() - timedelta(hours=1)
    cases = loader.make_cases(CASES, n_runs, rng)
    plans = loader.plan_runs(n_runs, rng, end)
    clock = loader.MovedClock()
    print(f"loading {n_runs} runs x {CASES:,} results ...", flush=True)
    loaded = loader.load(engine, project_id, cases, plans, seed, clock)
    big_cases = loader.make_cases(BIG_RUN, n_runs, random.Random(seed + 1))
    big_plan = loader.RunPlan(n_runs, "main", "f" * 40, False, False, end + timedelta(minutes=20))
    big_plan.fields = {**plans[-1].fields, "branch": "main", "commit_sha": "f" * 40,
                       "run_title": "the 10,000-result run"}
    started = time.perf_counter()
    with clock.installed():
        clock.start_at(big_plan.start)
        big = loader.import_run(engine, project_id, big_cases, big_plan, seed)
    print(f"  loaded the {BIG_RUN:,}-result run in {time.perf_counter() - started:.1f} s")
    ids = loader.pick_ids(engine, project_id, loaded["run_ids"], plans)
    engine.dispose()
    return {"project": project_id, "big": big, "case": ids["case"],
            "results": loaded["results"] + BIG_RUN, "load_seconds": loaded["seconds"]}


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

    return loader.median_ms(run, repeat, warmup=2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
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
                lambda: api.get("/api/test-suites", params={"runId": big}),
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
