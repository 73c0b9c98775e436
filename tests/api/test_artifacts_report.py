"""An HTML report artifact (a ZIP of the report folder) opens in the browser: its entries are
served one by one under a signed path by the user-content listener, an origin apart from the
dashboard's, where the report runs with scripts and `allow-same-origin` (Playwright's report
needs `localStorage`) and still never acts as the signed-in user (issue 21; RELIABILITY.md
section 3). The dashboard's own listener only redirects there. The browser tests skip without
Chromium and fail under CI=true, like test_artifacts_browser; tests/api/test_user_content.py
opens a real Playwright report."""

from __future__ import annotations

import http.client
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from redline.server.artifacts import report, signing
from redline.server.artifacts.blobs import blob_store
from tests.api.test_artifacts_support import error_of, small_zip, upload
from tests.conftest import missing_service
from tests.support import live
from tests.support.s3 import s3  # noqa: F401  (the fixture)
from tests.support.user_content import server_with_user_content

CHROMIUM = "/usr/bin/chromium"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')

INDEX = b"""<!doctype html><html><head><meta charset="utf-8"><title>Report</title>
<link rel="stylesheet" href="./style.css"></head>
<body><h1>Playwright report</h1><pre id="out">pending</pre>
<script src="./app.js"></script></body></html>"""

APP = b"""(async () => {
  const seen = {ran: true};
  try { seen.cookie = document.cookie; } catch (e) { seen.cookie = 'error:' + e.name; }
  try { seen.origin = window.origin; } catch (e) { seen.origin = 'error'; }
  try {
    localStorage.setItem('report-setting', 'kept');
    seen.storage = localStorage.getItem('report-setting');
  } catch (e) { seen.storage = 'error:' + e.name; }
  try {  // the dashboard's API, with the signed-in user's cookie
    const r = await fetch('DASHBOARD/api/me', {credentials: 'include'});
    seen.dashboard = r.status;
    seen.dashboardBody = await r.text();
  } catch (e) { seen.dashboard = 'error:' + e.name; }
  try {
    const r = await fetch(new URL('/api/me', location.href).href, {credentials: 'include'});
    seen.me = r.status;
    seen.meBody = await r.text();
  } catch (e) { seen.me = 'error:' + e.name; }
  try {
    const r = await fetch('./data/report.json');
    seen.data = (await r.json()).tests;
  } catch (e) { seen.data = 'error:' + e.name; }
  document.getElementById('out').textContent = JSON.stringify(seen);
})();
"""

ENTRIES = {"index.html": INDEX, "app.js": APP, "style.css": b"h1 { color: #b00; }",
           "data/report.json": b'{"tests": 3}', "data/shot.png": b"\x89PNG\r\n\x1a\nrest",
           "trace/index.html": b"<!doctype html><p>trace viewer</p>",
           "data/notes.bin": b"\x00\x01 anything"}


@pytest.fixture(scope="module")
def server(migrated_url, tmp_path_factory):
    """This module's server, with its user-content listener (`server.user_content`)."""
    with server_with_user_content(migrated_url, tmp_path_factory.mktemp("data")) as srv:
        yield srv


@pytest.fixture
def run_id(tenant) -> str:
    with tenant.as_key() as client:
        return client.post("/api/runs", json={"status": "running"}).json()["id"]


def hostile_entries(server) -> dict[str, bytes]:
    """ENTRIES whose script aims at this server's dashboard."""
    return {**ENTRIES, "app.js": APP.replace(b"DASHBOARD", server.url.encode())}


def upload_report(tenant, run_id: str, entries: dict[str, bytes] = ENTRIES) -> dict:
    with tenant.as_key() as client:
        response = upload(client, run_id, "report", small_zip(entries), "playwright-report.zip")
    assert response.status_code == 201, response.text
    return response.json()


@contextmanager
def signed_in(server, tenant) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as client:
        page = client.get("/login")
        signed = client.post("/login", data={"email": tenant.email, "password": live.PASSWORD,
                                             "csrf": CSRF.search(page.text).group(1),
                                             "next": "/"})
        assert signed.status_code == 303, signed.text
        yield client


def report_link(server, tenant, run_id: str, artifact_id: str) -> str:
    """The dashboard's "Open report" link for the artifact, from the run page: a full URL on
    the user-content origin."""
    with signed_in(server, tenant) as client:
        html = client.get(f"/runs/{run_id}").text
    match = re.search(r'href="(' + re.escape(server.user_content.url) + r'/artifacts/'
                      + artifact_id + r'/report/[^"]+)"[^>]*>Open report<', html)
    assert match, "no Open report link on the run page"
    assert 'target="_blank"' in html[match.start() - 10:match.end()]
    return match.group(1).replace("&amp;", "&")


