"""The pytest plugin (`pytest --redline`), run for real: `python -m pytest` in a subprocess on
a small generated suite, reporting to a real Redline server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import live

SUITE = '''
import logging
import sys

import pytest


def test_passes():
    print("hello from stdout")


def test_fails():
    logging.getLogger("app").warning("a log line")
    print("to stderr", file=sys.stderr)
    assert 1 + 1 == 3


@pytest.mark.smoke
def test_skipped():
    pytest.skip("not on this platform")


@pytest.mark.xfail(reason="known bug 12")
def test_xfailed():
    assert False


@pytest.mark.xfail(reason="maybe fixed")
def test_xpassed():
    pass


@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")


def test_errors(broken):
    pass


ATTEMPTS = {"n": 0}


@pytest.mark.flaky(reruns=2)
def test_flaky():
    ATTEMPTS["n"] += 1
    assert ATTEMPTS["n"] >= 2, "first attempt fails"


class TestGroup:
    @pytest.mark.smoke
    @pytest.mark.parametrize("x", [1, 2, 3])
    def test_param(self, x):
        assert x
'''

ALL_PASS = '''
def test_one():
    pass


def test_two():
    pass
'''


def write_suite(root: Path, source: str = SUITE, name: str = "test_sample.py") -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    smoke: quick checks\n")
    (root / name).write_text(textwrap.dedent(source))


def run_pytest(root: Path, *args: str, url: str, key: str = "rl_live_none",
               extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDLINE_", "PYTEST_", "GITHUB_", "GITLAB_", "CI"))}
    env.update({"REDLINE_URL": url, "REDLINE_API_KEY": key,
                "REDLINE_CONFIG_DIR": str(root / ".cfg"), "REDLINE_TIMEOUT": "5",
                **(extra_env or {})})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "-p", "no:randomly", *args], check=False, cwd=root, env=env,
                          capture_output=True, text=True, timeout=240)


def summary_counts(output: str) -> dict[str, int]:
    """pytest's own summary line, as {word: count}."""
    line = [ln for ln in output.splitlines() if re.search(r" in [\d.]+s", ln)][-1]
    found = {"error" if word == "errors" else word: int(n)
             for n, word in re.findall(r"(\d+) (\w+)", line)}
    return {k: v for k, v in found.items() if k not in ("warning", "warnings")}


def expected_counts(pytest_counts: dict[str, int]) -> dict[str, int]:
    """What Redline stores for pytest's summary (DESIGN.md section 6): error -> failed,
    xfailed -> skipped, xpassed -> passed, passed on a rerun -> flaky."""
    c = {k: pytest_counts.get(k, 0) for k in ("passed", "failed", "error", "skipped",
                                             "xfailed", "xpassed")}
    total = sum(c.values())
    return {"total": total, "failed": c["failed"] + c["error"],
            "skipped": c["skipped"] + c["xfailed"],
            "passed_or_flaky": c["passed"] + c["xpassed"]}


def only_run(tenant) -> dict:
    with tenant.as_key() as client:
        runs = client.get("/api/runs").json()["data"]
        assert len(runs) == 1, runs
        return client.get(f"/api/runs/{runs[0]['id']}").json()


def results_of(tenant, run_id: str) -> list[dict]:
    with tenant.as_key() as client:
        page = client.get("/api/tests", params={"runId": run_id, "limit": 500}).json()
        return [client.get(f"/api/tests/{t['id']}").json() for t in page["data"]]


def assert_counts_match(run: dict, output: str) -> None:
    want = expected_counts(summary_counts(output))
    assert run["totalTests"] == want["total"]
    assert run["failedTests"] == want["failed"]
    assert run["skippedTests"] == want["skipped"]
    assert run["passedTests"] + run["flakyTests"] == want["passed_or_flaky"]


