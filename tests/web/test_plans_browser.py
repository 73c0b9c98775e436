"""Executed runs in a real browser (Playwright for Python driving Debian's Chromium) against a
real server and the real runner (over HTTP, running real processes): a member presses Run now,
the run page's log follows the command's output while it runs without the page reloading, and
Cancel stops it; a passing run's page ends with its exit code and the end of its log.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
import time

import pytest
from playwright.sync_api import Page, expect

from redline.runner.agent import Runner, RunnerConfig
from redline.runner.client import RunnerClient
from tests.executions.conftest import make_plan, runner_token
from tests.web.test_browser import shot, sign_in

pytestmark = [pytest.mark.browser]

REPORT = ('<testsuite name="s" tests="1"><testcase classname="c" name="ok" time="0.1"/>'
          '</testsuite>')
#: writes its report, then prints a numbered line every 0.3 s until stopped
TICKS = [sys.executable, "-c", textwrap.dedent(f"""
    import pathlib, time
    pathlib.Path('report.xml').write_text({REPORT!r})
    n = 0
    while True:
        n += 1
        print(f'tick {{n}}', flush=True)
        time.sleep(0.3)
""")]
#: 6,000 numbered lines (about 400 KB: more than the page renders), then waits to be stopped
LONG_OUTPUT = [sys.executable, "-c", textwrap.dedent(f"""
    import pathlib, time
    pathlib.Path('report.xml').write_text({REPORT!r})
    for n in range(1, 6001):
        print(f'line {{n:05d}} ' + 'x' * 56, flush=n % 500 == 0)
    print('all printed', flush=True)
    time.sleep(600)
""")]
#: three lines, a second apart, then passes
THREE_LINES = [sys.executable, "-c", textwrap.dedent(f"""
    import pathlib, time
    pathlib.Path('report.xml').write_text({REPORT!r})
    import os
    print('greeting:', os.environ['GREETING'], flush=True)
    for n in (1, 2, 3):
        print(f'step {{n}} of 3', flush=True)
        time.sleep(1)
""")]


@pytest.fixture
def runner(tenant):
    """The real runner, in a thread of this process, serving the tenant's team over HTTP."""
    started = Runner(RunnerClient(tenant.server.url, runner_token(tenant)),
                     RunnerConfig(poll_interval=0.1, heartbeat_interval=0.2),
                     name="browser-test-runner").start()
    yield started
    started.stop(timeout=30)
    started.client.close()


def api_run(tenant, run_id: str) -> dict:
    with tenant.as_user() as api:
        return api.get(f"/api/runs/{run_id}").json()


def test_run_now_follow_the_live_log_and_cancel(page: Page, tenant, runner, screenshots):
    with tenant.as_user() as api:
        plan = make_plan(api, tenant.project_id, name="ticker", command=TICKS,
                         reportPaths=["report.xml"])
    sign_in(page, tenant.server, tenant.email)
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Plans").click()
    row = page.locator(f'tr[data-plan="{plan["id"]}"]')
    expect(row.locator(".badge")).to_have_text("ready")
    shot(page, screenshots, "plans")

    row.get_by_role("button", name="Run ticker now").click()
    expect(page).to_have_url(re.compile(r"/runs/run_\w+$"))
    run_id = page.url.rsplit("/", 1)[1]
    assert api_run(tenant, run_id)["source"] == "portal"

    # the log follows the output while the run is live, in the same page (no reload)
    page.evaluate("window.stillTheSamePage = true")
    log = page.locator("#run-log")
    expect(log).to_contain_text("tick 1", timeout=20_000)
    expect(log).to_contain_text("tick 5", timeout=20_000)
    expect(page.locator("#execution .badge")).to_have_text("running")
    expect(page.locator("#exec-used")).to_contain_text("so far")
    assert page.evaluate("window.stillTheSamePage") is True
    shot(page, screenshots, "run-live-log")

    # Cancel (asks first): the process group is stopped and the run ends cancelled
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#execution .badge")).to_have_text("cancelled", timeout=30_000)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(page.locator("#exec-cancel")).to_have_text("cancelled")
    expect(page.locator("#log-state")).to_have_text("End of the log.", timeout=10_000)
    run = api_run(tenant, run_id)
    assert (run["status"], run["cancelReason"]) == ("cancelled", "cancelled")
    ticks = [int(n) for n in re.findall(r"tick (\d+)", log.inner_text())]
    assert ticks == list(range(1, len(ticks) + 1))  # each line once, in order
    shot(page, screenshots, "run-cancelled")

    # the Plans page shows the run as the plan's last one
    page.goto(f"{tenant.server.url}/projects/{tenant.project_id}/plans")
    expect(row.get_by_role("link").filter(has_text="cancelled")).to_have_attribute(
        "href", f"/runs/{run_id}")


