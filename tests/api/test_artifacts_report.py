"""An HTML report artifact (a ZIP of the report folder) opens in the browser: its entries are
served one by one under a signed path, sandboxed without `allow-same-origin`, so the report's
scripts run in an opaque origin and never act as the signed-in user (RELIABILITY.md section 3).
The browser tests skip without Chromium and fail under CI=true, like test_artifacts_browser."""

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


@pytest.fixture
def run_id(tenant) -> str:
    with tenant.as_key() as client:
        return client.post("/api/runs", json={"status": "running"}).json()["id"]


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
    """The dashboard's "Open report" link for the artifact, from the run page."""
    with signed_in(server, tenant) as client:
        html = client.get(f"/runs/{run_id}").text
    match = re.search(r'href="(/artifacts/' + artifact_id + r'/report/[^"]+)"[^>]*>Open report<',
                      html)
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
        return client.request(method, f"{server.url}{base}/{name}")


def test_the_run_page_offers_open_report_beside_the_download(server, tenant, run_id):
    created = upload_report(tenant, run_id)
    link = report_link(server, tenant, run_id, created["id"])
    assert re.fullmatch(r"/artifacts/artifact_\w+/report/\d+\.[\w-]+/index\.html", link)
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
    assert csp.startswith("sandbox allow-scripts allow-popups")
    assert "allow-same-origin" not in csp and "default-src 'self'" in csp
    assert response.headers["referrer-policy"] == "no-referrer"
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
    base = opened[1].rsplit("/index.html", 1)[0]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
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
        response = httpx.get(f"{server.url}{path}", timeout=30)
        assert response.status_code == 403, (why, response.text)
        error_of(response, "AUTH_FORBIDDEN", 403)
    past = int(time.time()) - 5
    old = signing.report_token(settings.resolved_secret_key, created["id"], tenant.project_id,
                               past)
    response = httpx.get(f"{server.url}{prefix}/{old}/index.html", timeout=30)
    assert error_of(response, "AUTH_FORBIDDEN", 403)["details"]["reason"] == "link_expired"
    posted = httpx.post(f"{server.url}{link}", timeout=30)
    error_of(posted, "AUTH_FORBIDDEN", 403)


def test_another_projects_artifact_is_refused(server, tenant, other_tenant, opened):
    _, link = opened
    with other_tenant.as_key() as client:
        theirs_run = client.post("/api/runs", json={"status": "running"}).json()["id"]
    theirs = upload_report(other_tenant, theirs_run)
    token = link.rsplit("/", 2)[1]
    response = httpx.get(f"{server.url}/artifacts/{theirs['id']}/report/{token}/index.html",
                         timeout=30)
    error_of(response, "AUTH_FORBIDDEN", 403)


def test_only_a_report_opens_this_way(server, tenant, run_id):
    with tenant.as_key() as client:
        trace = upload(client, run_id, "trace", small_zip({"index.html": b"<p>x</p>"}),
                       "trace.zip").json()
    token = signing.report_token(server.app.state.settings.resolved_secret_key, trace["id"],
                                 tenant.project_id, int(time.time()) + 60)
    response = httpx.get(f"{server.url}/artifacts/{trace['id']}/report/{token}/index.html",
                         timeout=30)
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
def test_a_report_runs_its_scripts_in_an_opaque_origin(page, server, tenant, run_id):
    created = upload_report(tenant, run_id)
    sign_in(page, server, tenant)
    page.goto(f"{server.url}/runs/{run_id}")
    link = page.get_by_role("link", name="Open report")
    assert link.get_attribute("target") == "_blank"
    with page.context.expect_page() as opened:
        link.click()
    report_page = opened.value
    expect(report_page.locator("#out")).not_to_have_text("pending", timeout=15000)
    seen = json.loads(report_page.text_content("#out"))
    assert seen["ran"] is True  # the report works: its script ran
    assert seen["data"] == 3  # and read its own data file
    assert report_page.evaluate("getComputedStyle(document.querySelector('h1')).color") == \
        "rgb(187, 0, 0)"
    assert "dashboard-secret" not in str(seen["cookie"])
    assert seen["cookie"].startswith("error:") or seen["cookie"] == ""
    assert seen["origin"] == "null"
    assert seen["me"] != 200 and "email" not in str(seen.get("meBody", ""))
    assert f"/artifacts/{created['id']}/report/" in report_page.url


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