def test_reports_a_session_live(server, tenant, tmp_path):
    write_suite(tmp_path)
    done = run_pytest(tmp_path, "--redline", url=server.url, key=tenant.key)
    assert done.returncode == 1, done.stdout + done.stderr
    counts = summary_counts(done.stdout)
    assert counts == {"failed": 1, "passed": 5, "skipped": 1, "xfailed": 1, "xpassed": 1,
                      "error": 1, "rerun": 1}, done.stdout
    run = only_run(tenant)
    assert run["status"] in ("passed", "failed") and run["source"] == "reporter"
    assert_counts_match(run, done.stdout)
    assert run["flakyTests"] == 1
    assert f"results sent to run {run['id']}" in done.stdout
    assert not (tmp_path / ".redline").exists()

    by_title = {r["fullTitle"]: r for r in results_of(tenant, run["id"])}
    assert set(by_title) == {"test_passes", "test_fails", "test_skipped", "test_xfailed",
                             "test_xpassed", "test_errors", "test_flaky",
                             "TestGroup > test_param[1]", "TestGroup > test_param[2]",
                             "TestGroup > test_param[3]"}
    passed = by_title["test_passes"]
    assert passed["status"] == "passed" and passed["filePath"] == "test_sample.py"
    assert passed["lineNumber"] == 8 and "hello from stdout" in passed["stdout"]
    failed = by_title["test_fails"]
    assert failed["status"] == "failed" and failed["error"]["type"] == "AssertionError"
    assert "assert 1 + 1 == 3" in failed["error"]["stack"]
    assert "to stderr" in failed["stderr"] and "a log line" in failed["stderr"]
    skipped = by_title["test_skipped"]
    assert skipped["status"] == "skipped" and skipped["tags"] == ["smoke"]
    assert skipped["annotations"] == [{"type": "skip", "description": "not on this platform"}]
    assert by_title["test_xfailed"]["annotations"] == [
        {"type": "xfail", "description": "known bug 12"}]
    assert by_title["test_xpassed"]["status"] == "passed"
    errored = by_title["test_errors"]
    assert errored["status"] == "failed" and errored["error"]["type"] == "RuntimeError"
    assert errored["error"]["message"].startswith("error in setup")
    flaky = by_title["test_flaky"]
    assert flaky["status"] == "flaky" and flaky["isFlaky"] and flaky["attempt"] == 2
    assert flaky["retries"] == 1
    with tenant.as_key() as client:
        steps = client.get(f"/api/tests/{flaky['id']}/steps").json()["data"]
    assert [s["status"] for s in steps] == ["failed", "passed"]
    assert "first attempt fails" in json.dumps(steps[0])
    assert by_title["TestGroup > test_param[2]"]["tags"] == ["smoke"]


def test_off_unless_asked(server, tenant, tmp_path):
    write_suite(tmp_path, ALL_PASS)
    done = run_pytest(tmp_path, url=server.url, key=tenant.key)
    assert done.returncode == 0 and "Redline" not in done.stdout
    with tenant.as_key() as client:
        assert client.get("/api/runs").json()["data"] == []
    done = run_pytest(tmp_path, url=server.url, key=tenant.key,
                      extra_env={"REDLINE_REPORT": "1"})
    assert done.returncode == 0 and "2 results sent" in done.stdout
    assert only_run(tenant)["totalTests"] == 2


def test_unreachable_spools_and_keeps_pytests_exit_status(tmp_path):
    down = f"http://127.0.0.1:{live.free_port()}"
    write_suite(tmp_path / "mixed")
    done = run_pytest(tmp_path / "mixed", "--redline", url=down)
    plain = run_pytest(tmp_path / "mixed", url=down)
    assert done.returncode == plain.returncode == 1
    spooled = list((tmp_path / "mixed" / ".redline" / "spool").glob("*.jsonl"))
    assert len(spooled) == 1
    assert "10 results spooled to" in done.stdout
    assert "redline upload --spool" in done.stdout

    write_suite(tmp_path / "green", ALL_PASS)
    done = run_pytest(tmp_path / "green", "--redline", url=down)
    assert done.returncode == 0, done.stdout  # pytest's own: the outage changes nothing
    assert "2 results spooled" in done.stdout


def test_server_errors_spool_too(server, tmp_path):
    write_suite(tmp_path, ALL_PASS)
    done = run_pytest(tmp_path, "--redline", url=server.url, key="rl_live_not_a_real_key")
    assert done.returncode == 0
    assert "2 results spooled" in done.stdout and "AUTH" in done.stdout


