"""The Playwright reporter (`reporters/playwright`), run for real: a real `@playwright/test`
from npm runs real specs in Debian's Chromium and reports to a real Redline server.

The package is installed and built by the `reporter_package` fixture (`npm ci`, which builds
`dist/` through the package's `prepare` script, then `npm run build` when the sources are
newer); without node/npm or Chromium the tests skip, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.api.test_artifacts_support import fetch
from tests.conftest import missing_service
from tests.support import live

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "reporters" / "playwright"
CHROMIUM = "/usr/bin/chromium"

CONFIG = """
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: '.',
  retries: 1,
  workers: 1,
  fullyParallel: true,  // shards split tests, not files
  reporter: [
    ['list'],
    [%(reporter)s, { buildId: process.env.TEST_BUILD_ID || undefined }],
    ['json', { outputFile: 'report.json' }],
  ],
  use: {
    headless: true,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: %(chromium)s,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    },
  },
  projects: [{ name: 'chromium' }],
});
"""

CHECKOUT_SPEC = """
import { test, expect } from '@playwright/test';

test.describe('checkout', () => {
  test('shows the title', { tag: '@smoke' }, async ({ page }) => {
    console.log('hello from stdout');
    await test.step('open the page', async () => {
      await test.step('set its content', async () => {
        await page.setContent('<h1>Hello</h1>');
      });
    });
    await expect(page.locator('h1')).toHaveText('Hello');
  });

  test('fails with a screenshot and a trace', async ({ page }) => {
    await page.setContent('<h1>Hello</h1>');
    console.error('about to fail');
    await expect(page.locator('h1')).toHaveText('Goodbye', { timeout: 200 });
  });

  test('is skipped', async () => {
    test.skip(true, 'not on this platform');
  });

  test('passes on its retry', async ({}, testInfo) => {
    expect(testInfo.retry, 'the first attempt fails').toBeGreaterThan(0);
  });
});
"""

CART_SPEC = """
import { test, expect } from '@playwright/test';

test('adds an item', async () => { expect(1 + 1).toBe(2); });
test('removes an item', async () => { expect([1].length).toBe(1); });
"""

CRASH_SPEC = """
import { test, expect } from '@playwright/test';

test('is sent before the crash', async () => { expect(true).toBe(true); });
test('crashes the CI job', async () => {
  await new Promise((done) => setTimeout(done, 2500)); // the first result is sent by then
  process.kill(process.ppid, 'SIGKILL'); // the runner (and the reporter in it) dies
});
"""


@pytest.fixture(scope="session")
def reporter_package() -> Path:
    """`npm ci` (which builds dist/) and `npm run build` in reporters/playwright, once per
    session and under a lock (several pytest processes may share the checkout)."""
    if not shutil.which("node") or not shutil.which("npm"):
        missing_service("node and npm are needed for the Playwright reporter's tests "
                        "(apt-get install -y nodejs npm)")
    if not os.access(CHROMIUM, os.X_OK):
        missing_service(f"Chromium is needed at {CHROMIUM} (apt-get install -y chromium)")
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    with open(PACKAGE / "package.json", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = PACKAGE / "node_modules" / ".package-lock.json"
        if not installed.exists() or (installed.stat().st_mtime
                                      < (PACKAGE / "package-lock.json").stat().st_mtime):
            npm(["ci", "--no-audit", "--no-fund"], env)
        npm(["run", "build"], env)
    return PACKAGE


def npm(args: list[str], env: dict) -> None:
    done = subprocess.run(["npm", *args], cwd=PACKAGE, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"npm {' '.join(args)} failed in {PACKAGE}:\n{done.stdout}\n{done.stderr}")


def write_project(root: Path, reporter_package: Path, specs: dict[str, str],
                  by_path: bool = False) -> Path:
    """A Playwright project using the reporter: by its package name (as a user's project
    does after `npm install`) or by path."""
    root.mkdir(parents=True, exist_ok=True)
    modules = root / "node_modules"
    modules.mkdir(exist_ok=True)
    for entry in (reporter_package / "node_modules").iterdir():
        if not (modules / entry.name).exists():
            (modules / entry.name).symlink_to(entry)
    scoped = modules / "@redline"
    scoped.mkdir(exist_ok=True)
    if not (scoped / "playwright-reporter").exists():
        (scoped / "playwright-reporter").symlink_to(reporter_package)
    reporter = json.dumps(str(reporter_package) if by_path else "@redline/playwright-reporter")
    (root / "playwright.config.ts").write_text(textwrap.dedent(
        CONFIG % {"reporter": reporter, "chromium": json.dumps(CHROMIUM)}))
    for name, source in specs.items():
        (root / name).write_text(textwrap.dedent(source))
    return root


def run_playwright(root: Path, *args: str, url: str, key: str | None = "rl_live_none",
                   extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDLINE_", "GITHUB_", "GITLAB_", "CI", "PW_", "PLAYWRIGHT_"))}
    env.update(REDLINE_URL=url, REDLINE_TIMEOUT="5", PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1",
               FORCE_COLOR="0", **(extra_env or {}))
    if key:
        env["REDLINE_API_KEY"] = key
    cli = root / "node_modules" / "@playwright" / "test" / "cli.js"
    return subprocess.run(["node", str(cli), "test", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def printed_counts(output: str) -> dict[str, int]:
    """Playwright's own summary (`  1 failed`, `  1 flaky`, `  2 passed (3.1s)`...)."""
    words = r"^\s+(\d+) (passed|failed|flaky|skipped|did not run|interrupted)\b"
    counts = {word: int(n) for n, word in re.findall(words, output, re.MULTILINE)}
    assert counts, output
    return counts


