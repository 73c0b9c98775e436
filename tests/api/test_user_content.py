"""User content on its own origin (issue 21): a real Playwright HTML report and Playwright's
trace viewer open in Chromium from the user-content listener, and a page there, even one with
no CSP at all, cannot read the dashboard or change anything with the signed-in user's cookie.

The report is tests/fixtures/playwright-html/playwright-report.zip, written by a real
`npx playwright test` run (generate.sh beside it): three tests, one failing, with traces.
`redline serve` itself (two listeners in one process) is tested at the end. Browser tests skip
without Chromium and fail under CI=true."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.api.test_artifacts_report import signed_in
from tests.conftest import missing_service
from tests.support import live
from tests.support.user_content import server_with_user_content

CHROMIUM = "/usr/bin/chromium"
REPORT_ZIP = (Path(__file__).resolve().parents[1] / "fixtures" / "playwright-html"
              / "playwright-report.zip")
TESTS_IN_THE_REPORT = ["checkout shows the total", "arithmetic still works",
                       "a failing assertion"]


@pytest.fixture(scope="module")
def server(migrated_url, tmp_path_factory):
    with server_with_user_content(migrated_url, tmp_path_factory.mktemp("data")) as srv:
        yield srv


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        missing_service("Debian's Chromium is not installed at /usr/bin/chromium: install it "
                        "with `apt-get update && apt-get install -y chromium`")
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu"]}


@pytest.fixture
def run_id(tenant) -> str:
    with tenant.as_key() as client:
        return client.post("/api/runs", json={"status": "running"}).json()["id"]


def upload(tenant, run_id: str, kind: str, content: bytes, name: str,
           test_id: str | None = None) -> dict:
    data = {"type": kind, "runId": run_id, **({"testId": test_id} if test_id else {})}
    with tenant.as_key() as client:
        response = client.post("/api/upload", data=data,
                               files={"file": (name, content, "application/zip")})
    assert response.status_code == 201, response.text
    return response.json()


def sign_in(page, server, tenant) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Email").fill(tenant.email)
    page.get_by_label("Password").fill(live.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/projects/"))


def open_from_dashboard(page, server, path: str, link_name: str):
    """Click a dashboard link that opens a new tab; the new tab's page."""
    page.goto(f"{server.url}{path}")
    with page.context.expect_page() as opened:
        page.get_by_role("link", name=link_name).click()
    return opened.value


# -- a real Playwright report ------------------------------------------------------------------

@pytest.mark.browser
def test_a_real_playwright_report_renders_its_test_list(page, server, tenant, run_id):
    upload(tenant, run_id, "report", REPORT_ZIP.read_bytes(), "playwright-report.zip")
    sign_in(page, server, tenant)
    report = open_from_dashboard(page, server, f"/runs/{run_id}", "Open report")
    assert report.url.startswith(server.user_content.url + "/artifacts/")
    for title in TESTS_IN_THE_REPORT:
        expect(report.get_by_text(title).first).to_be_visible(timeout=20_000)
    # the report keeps its settings in localStorage, on the user-content origin
    assert report.evaluate("window.origin") == server.user_content.url
    assert report.evaluate("typeof localStorage.length") == "number"


@pytest.mark.browser
def test_the_reports_own_trace_viewer_opens_its_trace(page, server, tenant, run_id):
    """Playwright's report links each test to the trace viewer it carries (`trace/`), which
    runs a service worker: it works on the user-content origin."""
    upload(tenant, run_id, "report", REPORT_ZIP.read_bytes(), "playwright-report.zip")
    sign_in(page, server, tenant)
    report = open_from_dashboard(page, server, f"/runs/{run_id}", "Open report")
    report.get_by_text("checkout shows the total").first.click()
    report.get_by_role("link", name=re.compile("View trace", re.IGNORECASE)).first.click()
    report.wait_for_url(re.compile(r"/trace/index\.html\?trace="), timeout=20_000)
    expect(report.get_by_text("Set content", exact=False).first).to_be_visible(timeout=20_000)
    assert report.url.startswith(server.user_content.url)


@pytest.mark.browser
def test_an_uploaded_trace_opens_in_the_trace_viewer_on_the_user_content_origin(
        page, server, tenant):
    """A trace uploaded for a test opens from its page in the trace viewer Redline serves
    from the Playwright package, on the user-content origin (never the dashboard's)."""
    with zipfile.ZipFile(REPORT_ZIP) as report:
        traces = [report.read(name) for name in report.namelist()
                  if name.startswith("data/") and name.endswith(".zip")]
    trace = max(traces, key=len)  # a browser test's trace, with its page snapshots
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        test_id = client.post("/api/tests", json={
            "runId": run["id"], "title": "checkout shows the total", "status": "failed",
            "fullTitle": "sample.spec.js > checkout shows the total", "duration": 12,
            "filePath": "tests/sample.spec.js"}).json()["id"]
    upload(tenant, run["id"], "trace", trace, "trace.zip", test_id)
    sign_in(page, server, tenant)
    viewer = open_from_dashboard(page, server, f"/tests/{test_id}", "Open in the trace viewer")
    expect(viewer.get_by_text("Set content", exact=False).first).to_be_visible(timeout=20_000)
    assert viewer.url.startswith(f"{server.user_content.url}/trace/index.html?trace=")
    # the dashboard's own /trace/ only redirects there
    moved = httpx.get(f"{server.url}/trace/index.html", timeout=30)
    assert moved.status_code == 307
    assert moved.headers["location"] == f"{server.user_content.url}/trace/index.html"