def upload_spool(directory: Path, server, key: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
    env.update(REDLINE_URL=server.url, REDLINE_API_KEY=key,
               REDLINE_CONFIG_DIR=str(directory / ".cfg"))
    return subprocess.run([sys.executable, "-m", "redline.cli.main", "upload", "--spool",
                           str(directory)], check=False, env=env, capture_output=True,
                          text=True, timeout=120)


def test_replaying_a_spool_twice_stores_each_result_once(server, tenant, tmp_path):
    down = f"http://127.0.0.1:{live.free_port()}"
    write_suite(tmp_path)
    done = run_pytest(tmp_path, "--redline", url=down)
    spool = tmp_path / ".redline" / "spool"
    copy = tmp_path / "copy"
    shutil.copytree(spool, copy)  # as it was before any replay (no `sent` mark)

    first = upload_spool(spool, server, tenant.key)
    assert first.returncode == 0, first.stdout + first.stderr
    run = only_run(tenant)
    assert run["status"] in ("passed", "failed")
    assert_counts_match(run, done.stdout)

    again = upload_spool(spool, server, tenant.key)  # marked as sent: nothing to do
    assert again.returncode == 0, again.stdout + again.stderr
    replay = upload_spool(copy, server, tenant.key)  # the same spool, unmarked: idempotent
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert run["id"] in replay.stdout
    run_after = only_run(tenant)
    assert run_after["totalTests"] == run["totalTests"] == 10
    assert len(results_of(tenant, run["id"])) == 10


def test_xdist_workers_report_into_one_run(server, tenant, tmp_path):
    pytest.importorskip("xdist")
    write_suite(tmp_path)
    done = run_pytest(tmp_path, "--redline", "-n", "2", url=server.url, key=tenant.key)
    assert done.returncode == 1, done.stdout + done.stderr
    run = only_run(tenant)
    assert_counts_match(run, done.stdout)
    tags = {r["fullTitle"]: r["tags"] for r in results_of(tenant, run["id"])}
    assert tags["test_skipped"] == ["smoke"]


def test_shards_join_one_run_by_build_id(server, tenant, tmp_path):
    write_suite(tmp_path / "one", ALL_PASS, "test_one.py")
    write_suite(tmp_path / "two", SUITE, "test_two.py")
    first = run_pytest(tmp_path / "one", "--redline", "--redline-shard", "1/2",
                       "--redline-build-id", "build-77", url=server.url, key=tenant.key)
    assert first.returncode == 0, first.stdout + first.stderr
    assert only_run(tenant)["status"] == "running"  # waits for shard 2
    second = run_pytest(tmp_path / "two", "--redline", "--redline-shard", "2/2",
                        "--redline-build-id", "build-77", url=server.url, key=tenant.key)
    assert second.returncode == 1
    run = only_run(tenant)
    assert run["status"] in ("passed", "failed") and run["ciBuildId"] == "build-77"
    assert run["totalTests"] == 2 + 10


def test_live_and_imported_from_junit_xml_count_the_same(server, tenant, tmp_path):
    """The same session reported live and written as JUnit XML (`--junitxml`), then imported
    by `redline upload`: both runs count what pytest's summary line printed."""
    write_suite(tmp_path)
    done = run_pytest(tmp_path, "--redline", "--junitxml=report.xml", url=server.url,
                      key=tenant.key)
    assert done.returncode == 1, done.stdout + done.stderr
    live_run = only_run(tenant)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDLINE_", "CI"))}
    env.update(REDLINE_URL=server.url, REDLINE_API_KEY=tenant.key,
               REDLINE_CONFIG_DIR=str(tmp_path / ".cfg"))
    upload = subprocess.run([sys.executable, "-m", "redline.cli.main", "upload",
                             str(tmp_path / "report.xml")], check=False, env=env,
                            capture_output=True, text=True, timeout=120)
    assert upload.returncode in (0, 1), upload.stdout + upload.stderr  # 1: the run failed
    with tenant.as_key() as client:
        runs = client.get("/api/runs").json()["data"]
        assert len(runs) == 2, runs
        imported_id = next(r["id"] for r in runs if r["id"] != live_run["id"])
        imported = client.get(f"/api/runs/{imported_id}").json()
    for run in (live_run, imported):
        assert_counts_match(run, done.stdout)
    # pytest-rerunfailures' attempts: one flaky test in both (its JUnit XML keeps the rerun)
    assert live_run["flakyTests"] == imported["flakyTests"] == 1


def test_the_ci_parallel_jobs_join_one_run_as_shards(server, tenant, tmp_path):
    """GitLab CI's `parallel: 2` sets CI_NODE_INDEX/CI_NODE_TOTAL: each job is a shard of the
    pipeline's run, without --redline-shard."""
    write_suite(tmp_path / "one", ALL_PASS, "test_one.py")
    write_suite(tmp_path / "two", ALL_PASS, "test_two.py")
    gitlab = {"GITLAB_CI": "true", "CI_PIPELINE_ID": "4242", "CI_NODE_TOTAL": "2"}
    for index, folder in ((1, "one"), (2, "two")):
        done = run_pytest(tmp_path / folder, "--redline", url=server.url, key=tenant.key,
                          extra_env={**gitlab, "CI_NODE_INDEX": str(index)})
        assert done.returncode == 0, done.stdout + done.stderr
        run = only_run(tenant)
        assert run["ciBuildId"] == "4242"
        assert run["status"] == ("running" if index == 1 else "passed")
    assert run["totalTests"] == 4


COUNTING_CONFTEST = '''
import json

from redline.sdk.resources import Runs

_add_tests = Runs.add_tests


def _counting(self, run_id, tests, **options):
    tests = list(tests)
    with open("requests.jsonl", "a") as requests:
        requests.write(json.dumps(len(tests)) + "\\n")
    return _add_tests(self, run_id, tests, **options)


Runs.add_tests = _counting
'''


def test_results_go_in_few_requests_even_when_a_batch_fills_slowly(server, tenant, tmp_path):
    """Tests that fill a batch (500) in more than a second: the sender sends what waited
    once a second, not a request for every few results that arrive meanwhile. (The suite's
    conftest counts the SDK's batch calls in the pytest process.)"""
    body = "\n".join(f"def test_{n}():\n    time.sleep(0.004)\n" for n in range(700))
    write_suite(tmp_path, "import time\n\n" + body, "test_slowish.py")
    (tmp_path / "conftest.py").write_text(COUNTING_CONFTEST)
    done = run_pytest(tmp_path, "--redline", url=server.url, key=tenant.key)
    assert done.returncode == 0, done.stdout + done.stderr
    sizes = [int(line) for line in (tmp_path / "requests.jsonl").read_text().split()]
    assert sum(sizes) == 700 and only_run(tenant)["totalTests"] == 700
    seconds = float(re.findall(r" in ([\d.]+)s", done.stdout)[-1])
    assert len(sizes) <= 700 // 500 + seconds + 2, sizes  # at most one partial a second


STREAMED = '''
import os
import time

import httpx
import pytest


@pytest.mark.parametrize("n", range(600))
def test_fast(n):
    pass


def test_last_sees_the_first_results_stored():
    url, headers = os.environ["REDLINE_URL"], {"X-API-Key": os.environ["REDLINE_API_KEY"]}
    deadline = time.monotonic() + 30
    while True:
        runs = httpx.get(f"{url}/api/runs", headers=headers).json()["data"]
        if runs and runs[0]["status"] == "running" and runs[0]["totalTests"] >= 500:
            return
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
'''


def test_results_reach_redline_while_the_tests_run(server, tenant, tmp_path):
    """The session's last test finds the first batch stored, its run still running."""
    write_suite(tmp_path, STREAMED, "test_streamed.py")
    done = run_pytest(tmp_path, "--redline", url=server.url, key=tenant.key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert only_run(tenant)["totalTests"] == 601


def test_a_redline_that_never_answers_costs_the_session_little(tmp_path):
    """A server that takes the connection and never answers: each request gives up at
    REDLINE_TIMEOUT, the results go to the spool, and the exit status is pytest's."""
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepted by the kernel, never read nor answered
    try:
        write_suite(tmp_path, ALL_PASS)
        started = time.monotonic()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        done = run_pytest(tmp_path, "--redline", url=url, extra_env={"REDLINE_TIMEOUT": "1"})
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 results spooled" in done.stdout and "redline upload --spool" in done.stdout
    assert elapsed < 25, elapsed  # well under the 30 s the session's end waits at most