def assert_counts_match(run: dict, printed: dict[str, int]) -> None:
    """DESIGN.md section 6: expected -> passed, unexpected -> failed, flaky -> flaky,
    skipped and did not run -> skipped."""
    assert run["passedTests"] == printed.get("passed", 0)
    assert run["failedTests"] == printed.get("failed", 0) + printed.get("interrupted", 0)
    assert run["flakyTests"] == printed.get("flaky", 0)
    assert run["skippedTests"] == printed.get("skipped", 0) + printed.get("did not run", 0)
    assert run["totalTests"] == sum(printed.values())


def runs_of(tenant) -> list[dict]:
    with tenant.as_key() as client:
        return [client.get(f"/api/runs/{r['id']}").json()
                for r in client.get("/api/runs").json()["data"]]


def results_of(tenant, run_id: str) -> list[dict]:
    with tenant.as_key() as client:
        page = client.get("/api/tests", params={"runId": run_id, "limit": 500}).json()
        return [client.get(f"/api/tests/{t['id']}").json() for t in page["data"]]


def test_reports_a_run_live_as_its_json_report_imports(server, tenant, tmp_path,
                                                       reporter_package):
    root = write_project(tmp_path, reporter_package, {"checkout.spec.ts": CHECKOUT_SPEC})
    done = run_playwright(root, url=server.url, key=tenant.key)
    assert done.returncode == 1, done.stdout + done.stderr  # Playwright's own: a test failed
    printed = printed_counts(done.stdout)
    assert printed == {"failed": 1, "flaky": 1, "skipped": 1, "passed": 1}, done.stdout
    [run] = runs_of(tenant)
    assert run["status"] == "failed" and run["source"] == "reporter"
    assert run["playwrightVersion"] and run["missingShards"] is None
    assert_counts_match(run, printed)
    assert f"Redline: 4 results sent to run {run['id']}" in done.stdout
    assert "attachments uploaded" in done.stdout
    assert not (root / ".redline").exists()

    results = {r["fullTitle"]: r for r in results_of(tenant, run["id"])}
    assert set(results) == {"checkout > shows the title", "checkout > is skipped",
                            "checkout > fails with a screenshot and a trace",
                            "checkout > passes on its retry"}
    passed = results["checkout > shows the title"]
    assert passed["status"] == "passed" and passed["variant"] == "chromium"
    assert passed["filePath"] == "checkout.spec.ts" and passed["lineNumber"] == 5
    assert passed["tags"] == ["smoke"] and "hello from stdout" in passed["stdout"]
    with tenant.as_key() as client:
        steps = client.get(f"/api/tests/{passed['id']}/steps").json()["data"]
    opened = next(s for s in steps if s["title"] == "open the page")
    assert opened["category"] == "test.step"
    assert [s["title"] for s in opened["steps"]] == ["set its content"]

    failed = results["checkout > fails with a screenshot and a trace"]
    assert failed["status"] == "failed" and failed["attempt"] == 2 and failed["retries"] == 1
    assert "toHaveText" in failed["error"]["message"]
    assert failed["error"]["location"] == {"file": "checkout.spec.ts", "line": 18,
                                           "column": 38}
    assert "about to fail" in failed["stderr"]
    skipped = results["checkout > is skipped"]
    assert skipped["status"] == "skipped"
    assert {"type": "skip", "description": "not on this platform"} in skipped["annotations"]
    flaky = results["checkout > passes on its retry"]
    assert flaky["status"] == "flaky" and flaky["attempt"] == 2
    with tenant.as_key() as client:
        attempts = client.get(f"/api/tests/{flaky['id']}/steps").json()["data"]
        artifacts = client.get("/api/artifacts", params={"runId": run["id"]}).json()["data"]
    assert [(a["title"], a["status"]) for a in attempts] == [("attempt 1", "failed"),
                                                            ("attempt 2", "passed")]
    assert "the first attempt fails" in attempts[0]["error"]["message"]
    # the failed test's attempts each left a screenshot and a trace, linked to its result
    mine = [a for a in artifacts if a["testId"] == failed["id"]]
    assert sorted({a["type"] for a in mine}) == ["screenshot", "trace"]
    assert len(mine) == 4, mine

    # the same run's JSON report, imported: the same cases, the same counts
    with tenant.as_key() as client:
        answer = client.post("/api/runs/import", params={"format": "playwright-json"},
                             files={"file": ("report.json", (root / "report.json").read_bytes(),
                                             "application/json")})
        assert answer.status_code in (200, 201), answer.text
        imported = client.get(f"/api/runs/{answer.json()['id']}").json()
    for field in ("totalTests", "passedTests", "failedTests", "skippedTests", "flakyTests"):
        assert imported[field] == run[field], field
    imported_cases = {r["fullTitle"]: r["testCaseId"]
                      for r in results_of(tenant, imported["id"])}
    assert imported_cases == {title: r["testCaseId"] for title, r in results.items()}


