"""End to end in a real browser (Playwright for Python driving Debian's Chromium): a person
triages a failure, quarantines the test, creates a key; a viewer cannot. Each main page is
saved to test-results/screenshots/ for a person to look at.

Without /usr/bin/chromium these tests skip and say how to install it; under CI=true they fail.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support import live
from tests.web.conftest import REPORTS, import_report

pytestmark = [pytest.mark.browser]


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 860}}


@pytest.fixture
def csp_violations(page: Page) -> list[str]:
    found: list[str] = []
    page.on("console", lambda message: found.append(message.text)
            if "Content Security Policy" in message.text or message.type == "error" else None)
    return found


def sign_in(page: Page, server, email: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(live.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/projects/proj_\w+/runs$"))


def shot(page: Page, screenshots, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def test_triage_a_failure_quarantine_it_and_create_a_key(page: Page, tenant, screenshots,
                                                         csp_violations):
    server = tenant.server
    sign_in(page, server, tenant.email)
    expect(page.get_by_text("No runs match")).to_be_visible()

    # a real Playwright report, imported twice through the API (so the test has history)
    import_report(tenant, commitSha="0000000000000001", branch="main")
    import_report(tenant, REPORTS / "junit" / "pytest-xunit1.xml", branch="feature/login")
    run = import_report(tenant, commitSha="0000000000000002", branch="main")
    page.reload()
    rows = page.locator("#run-rows tr")
    expect(rows).to_have_count(3)
    shot(page, screenshots, "runs")

    # find its failure
    run_link = page.locator(f'#run-rows a[href="/runs/{run["id"]}"]')
    expect(run_link).to_have_text("main at 00000000")  # its branch and commit, not its id
    run_link.click()
    expect(page.get_by_role("heading", name=re.compile("^Failures"))).to_be_visible()
    expect(page.get_by_text("Compared with the previous run on main")).to_be_visible()
    shot(page, screenshots, "run")
    group = page.locator("article.group").filter(has_text="Object.is equality").first
    test_link = group.locator("ul.tests a").first
    title = test_link.inner_text()
    test_link.click()

    # the test: its error, and its history
    expect(page.get_by_role("heading", name="Error", exact=True)).to_be_visible()
    expect(page.locator(".emsg").first).to_contain_text("toBe")
    expect(page.locator("ol.strip .cell")).to_have_count(2)
    shot(page, screenshots, "test")
    page.get_by_role("link", name="history, flakiness, quarantine").click()
    expect(page.get_by_role("heading", name="How the score is computed")).to_be_visible()
    expect(page.locator("ol.strip .cell")).to_have_count(2)
    expect(page.locator("svg.chart rect.bar")).to_have_count(2)
    assert title.split(" > ")[-1] in page.locator("h1").inner_text()

    # quarantine it, see who and when, release it
    page.get_by_label("Reason").fill("fails on the second state")
    page.get_by_role("button", name="Quarantine").click()
    expect(page.get_by_text("Test quarantined.")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Quarantined \(fails on the second state\)\s+by \w+"))
           ).to_be_visible()
    shot(page, screenshots, "case")
    page.get_by_role("button", name="Release from quarantine").click()
    expect(page.get_by_text("Not quarantined")).to_be_visible()

    # the other project pages
    for tab, name in (("Flaky tests", "flaky"), ("Errors", "errors"), ("Trends", "trends"),
                      ("Members", "members")):
        page.get_by_role("navigation", name=re.compile("Project")).get_by_role(
            "link", name=tab).click()
        expect(page.get_by_role("link", name=tab)).to_have_attribute("aria-current", "page")
        shot(page, screenshots, name)
    expect(page.locator("svg.chart")).to_have_count(0)  # members page has no chart

    # an API key: the whole key once, then masked
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Name").fill("Nightly build")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("rl_live_")
    shot(page, screenshots, "settings-new-key")
    page.goto(page.url.replace("/keys", "/settings"))
    expect(page.get_by_text(key)).to_have_count(0)
    expect(page.get_by_text(re.compile(r"rl_\*\*\*\*.*" + re.escape(key[-4:])))).to_be_visible()
    shot(page, screenshots, "settings")
    with server.client(**{"X-API-Key": key}) as api:
        assert api.get("/api/runs").status_code == 200
    assert not [v for v in csp_violations if "Content Security Policy" in v], csp_violations


def test_new_runs_appear_without_a_reload_while_one_is_in_progress(page: Page, tenant):
    with tenant.as_key() as api:
        api.post("/api/runs", json={"status": "running", "branch": "main",
                                    "runTitle": "still running"})
    sign_in(page, tenant.server, tenant.email)
    expect(page.locator("#run-rows tr.row-running")).to_have_count(1)
    imported = import_report(tenant)
    expect(page.locator(f'#run-rows a[href="/runs/{imported["id"]}"]')).to_have_text(
        "main at a1b2c3d4", timeout=12_000)


def test_a_viewer_reads_but_cannot_change_anything(page: Page, tenant, screenshots):
    run = import_report(tenant)
    name = f"viewer{tenant.user_id[-6:].lower()}"
    live.add_member(tenant, "viewer", name=name)
    sign_in(page, tenant.server, f"{name}@example.com")
    expect(page.locator(".who .role")).to_have_text("viewer")
    expect(page.get_by_role("link", name="Settings")).to_have_count(0)
    page.locator(f'#run-rows a[href="/runs/{run["id"]}"]').click()
    page.locator("article.group ul.tests a").first.click()
    page.get_by_role("link", name="history, flakiness, quarantine").click()
    expect(page.get_by_role("heading", name="Quarantine", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Quarantine")).to_have_count(0)
    shot(page, screenshots, "case-as-viewer")
    page.goto(f"{tenant.server.url}/projects/{tenant.project_id}/flaky")
    expect(page.get_by_role("button", name="Quarantine selected")).to_have_count(0)
    response = page.goto(f"{tenant.server.url}/projects/{tenant.project_id}/settings")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_the_sign_in_page_works_without_javascript(browser, tenant, screenshots):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{tenant.server.url}/login")
    shot(page, screenshots, "login")
    page.get_by_label("Email").fill(tenant.email)
    page.get_by_label("Password").fill(live.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/projects/proj_\w+/runs$"))
    context.close()


# A trace opening in Playwright's trace viewer, from a test's page, is in
# tests/api/test_user_content.py: the viewer runs on the user-content origin (issue 21).