# -- a hostile page on the user-content origin ------------------------------------------------

ATTACK = """async ({dashboard, teamId, target}) => {
  const seen = {};
  try {  // read the dashboard as the user
    const r = await fetch(dashboard + '/api/me', {credentials: 'include'});
    seen.read = r.status + ':' + (await r.text());
  } catch (e) { seen.read = 'error:' + e.name; }
  try {  // a change through the API, as a "simple" request (no preflight)
    const r = await fetch(dashboard + '/api/team-members', {method: 'POST',
      credentials: 'include', mode: 'no-cors',
      headers: {'Content-Type': 'text/plain'},
      body: JSON.stringify({teamId, email: 'via-api@evil.example', role: 'admin'})});
    seen.api = r.type;
  } catch (e) { seen.api = 'error:' + e.name; }
  // a change through the dashboard's form, the way a CSRF attack posts it
  const form = document.createElement('form');
  form.method = 'POST';
  form.target = target;
  form.action = dashboard + '/teams/' + teamId + '/invitations';
  for (const [name, value] of [['email', 'via-form@evil.example'], ['role', 'admin'],
                               ['csrf', 'guessed']]) {
    const input = document.createElement('input');
    input.name = name; input.value = value; form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
  await new Promise(resolve => setTimeout(resolve, 1000));
  return seen;
}"""


@pytest.mark.browser
def test_a_page_on_the_user_content_origin_cannot_read_or_change_the_dashboard(
        page, server, tenant):
    """Even without the reports' CSP (this page has none: the browser is handed it as if the
    user-content origin served it), the dashboard's own defences hold: no CORS for another
    origin, and no change without the session's CSRF token. The signed-in user's cookie IS
    sent (same host, another port), so these are what stop it."""
    sign_in(page, server, tenant)
    evil_url = f"{server.user_content.url}/evil.html"
    page.route(evil_url, lambda route: route.fulfill(
        status=200, content_type="text/html", body="<!doctype html><title>evil</title>"))
    posted = []
    page.context.on("request", lambda request: posted.append(request)
            if request.method == "POST" and request.url.startswith(server.url) else None)
    page.goto(evil_url)
    with page.context.expect_page() as opened:
        seen = page.evaluate(ATTACK, {"dashboard": server.url, "teamId": tenant.team_id,
                                      "target": "_blank"})
    answer = opened.value  # the form's answer, in the tab it opened
    answer.wait_for_load_state()
    assert seen["read"].startswith("error:")  # CORS: the response is never readable
    # Both changes were sent, with the user's session cookie, and refused by the CSRF check
    # (the API's answer is not even readable: opaque, or blocked by Chromium's ORB).
    assert seen["api"] in ("opaque", "error:TypeError")
    assert [r.url.removeprefix(server.url) for r in posted] == \
        ["/api/team-members", f"/teams/{tenant.team_id}/invitations"]
    assert all("redline_session=" in (r.header_value("cookie") or "") for r in posted)
    assert "CSRF token missing or wrong" in answer.content()
    with signed_in(server, tenant) as owner:
        members = owner.get(f"/teams/{tenant.team_id}/members").text
        assert "evil.example" not in members  # and nothing changed
        # The control: with the page's CSRF token, the same form post does invite.
        token = re.search(r'name="csrf" value="([^"]+)"', members).group(1)
        made = owner.post(f"/teams/{tenant.team_id}/invitations", data={
            "email": "control@example.com", "role": "member", "csrf": token})
        assert made.status_code == 201 and "control@example.com" in made.text