def test_shards_of_one_build_join_one_run(server, tenant, tmp_path, reporter_package):
    """Two shards in GitHub Actions: the build id is the one `redline upload` detects."""
    from redline.cli.ci import detect

    specs = {"checkout.spec.ts": CHECKOUT_SPEC, "cart.spec.ts": CART_SPEC}
    build = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": str(time.time_ns()),
             "GITHUB_RUN_ATTEMPT": "2", "GITHUB_REPOSITORY": "acme/shop",
             "GITHUB_HEAD_REF": "feature/cart", "GITHUB_REF_NAME": "12/merge",
             "GITHUB_SHA": "a" * 40, "GITHUB_WORKFLOW": "e2e", "GITHUB_JOB": "test"}
    first = run_playwright(write_project(tmp_path / "one", reporter_package, specs),
                           "--shard", "1/2", url=server.url, key=tenant.key, extra_env=build)
    [run] = runs_of(tenant)
    assert run["status"] == "running" and run["shardTotal"] == 2, first.stdout
    # loaded by path, as `npx playwright test --reporter ./reporters/playwright` does
    second = run_playwright(write_project(tmp_path / "two", reporter_package, specs,
                                          by_path=True),
                            "--shard", "2/2", url=server.url, key=tenant.key, extra_env=build)
    [run] = runs_of(tenant)
    assert run["status"] in ("passed", "failed") and run["missingShards"] is None
    assert "(shard 1/2)" in first.stdout and "(shard 2/2)" in second.stdout
    cli = detect({}, build)  # what the CLI detects in the same environment
    for field in ("ci_build_id", "ci_build_url", "ci_provider", "branch", "commit_sha",
                  "run_title"):
        camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), field)
        assert run[camel] == cli[field], field
    assert run["ciBuildId"] == f"{build['GITHUB_RUN_ID']}-2" and run["branch"] == "feature/cart"
    printed = printed_counts(first.stdout)
    for word, count in printed_counts(second.stdout).items():
        printed[word] = printed.get(word, 0) + count
    assert sum(printed.values()) == 6
    assert_counts_match(run, printed)