@pytest.fixture
def opened(server, tenant, run_id) -> tuple[dict, str]:
    created = upload_report(tenant, run_id)
    return created, report_link(server, tenant, run_id, created["id"])


def entry(server, link: str, name: str, method: str = "GET") -> httpx.Response:
    base = link.rsplit("/index.html", 1)[0]
    with httpx.Client(timeout=30) as client:  # no credentials at all
        return client.request(method, f"{base}/{name}")


def test_the_run_page_offers_open_report_beside_the_download(server, tenant, run_id):
    created = upload_report(tenant, run_id)
    link = report_link(server, tenant, run_id, created["id"])
    assert re.fullmatch(re.escape(server.user_content.url)
                        + r"/artifacts/artifact_\w+/report/\d+\.[\w-]+/index\.html", link)
    with signed_in(server, tenant) as client:
        html = client.get(f"/runs/{run_id}").text
    assert "Download</a>" in html


@pytest.mark.parametrize("name,content_type", [
    ("index.html", "text/html; charset=utf-8"), ("app.js", "text/javascript; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"), ("data/report.json", "application/json"),
    ("data/shot.png", "image/png"), ("trace/index.html", "text/html; charset=utf-8"),
    ("trace/", "text/html; charset=utf-8"), ("", "text/html; charset=utf-8")])
def test_entries_are_served_with_their_type_and_the_sandbox(server, opened, name,
                                                             content_type):
    _, link = opened
    response = entry(server, link, name)
    assert response.status_code == 200, response.text
    expected = ENTRIES[(name or "index.html").replace("trace/", "trace/index.html")
                       if name in ("", "trace/") else name]
    assert response.content == expected
    assert response.headers["content-type"] == content_type
    assert response.headers["content-length"] == str(len(expected))
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert csp.startswith("sandbox allow-scripts allow-same-origin allow-popups")
    # its fetches, frames and posts stay on the user-content origin: never the dashboard's
    for directive in ("default-src 'self'", "connect-src 'self'", "frame-src 'self'",
                      "form-action 'none'", "base-uri 'self'"):
        assert directive in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cross-origin-resource-policy"] == "same-origin"
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
    assert "content-disposition" not in response.headers
    head = entry(server, link, name, "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(expected))


def test_a_type_off_the_allowlist_is_an_octet_stream_attachment(server, opened):
    response = entry(server, opened[1], "data/notes.bin")
    assert response.status_code == 200 and response.content == ENTRIES["data/notes.bin"]
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment; ")


@pytest.mark.parametrize("name", [
    "missing.html", "data", "data/missing.json", "INDEX.HTML", "../index.html",
    "..%2Findex.html", "%2e%2e/%2e%2e/etc/passwd", "data/../index.html", "./index.html",
    "data//report.json", "%2Fetc%2Fpasswd", "data%5Creport.json", "index.html%00",
    "C:index.html", "a" * 2000])
def test_traversal_and_missing_entries_are_not_found(server, opened, name):
    base = httpx.URL(opened[1]).path.rsplit("/index.html", 1)[0]
    connection = http.client.HTTPConnection("127.0.0.1", server.user_content.port, timeout=30)
    try:  # the path goes out exactly as written (an HTTP client would fold the `..` away)
        connection.request("GET", f"{base}/{name}")
        raw = connection.getresponse()
        status, body = raw.status, raw.read()
        content_type = raw.getheader("content-type") or ""
    finally:
        connection.close()
    assert status == 404, (name, status, body[:200])
    assert content_type.startswith("application/json")
    assert json.loads(body)["error"]["code"] == "NOT_FOUND"
    assert b"Playwright report" not in body


def test_a_tampered_or_expired_signature_is_refused(server, tenant, opened):
    created, link = opened
    prefix, token, _ = link.rsplit("/", 2)
    exp, sig = token.split(".")
    settings = server.app.state.settings
    tampered = {
        "sig": f"{prefix}/{exp}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}/index.html",
        "exp": f"{prefix}/{int(exp) + 1}.{sig}/index.html",
        "no-sig": f"{prefix}/{exp}/index.html",
        "file-link-sig": None,
    }
    file_sig = httpx.URL(created["url"]).params["sig"]
    tampered["file-link-sig"] = f"{prefix}/{exp}.{file_sig}/index.html"
    for why, path in tampered.items():
        response = httpx.get(path, timeout=30)
        assert response.status_code == 403, (why, response.text)
        error_of(response, "AUTH_FORBIDDEN", 403)
    past = int(time.time()) - 5
    old = signing.report_token(settings.resolved_secret_key, created["id"], tenant.project_id,
                               past)
    response = httpx.get(f"{prefix}/{old}/index.html", timeout=30)
    assert error_of(response, "AUTH_FORBIDDEN", 403)["details"]["reason"] == "link_expired"
    posted = httpx.post(link, timeout=30)
    error_of(posted, "AUTH_FORBIDDEN", 403)


def test_the_dashboards_listener_only_redirects_a_report_to_the_user_content_origin(
        server, opened):
    _, link = opened
    path = httpx.URL(link).raw_path.decode()
    for method in ("GET", "HEAD"):
        response = httpx.request(method, f"{server.url}{path}", timeout=30)
        assert response.status_code == 307, response.text
        assert response.headers["location"] == link
        assert b"Playwright report" not in response.content


def test_without_a_user_content_origin_a_report_does_not_open(start_server, server, tenant,
                                                              run_id, opened):
    """A server made by create_app alone (no `redline serve`, no REDLINE_USER_CONTENT_URL)
    has nowhere safe to run a report: no link on the run page, UNSUPPORTED at the path."""
    bare = start_server(rate_limit_enabled=False)
    response = httpx.get(bare.url + httpx.URL(opened[1]).raw_path.decode(), timeout=30)
    assert error_of(response, "UNSUPPORTED", 501)["details"] == {"feature": "user-content"}
    with signed_in(bare, tenant) as client:
        html = client.get(f"/runs/{run_id}").text
    assert "playwright-report.zip" in html and "Open report" not in html


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/me"), ("GET", "/"), ("GET", "/login"), ("GET", "/api/runs"),
    ("POST", "/api/runs"), ("GET", "/openapi.json"), ("GET", "/docs"), ("POST", "/logout"),
    ("GET", "/static/app.css"), ("GET", "/api/health")])