def test_an_admin_creates_a_plan_in_the_form_and_its_run_passes_on_its_page(page: Page, tenant,
                                                                            runner):
    """The form as a browser sends it (line breaks as CRLF), then a passing run: its page
    ends with exit code 0 and the whole log, without a reload."""
    sign_in(page, tenant.server, tenant.email)
    page.goto(f"{tenant.server.url}/projects/{tenant.project_id}/plans")
    page.get_by_role("link", name="New plan").click()
    page.get_by_label("Name", exact=True).fill("three")
    page.get_by_label("Command: one argument per line").fill(json.dumps(THREE_LINES))
    page.get_by_label("Report files the command writes").fill("report.xml\nmissing/*.xml")
    page.get_by_label("Environment, one NAME=value per line", exact=True).fill(
        "MODE=ci\nGREETING=hi there")
    page.get_by_role("button", name="Create plan").click()
    expect(page.get_by_text("Plan created.")).to_be_visible()
    plan_id = page.url.split("?")[0].rsplit("/", 1)[1]
    with tenant.as_user() as api:
        plan = api.get(f"/api/plans/{plan_id}").json()
    assert (plan["command"], plan["reportPaths"]) == (THREE_LINES, ["report.xml", "missing/*.xml"])
    assert plan["env"]["GREETING"] == {"value": "hi there", "secret": False}
    page.get_by_label("Branch (optional)").fill("main")
    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/run_\w+$"))
    page.evaluate("window.stillTheSamePage = true")
    log = page.locator("#run-log")
    expect(log).to_contain_text("step 1 of 3", timeout=20_000)
    expect(page.locator("#execution .badge")).to_have_text("passed", timeout=30_000)
    expect(page.locator("#exec-exit")).to_have_text("0")
    expect(log).to_contain_text("step 3 of 3")
    expect(log).to_contain_text("greeting: hi there")
    expect(page.locator("#log-ended")).to_be_visible()
    assert page.evaluate("window.stillTheSamePage") is True
    page.get_by_role("link", name="Reload the page").click()
    expect(page.locator("#log-ended")).to_be_hidden()
    expect(page.locator(".total.t-passed .big")).to_have_text("1")
    expect(page.locator("#log-state")).to_have_text("End of the log.")


def test_a_log_longer_than_the_page_renders_is_read_on_from_where_the_page_stopped(
        page: Page, tenant, runner):
    """The page renders the log's first 256 KiB; the script reads the rest from that offset:
    every line once, in order."""
    with tenant.as_user() as api:
        plan = make_plan(api, tenant.project_id, name="chatty", command=LONG_OUTPUT,
                         reportPaths=["report.xml"])
        run_id = api.post(f"/api/plans/{plan['id']}/runs", json={}).json()["id"]
        deadline = time.monotonic() + 30
        while "all printed" not in api.get(f"/api/runs/{run_id}/log",
                                           params={"offset": 380_000}).json()["text"]:
            assert time.monotonic() < deadline, "the command did not print its output"
            time.sleep(0.2)
    sign_in(page, tenant.server, tenant.email)
    page.goto(f"{tenant.server.url}/runs/{run_id}")
    rendered = int(page.locator("#execution").get_attribute("data-offset"))
    assert 0 < rendered <= 256 * 1024
    log = page.locator("#run-log")
    expect(log).to_contain_text("all printed", timeout=20_000)
    numbers = [int(n) for n in re.findall(r"^line (\d{5}) ", log.inner_text(),
                                          re.MULTILINE)]
    assert numbers == list(range(1, 6001))
    with tenant.as_user() as api:
        api.post(f"/api/runs/{run_id}/cancel")