def test_a_shard_that_never_reports_is_named_when_the_timeout_completes_the_run(
        server, tenant, tmp_path, reporter_package):
    from redline.server.worker.shards import ShardTimeoutLoop

    build = {"TEST_BUILD_ID": f"build-{time.time_ns()}"}
    specs = {"a_cart.spec.ts": CART_SPEC, "b_crash.spec.ts": CRASH_SPEC}
    first = run_playwright(write_project(tmp_path / "one", reporter_package, specs),
                           "--shard", "1/2", url=server.url, key=tenant.key, extra_env=build)
    assert first.returncode == 0, first.stdout + first.stderr
    crashed = run_playwright(write_project(tmp_path / "two", reporter_package, specs),
                             "--shard", "2/2", url=server.url, key=tenant.key, extra_env=build)
    assert crashed.returncode == -9  # killed: its reporter never finished the run
    [run] = runs_of(tenant)
    assert run["status"] == "running" and run["totalTests"] == 3

    # the worker's sweep (`redline serve` and `redline worker` run it), with a 2 s timeout
    sweep = ShardTimeoutLoop(server.engine, timeout_seconds=2).start()

    deadline = time.monotonic() + 30
    while True:
        [run] = runs_of(tenant)
        if run["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    sweep.stop()
    assert run["status"] == "failed" and run["missingShards"] == [2]
    titles = sorted(r["fullTitle"] for r in results_of(tenant, run["id"]))
    # the crashed shard's result sent before the crash stays
    assert titles == ["adds an item", "is sent before the crash", "removes an item"]


def test_redline_down_spools_and_redline_upload_replays_it(server, tenant, tmp_path,
                                                          reporter_package):
    down = f"http://127.0.0.1:{live.free_port()}"
    root = write_project(tmp_path, reporter_package, {"cart.spec.ts": CART_SPEC,
                                                      "checkout.spec.ts": CHECKOUT_SPEC})
    done = run_playwright(root, url=down)
    assert done.returncode == 1, done.stdout + done.stderr  # Playwright's own (a test failed)
    spool = root / ".redline" / "spool"
    assert "Redline: 6 results spooled to" in done.stdout and "NETWORK_ERROR" in done.stdout
    assert f"redline upload --spool {spool}" in done.stdout
    [spooled] = spool.glob("*.jsonl")
    # the failed test's two attempts each left a screenshot and a trace (and the retried
    # one a trace): copied into the spool folder, since the next run cleans test-results/
    kept = [(batch["tests"][a["test"]]["fullTitle"], a) for batch in map(
        json.loads, spooled.read_text().splitlines()) for a in batch.get("attachments", [])]
    failing = "checkout > fails with a screenshot and a trace"
    assert sorted(a["type"] for title, a in kept if title == failing) == [
        "screenshot", "screenshot", "trace", "trace"]
    assert all((spool / a["path"]).is_file() for _title, a in kept), kept
    assert f"Redline: {len(kept)} attachments kept with them in" in done.stdout
    shutil.rmtree(root / "test-results")
    copy = tmp_path / "copy"
    shutil.copytree(spool, copy)  # as it was before any replay (no `sent` mark)
    first = upload_spool(spool, server, tenant.key)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"6 results with {len(kept)} attachments sent to run" in first.stdout
    assert '"type": "sent"' in spooled.read_text()
    replay = upload_spool(copy, server, tenant.key)  # the same spool again: stored once
    assert replay.returncode == 0, replay.stdout + replay.stderr
    [run] = runs_of(tenant)
    assert run["status"] == "failed" and run["source"] == "reporter"
    assert_counts_match(run, printed_counts(done.stdout))
    ids = {r["fullTitle"]: r["id"] for r in results_of(tenant, run["id"])}
    with tenant.as_key() as client:
        artifacts = client.get("/api/artifacts", params={"runId": run["id"]}).json()["data"]
    # each attachment once, linked to its result, the same bytes as spooled
    assert sorted((a["type"], a["testId"], a["sha256"]) for a in artifacts) == sorted(
        (a["type"], ids[title], hashlib.sha256((copy / a["path"]).read_bytes()).hexdigest())
        for title, a in kept)
    screenshot = next(a for a in artifacts if a["type"] == "screenshot")
    assert screenshot["testId"] == ids[failing]
    assert fetch(server, screenshot["url"]).content.startswith(b"\x89PNG")

    green = write_project(tmp_path / "green", reporter_package, {"cart.spec.ts": CART_SPEC})
    done = run_playwright(green, url=down)
    assert done.returncode == 0, done.stdout  # the outage changes nothing of the exit status
    assert "Redline: 2 results spooled" in done.stdout


class UploadsDown:
    """A proxy before Redline that passes every request but the uploads, which it answers 503
    (as a load balancer whose upload backend is away): results are sent, files are not."""

    def __init__(self, target: str):
        import httpx

        upstream = httpx.Client(base_url=target, timeout=30)

        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/api/upload"):
                    answer = json.dumps({"error": {"code": "UNAVAILABLE",
                                                   "message": "uploads are away"}}).encode()
                    status, headers = 503, {"Content-Type": "application/json"}
                else:
                    sent = {k: v for k, v in self.headers.items()
                            if k.lower() not in ("host", "content-length", "connection")}
                    got = upstream.request(self.command, self.path, content=body, headers=sent)
                    answer, status = got.content, got.status_code
                    headers = {"Content-Type": got.headers.get("content-type", "text/plain")}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = forward

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_attachments_that_find_uploads_down_are_spooled_and_replayed_once(
        server, tenant, tmp_path, reporter_package):
    proxy = UploadsDown(server.url)
    try:
        root = write_project(tmp_path, reporter_package, {"checkout.spec.ts": CHECKOUT_SPEC})
        done = run_playwright(root, url=proxy.url, key=tenant.key)
    finally:
        proxy.close()
    assert done.returncode == 1, done.stdout + done.stderr
    [run] = runs_of(tenant)
    # the results went live and the run is complete; only the files wait in the spool
    assert f"Redline: 4 results sent to run {run['id']}" in done.stdout
    assert run["status"] == "failed"
    assert_counts_match(run, printed_counts(done.stdout))
    spool = root / ".redline" / "spool"
    [spooled] = spool.glob("*.jsonl")
    kept = [a for line in map(json.loads, spooled.read_text().splitlines())
            if line["type"] == "attachments" for a in line["attachments"]]
    assert f"Redline: {len(kept)} attachments found Redline away (UNAVAILABLE" in done.stdout
    ids = {r["fullTitle"]: r["id"] for r in results_of(tenant, run["id"])}
    failing = ids["checkout > fails with a screenshot and a trace"]
    assert sorted(a["type"] for a in kept if a["testId"] == failing) == [
        "screenshot", "screenshot", "trace", "trace"]
    shutil.rmtree(root / "test-results")
    copy = tmp_path / "copy"
    shutil.copytree(spool, copy)

    for folder in (spool, copy):  # twice: stored once
        replay = upload_spool(folder, server, tenant.key)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert f"0 results with {len(kept)} attachments sent to run {run['id']}" in replay.stdout
    with tenant.as_key() as client:
        artifacts = client.get("/api/artifacts", params={"runId": run["id"]}).json()["data"]
    assert sorted((a["type"], a["testId"], a["sha256"]) for a in artifacts) == sorted(
        (a["type"], a["testId"], hashlib.sha256((copy / a["path"]).read_bytes()).hexdigest())
        for a in kept)


def test_off_without_a_key(server, tmp_path, reporter_package):
    root = write_project(tmp_path, reporter_package, {"cart.spec.ts": CART_SPEC})
    done = run_playwright(root, url=server.url, key=None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Redline: no REDLINE_API_KEY" in done.stdout
    assert not (root / ".redline").exists()


def test_server_errors_spool_too_and_the_reporter_loads_by_path_from_the_command_line(
        server, tmp_path, reporter_package):
    root = write_project(tmp_path, reporter_package, {"cart.spec.ts": CART_SPEC})
    # `--reporter` replaces the config's reporters: as `npx playwright test --reporter
    # ./reporters/playwright` after `npm ci` there
    done = run_playwright(root, f"--reporter=list,{reporter_package}", url=server.url,
                          key="rl_live_not_a_real_key")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Redline: 2 results spooled to" in done.stdout and "AUTH" in done.stdout


def upload_spool(directory: Path, server, key: str) -> subprocess.CompletedProcess:
    return redline_cli(server, key, "upload", "--spool", str(directory),
                       config_dir=directory / ".cfg")


def redline_cli(server, key: str, *args: str,
                config_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
    env.update(REDLINE_URL=server.url, REDLINE_API_KEY=key)
    if config_dir is not None:
        env["REDLINE_CONFIG_DIR"] = str(config_dir)
    return subprocess.run([sys.executable, "-m", "redline.cli.main", *args], check=False,
                          env=env, capture_output=True, text=True, timeout=120)


# -- the server's half: the shard timeout ---------------------------------------------------

def test_the_shard_timeout_completes_only_runs_without_news(server, tenant):
    from redline.server.db import WRITE
    from redline.server.runs.completion import complete_abandoned_shard_runs

    with tenant.as_key() as client:
        def sharded(build: str) -> str:
            answer = client.post("/api/runs", json={"status": "running", "ciBuildId": build,
                                                    "shardCurrent": 1, "shardTotal": 3})
            assert answer.status_code == 201, answer.text
            return answer.json()["id"]

        quiet = sharded(f"quiet-{time.time_ns()}")
        client.post(f"/api/runs/{quiet}/tests/batch", json={"tests": [
            {"title": "t", "fullTitle": "t", "status": "passed", "duration": 1}]})
        client.patch(f"/api/runs/{quiet}", json={"status": "passed", "shardCurrent": 1})
        # a live reporter's run whose process died, and a run a script keeps open
        reporter = client.post("/api/runs", json={"status": "running",
                                                  "source": "reporter"}).json()["id"]
        scripted = client.post("/api/runs", json={"status": "running"}).json()["id"]

        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            completed = complete_abandoned_shard_runs(conn, 3600)
        assert not {quiet, reporter} & set(completed)  # they had news just now
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            completed = complete_abandoned_shard_runs(conn, 0)
        # (the session's server may hold other tests' abandoned runs: they go too)
        assert {quiet, reporter} <= set(completed) and scripted not in completed
        run = client.get(f"/api/runs/{quiet}").json()
        assert run["status"] == "failed" and run["missingShards"] == [2, 3]
        assert run["totalTests"] == 1 and run["completedAt"]
        shown = redline_cli(server, tenant.key, "runs", "get", quiet)  # as a person reads it
        assert "missingShards: 2,3" in shown.stdout.splitlines(), shown.stdout
        run = client.get(f"/api/runs/{reporter}").json()
        assert run["status"] == "failed" and run["missingShards"] is None
        assert client.get(f"/api/runs/{scripted}").json()["status"] == "running"
        late = client.post(f"/api/runs/{quiet}/tests/batch", json={"tests": [
            {"title": "u", "fullTitle": "u", "status": "passed", "duration": 1}]})
        assert late.status_code == 409  # a shard after the timeout: its results are refused


def test_shards_starting_at_once_join_one_run(server, tenant):
    """CI starts a build's shards together: their reporters create the run at the same
    moment, and still join one run."""
    from concurrent.futures import ThreadPoolExecutor

    build = f"together-{time.time_ns()}"

    def start(shard: int) -> str:
        with tenant.as_key() as client:
            answer = client.post("/api/runs", json={
                "status": "running", "ciBuildId": build, "shardCurrent": shard,
                "shardTotal": 8, "source": "reporter"})
            assert answer.status_code in (200, 201), answer.text
            return answer.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(start, range(1, 9)))
    assert len(ids) == 1, ids