@pytest.mark.browser
def test_a_hostile_report_served_by_redline_cannot_even_send_to_the_dashboard(
        page, server, tenant, run_id):
    """Served by the user-content listener with its CSP, the same attack is stopped in the
    browser: no request to the dashboard leaves the page."""
    page_html = b"<!doctype html><title>report</title><p>report</p>"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("index.html", page_html)
    created = upload(tenant, run_id, "report", archive.getvalue(), "playwright-report.zip")
    sign_in(page, server, tenant)
    report = open_from_dashboard(page, server, f"/runs/{run_id}", "Open report")
    assert f"/artifacts/{created['id']}/report/" in report.url
    sent = []
    report.on("request", lambda request: sent.append(request.url)
              if request.url.startswith(server.url) else None)
    seen = report.evaluate(ATTACK, {"dashboard": server.url, "teamId": tenant.team_id,
                                    "target": "_self"})
    assert seen["read"].startswith("error:") and seen["api"].startswith("error:")
    assert sent == []  # connect-src and form-action kept everything on the page's origin
    with signed_in(server, tenant) as owner:
        assert "evil.example" not in owner.get(f"/teams/{tenant.team_id}/members").text


# -- `redline serve`: the second listener ------------------------------------------------------

def _wait_for(url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def test_redline_serve_runs_the_user_content_listener_beside_the_api(migrated_url, tmp_path):
    port = live.free_port()
    env = {**os.environ, "REDLINE_DATABASE_URL": migrated_url, "REDLINE_SECRET_KEY": "k" * 40,
           "REDLINE_COOKIE_SECURE": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("REDLINE_USER_CONTENT_URL", None)
    env.pop("REDLINE_PUBLIC_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "redline.cli.main", "serve", "--port", str(port), "--data-dir",
         str(tmp_path), "--no-worker", "--no-runner"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        assert _wait_for(f"http://127.0.0.1:{port}/api/health", deadline).status_code == 200
        content = _wait_for(f"http://127.0.0.1:{port + 1}/api/health", deadline)
        assert content.status_code == 404  # the API is not there
        assert content.json()["error"]["code"] == "NOT_FOUND"
        moved = httpx.get(f"http://127.0.0.1:{port}/artifacts/a/report/1.x/index.html")
        assert moved.headers["location"] == \
            f"http://127.0.0.1:{port + 1}/artifacts/a/report/1.x/index.html"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert f"User content (HTML reports, trace viewer) served on http://127.0.0.1:{port + 1}" \
        in output, output
    with pytest.raises(httpx.TransportError):  # both listeners stopped with the process
        httpx.get(f"http://127.0.0.1:{port + 1}/trace/index.html", timeout=2)


def test_redline_serve_refuses_a_taken_user_content_port(migrated_url, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "redline.cli.main", "serve", "--port",
             str(live.free_port()), "--user-content-port", str(busy), "--data-dir",
             str(tmp_path), "--no-worker", "--no-runner"],
            env={**os.environ, "REDLINE_DATABASE_URL": migrated_url}, capture_output=True,
            text=True, timeout=60, check=False)
    assert result.returncode == 5, result.stderr
    assert f"Error [VALIDATION_ERROR]: Cannot listen on 127.0.0.1:{busy} for user content" \
        in result.stderr
    assert "choose a free port with --user-content-port" in result.stderr


def test_redline_serve_refuses_user_content_on_the_dashboards_origin(migrated_url, tmp_path):
    port = live.free_port()
    result = subprocess.run(
        [sys.executable, "-m", "redline.cli.main", "serve", "--port", str(port),
         "--data-dir", str(tmp_path), "--no-worker", "--no-runner"],
        env={**os.environ, "REDLINE_DATABASE_URL": migrated_url,
             "REDLINE_PUBLIC_URL": "https://redline.example.com",
             "REDLINE_USER_CONTENT_URL": "https://REDLINE.example.com:443/"},
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 5, result.stderr
    assert "Error [VALIDATION_ERROR]: REDLINE_USER_CONTENT_URL " in result.stderr
    assert "is the dashboard's own origin" in result.stderr


def test_with_a_public_url_the_user_content_link_takes_its_host_name_and_says_so(
        migrated_url, tmp_path):
    port = live.free_port()
    env = {**os.environ, "REDLINE_DATABASE_URL": migrated_url, "PYTHONUNBUFFERED": "1",
           "REDLINE_PUBLIC_URL": f"http://localhost:{port}"}
    env.pop("REDLINE_USER_CONTENT_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "redline.cli.main", "serve", "--port", str(port), "--data-dir",
         str(tmp_path), "--no-worker", "--no-runner"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(f"http://127.0.0.1:{port + 1}/trace/index.html", time.time() + 60)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert f"linked as http://localhost:{port + 1}" in output, output
    assert "REDLINE_PUBLIC_URL is set but REDLINE_USER_CONTENT_URL is not" in output


def test_origins_compare_scheme_host_and_port_as_browsers_do():
    from redline.server.artifacts.user_content import origin_of

    assert origin_of("https://Redline.Example.com:443/x") == "https://redline.example.com"
    assert origin_of("http://127.0.0.1:8000/") != origin_of("http://127.0.0.1:8001/")
    assert origin_of("http://h/") == origin_of("http://h:80")
    assert origin_of("http://h/") != origin_of("https://h/")