def test_the_user_content_origin_reads_no_credential_and_answers_nothing_else(
        server, tenant, method, path):
    with signed_in(server, tenant) as dashboard:
        cookies = dict(dashboard.cookies)
    assert "redline_session" in cookies
    with httpx.Client(base_url=server.user_content.url, cookies=cookies, timeout=30) as client:
        response = client.request(method, path, json={}, headers={
            "Authorization": f"Bearer {tenant.token}", "X-API-Key": tenant.key})
    assert response.status_code in (404, 405), (path, response.status_code)
    assert tenant.email not in response.text and "set-cookie" not in response.headers


def test_another_projects_artifact_is_refused(server, tenant, other_tenant, opened):
    _, link = opened
    with other_tenant.as_key() as client:
        theirs_run = client.post("/api/runs", json={"status": "running"}).json()["id"]
    theirs = upload_report(other_tenant, theirs_run)
    token = link.rsplit("/", 2)[1]
    response = httpx.get(f"{server.user_content.url}/artifacts/{theirs['id']}/report/{token}"
                         "/index.html", timeout=30)
    error_of(response, "AUTH_FORBIDDEN", 403)


def test_only_a_report_opens_this_way(server, tenant, run_id):
    with tenant.as_key() as client:
        trace = upload(client, run_id, "trace", small_zip({"index.html": b"<p>x</p>"}),
                       "trace.zip").json()
    token = signing.report_token(server.app.state.settings.resolved_secret_key, trace["id"],
                                 tenant.project_id, int(time.time()) + 60)
    response = httpx.get(f"{server.user_content.url}/artifacts/{trace['id']}/report/{token}"
                         "/index.html", timeout=30)
    error_of(response, "NOT_FOUND", 404)


def test_entries_are_read_from_the_blob_without_extracting_it(server, opened):
    _, link = opened
    store = blob_store(server.app.state.settings)
    before = sorted(p for p in Path(store.root).rglob("*") if p.is_file())
    assert entry(server, link, "data/report.json").json() == {"tests": 3}
    after = sorted(p for p in Path(store.root).rglob("*") if p.is_file())
    assert before == after


def test_entry_names_resolve_strictly_inside_the_archive():
    assert report.entry_name("") == "index.html"
    assert report.entry_name("data/x.json") == "data/x.json"
    assert report.entry_name("trace/") == "trace/index.html"
    for bad in ["../x", "a/../x", "/etc/passwd", "a//b", "a\\b", "x\0", "./x", "C:x", ".."]:
        assert report.entry_name(bad) is None, bad


# -- in a real browser ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        missing_service("Debian's Chromium is not installed at /usr/bin/chromium: install it "
                        "with `apt-get update && apt-get install -y chromium`")
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu"]}


def sign_in(page, server, tenant) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Email").fill(tenant.email)
    page.get_by_label("Password").fill(live.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/projects/"))
    # a cookie a script on the dashboard's origin could read (the session one is HttpOnly)
    page.context.add_cookies([{"name": "readable", "value": "dashboard-secret",
                               "url": server.url}])


@pytest.mark.browser
def test_the_same_script_on_the_dashboards_origin_would_see_everything(page, server, tenant):
    """The control: run on the dashboard's own origin, the report's script reads the cookie
    and calls the API as the user, which is what the sandbox must prevent."""
    sign_in(page, server, tenant)
    page.goto(f"{server.url}/login")
    seen = page.evaluate("""async () => ({cookie: document.cookie,
        me: (await fetch('/api/me', {credentials: 'include'})).status})""")
    assert "dashboard-secret" in seen["cookie"] and seen["me"] == 200


@pytest.mark.browser
def test_a_report_runs_on_its_own_origin_without_the_users_session(page, server, tenant,
                                                                   run_id):
    created = upload_report(tenant, run_id, hostile_entries(server))
    sign_in(page, server, tenant)
    session = next(c for c in page.context.cookies() if c["name"] == "redline_session")
    page.goto(f"{server.url}/runs/{run_id}")
    link = page.get_by_role("link", name="Open report")
    assert link.get_attribute("target") == "_blank"
    with page.context.expect_page() as opened:
        link.click()
    report_page = opened.value
    expect(report_page.locator("#out")).not_to_have_text("pending", timeout=15000)
    seen = json.loads(report_page.text_content("#out"))
    assert report_page.url.startswith(server.user_content.url + "/artifacts/" + created["id"])
    assert seen["ran"] is True  # the report works: its script ran
    assert seen["data"] == 3  # and read its own data file
    assert seen["storage"] == "kept"  # with localStorage, which Playwright's report needs
    assert seen["origin"] == server.user_content.url  # its own origin, not the dashboard's
    assert report_page.evaluate("getComputedStyle(document.querySelector('h1')).color") == \
        "rgb(187, 0, 0)"
    # The session cookie is sent to this port too (cookies ignore ports) but is HttpOnly, and
    # nothing here reads it: the same-origin /api/me is no endpoint at all.
    assert session["httpOnly"] and session["value"] not in seen["cookie"]
    assert seen["me"] == 404 and "email" not in seen["meBody"]
    # The dashboard's API is out of reach (the CSP's connect-src; without it, CORS).
    assert str(seen["dashboard"]).startswith("error:")
    assert tenant.email not in json.dumps(seen)
    # What ports do not separate: a cookie the dashboard's host made readable would be seen
    # here. Redline sets none (the session and CSRF cookies are HttpOnly); another host name
    # for user content (REDLINE_USER_CONTENT_URL) separates even those.
    assert "dashboard-secret" in seen["cookie"]


def test_an_entry_is_read_from_s3_with_ranged_gets_not_the_whole_archive(s3, tmp_path):  # noqa: F811
    import zipfile

    from redline.server.artifacts.blobs import BlobMissing, S3BlobStore

    store = S3BlobStore(s3.bucket, "redline", s3.endpoint, tmp_path)
    big = {f"data/{i}.bin": os.urandom(200_000) for i in range(20)}  # incompressible
    archive = small_zip({**ENTRIES, **big})
    store.put("proj_1/run_1/artifact_1", __import__("io").BytesIO(archive))
    fetched = []
    original = store.client.get_object

    def counting(**kwargs):
        fetched.append(kwargs.get("Range"))
        return original(**kwargs)

    store.client.get_object = counting
    with store.open_seekable("proj_1/run_1/artifact_1") as handle, \
            zipfile.ZipFile(handle) as opened_zip:
        assert opened_zip.read("data/report.json") == b'{"tests": 3}'
    assert fetched and all(r is not None for r in fetched)
    spans = [int(end) - int(start) + 1 for start, end in
             (r.removeprefix("bytes=").split("-") for r in fetched)]
    assert sum(spans) < len(archive)
    with pytest.raises(BlobMissing):
        store.open_seekable("proj_1/run_1/missing")
