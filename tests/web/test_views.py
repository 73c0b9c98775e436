"""The dashboard's views on a real server: pages, headers, CSRF, roles, query counts."""

from __future__ import annotations

import contextlib
import re
import threading

import httpx
import pytest
from sqlalchemy import event

from redline.server.web.core import CSP
from tests.support import live
from tests.web.conftest import REPORTS, csrf_of, import_report


def _ids(html: str, prefix: str) -> list[str]:
    return list(dict.fromkeys(re.findall(rf'href="/{prefix}/([a-z]+_[0-9A-Z]+)', html)))


def _main_pages(client, tenant, run_id: str) -> dict[str, str]:
    run = client.get(f"/runs/{run_id}").text
    test_id = _ids(run, "tests")[0]
    case_id = _ids(run, "cases")[0]
    base = f"/projects/{tenant.project_id}"
    return {"runs": f"{base}/runs", "run": f"/runs/{run_id}", "suites": f"/runs/{run_id}/suites",
            "test": f"/tests/{test_id}",
            "case": f"/cases/{case_id}", "flaky": f"{base}/flaky", "errors": f"{base}/errors",
            "trends": f"{base}/trends", "members": f"/teams/{tenant.team_id}/members"}


@contextlib.contextmanager
def counted_queries(engine):
    """Statements the server sends to the database while the block runs."""
    statements: list[str] = []
    lock = threading.Lock()

    def count(conn, cursor, statement, parameters, context, executemany):
        with lock:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


# -- signing in ---------------------------------------------------------------------------------

def test_pages_need_a_session_and_send_the_browser_to_sign_in(server, tenant):
    with httpx.Client(base_url=server.url) as client:
        response = client.get(f"/projects/{tenant.project_id}/runs")
    assert response.status_code == 303
    assert response.headers["location"] == (f"/login?next=/projects/{tenant.project_id}/runs")


def test_sign_in_sets_the_session_cookie_and_lands_on_the_runs(tenant, browser_for):
    client = browser_for()
    response = client.sign_in(tenant.email)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("redline_session=rlu_")  # __Host-session with cookie_secure
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie
    home = client.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == f"/projects/{tenant.project_id}/runs"
    assert client.get(home.headers["location"]).status_code == 200


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(tenant, browser_for):
    client = browser_for()
    wrong = client.sign_in(tenant.email, "not the password")
    unknown = client.sign_in("nobody-here@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Email or password is wrong" in wrong.text and "Email or password is wrong" in \
        unknown.text
    assert "set-cookie" not in wrong.headers or "session" not in wrong.headers["set-cookie"]


def test_sign_in_without_the_form_token_is_refused(server, tenant):
    with httpx.Client(base_url=server.url) as client:
        client.get("/login")
        response = client.post("/login", data={"email": tenant.email,
                                                "password": live.PASSWORD})
    assert response.status_code == 403
    assert "redline_session" not in response.headers.get("set-cookie", "")


def test_sign_in_is_throttled_per_account(start_server, migrated_url):
    srv = start_server(rate_limit_enabled=True, login_max_failures=3)
    tenant = live.make_tenant(srv)
    client = httpx.Client(base_url=srv.url)
    try:
        token = csrf_of(client.get("/login").text)
        statuses = [client.post("/login", data={"email": tenant.email, "password": "wrong!",
                                                "csrf": token}).status_code
                    for _ in range(4)]
        assert statuses[:2] == [401, 401] and statuses[-1] == 429
        locked = client.post("/login", data={"email": tenant.email, "password": live.PASSWORD,
                                             "csrf": token})
        assert locked.status_code == 429 and "Too many attempts" in locked.text
    finally:
        client.close()


def test_sign_out_revokes_the_session(tenant, browser_for):
    client = browser_for()
    client.sign_in(tenant.email)
    cookie = client.http.cookies.get("redline_session")
    runs = f"/projects/{tenant.project_id}/runs"
    response = client.post_form("/logout", {}, csrf_from=runs)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    with httpx.Client(base_url=tenant.server.url, cookies={"redline_session": cookie}) as replay:
        assert replay.get(runs).status_code == 303  # the old cookie no longer signs in
        assert replay.get("/api/me").status_code == 401


def test_the_next_parameter_never_leaves_the_site(tenant, browser_for):
    client = browser_for()
    page = client.get("/login")
    response = client.http.post("/login", data={
        "email": tenant.email, "password": live.PASSWORD, "csrf": csrf_of(page.text),
        "next": "//evil.example.com/x"})
    assert response.headers["location"] == "/"


# -- every page, headers, content ---------------------------------------------------------------

def test_every_main_page_renders_with_the_strict_headers(owner, tenant, imported):
    pages = _main_pages(owner, tenant, imported["id"])
    pages["settings"] = f"/projects/{tenant.project_id}/settings"
    pages["login"] = "/login"
    anonymous = httpx.Client(base_url=tenant.server.url)
    for name, path in pages.items():
        response = (anonymous if name == "login" else owner).get(path)
        assert response.status_code == 200, (name, response.text[:500])
        headers = response.headers
        assert headers["content-security-policy"] == CSP, name
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"]
        assert headers["strict-transport-security"].startswith("max-age=")
        html = response.text
        # no inline script or style: every <script> has a src, no style attribute or element
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), name
        assert not re.search(r"<style\b|\sstyle=", html), name
        assert not re.search(r"\son[a-z]+=", html), name
    anonymous.close()


def test_the_run_page_shows_failures_grouped_by_error_and_the_comparison(owner, imported):
    html = owner.get(f"/runs/{imported['id']}").text
    assert "Failures" in html and "expect(received).toBe(expected)" in html
    assert "Compared with the previous run on main" in html
    assert imported["failedTests"] > 0
    first_group = html.index('class="group card')
    assert first_group < html.index('id="tests"')  # failures come before the full list
    assert "Suites" in html


def test_the_test_page_shows_error_steps_output_and_history(owner, imported):
    run = owner.get(f"/runs/{imported['id']}").text
    pages = [owner.get(f"/tests/{test_id}").text for test_id in _ids(run, "tests")]
    assert any("Expected" in page and "Actual" in page and "Stack trace" in page
               for page in pages)
    assert any('class="steps"' in page for page in pages)
    assert any("stdout" in page for page in pages)
    assert all("Recent outcomes" in page for page in pages)


def test_user_text_is_escaped(tenant, owner):
    with tenant.as_key() as api:
        run = api.post("/api/runs", json={"branch": "<img src=x onerror=alert(1)>",
                                          "runTitle": "<script>alert(1)</script>",
                                          "status": "running"}).json()
        api.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": [
            {"title": "<b>bold</b>", "fullTitle": "<b>bold</b>", "status": "failed",
             "duration": 1, "error": {"message": "<script>x()</script>"}}]})
        api.patch(f"/api/runs/{run['id']}", json={"status": "failed"})
    for path in (f"/projects/{tenant.project_id}/runs", f"/runs/{run['id']}"):
        html = owner.get(path).text
        assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_javascript_ci_link_is_not_a_link(tenant, owner):
    import_report(tenant, ciBuildUrl="javascript:alert(1)")
    html = owner.get(f"/projects/{tenant.project_id}/runs").text
    assert "javascript:" not in html


def test_another_tenants_run_is_not_found(owner, other_tenant):
    theirs = import_report(other_tenant)
    response = owner.get(f"/runs/{theirs['id']}")
    assert response.status_code == 404 and "NOT_FOUND" in response.text
    assert owner.get(f"/projects/{other_tenant.project_id}/runs").status_code == 404


def test_runs_filters_live_in_the_url(owner, tenant):
    import_report(tenant, branch="feature/login")
    import_report(tenant, REPORTS / "junit" / "pytest-xunit1.xml", branch="main")
    base = f"/projects/{tenant.project_id}/runs"
    html = owner.get(base, params={"branch": "feature/login"}).text
    assert html.count('class="row-') == 1
    html = owner.get(base, params={"status": "passed"}).text
    assert 'class="row-failed' not in html
    assert owner.get(base, params={"from": "2000-01-01", "to": "2000-01-02"}).text.count(
        'class="row-') == 0
    assert owner.get(base, params={"from": "2000-01-01"}).text.count('class="row-') == 2
    assert owner.get(base, params={"from": "yesterday"}).status_code == 400
    rows = owner.get(base, params={"fragment": "rows"})
    assert rows.status_code == 200 and rows.text.lstrip().startswith("<tr")


# -- forms: CSRF, roles -------------------------------------------------------------------------

def _case_of(client, run_id: str) -> str:
    return _ids(client.get(f"/runs/{run_id}").text, "cases")[0]


def _quarantined(tenant, case_id: str) -> bool:
    with tenant.as_user() as api:
        return api.get(f"/api/test-cases/{case_id}").json()["isQuarantined"]


def test_a_form_post_without_the_csrf_token_is_refused(owner, tenant, imported, browser_for):
    case_id = _case_of(owner, imported["id"])
    path = f"/cases/{case_id}/quarantine"
    refused = owner.http.post(path, data={"action": "quarantine"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    # another session's token
    other = browser_for()
    other.sign_in(tenant.email)
    theirs = csrf_of(other.get(f"/cases/{case_id}").text)
    assert owner.http.post(path, data={"action": "quarantine", "csrf": theirs}
                           ).status_code == 403
    # the right token, but sent cross-site
    mine = csrf_of(owner.get(f"/cases/{case_id}").text)
    assert owner.http.post(path, data={"action": "quarantine", "csrf": mine},
                           headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert not _quarantined(tenant, case_id)
    accepted = owner.http.post(path, data={"action": "quarantine", "csrf": mine,
                                           "reason": "races"})
    assert accepted.status_code == 303
    assert _quarantined(tenant, case_id)
    page = owner.get(f"/cases/{case_id}").text
    assert "Quarantined (races)" in page and "Release from quarantine" in page


def test_no_get_changes_anything(owner, tenant, imported):
    case_id = _case_of(owner, imported["id"])
    assert owner.get(f"/cases/{case_id}/quarantine").status_code in (404, 405)
    assert not _quarantined(tenant, case_id)


def _write_forms(html: str) -> list[str]:
    return [action for action in re.findall(r'<form method="post" action="([^"]+)"', html)
            if action != "/logout"]


def test_a_viewer_sees_no_write_controls(tenant, imported, browser_for):
    live.add_member(tenant, "viewer", name=f"viewer{tenant.user_id[-6:].lower()}")
    viewer = browser_for()
    email = f"viewer{tenant.user_id[-6:].lower()}@example.com"
    assert viewer.sign_in(email).status_code == 303
    for name, path in _main_pages(viewer, tenant, imported["id"]).items():
        html = viewer.get(path).text
        assert _write_forms(html) == [], name
        assert "/settings" not in html, name
        assert "Quarantine selected" not in html and "Create key" not in html
    settings = viewer.get(f"/projects/{tenant.project_id}/settings")
    assert settings.status_code == 403
    # and the service refuses what the page does not offer
    case_id = _case_of(viewer, imported["id"])
    token = csrf_of(viewer.get(f"/cases/{case_id}").text)
    refused = viewer.http.post(f"/cases/{case_id}/quarantine",
                               data={"action": "quarantine", "csrf": token})
    assert refused.status_code == 403 and not _quarantined(tenant, case_id)


def test_a_member_quarantines_but_has_no_settings(tenant, imported, browser_for):
    name = f"member{tenant.user_id[-6:].lower()}"
    live.add_member(tenant, "member", name=name)
    member = browser_for()
    member.sign_in(f"{name}@example.com")
    case_id = _case_of(member, imported["id"])
    html = member.get(f"/cases/{case_id}").text
    assert _write_forms(html) == [f"/cases/{case_id}/quarantine"]
    assert f"/projects/{tenant.project_id}/settings" not in html


def test_bulk_quarantine_from_the_flaky_page(owner, tenant, imported):
    page = f"/projects/{tenant.project_id}/flaky"
    html = owner.get(page).text
    case_ids = re.findall(r'name="test_id" value="([^"]+)"', html)
    assert case_ids, "the report has flaky tests"
    response = owner.post_form(page, {"test_id": case_ids, "action": "quarantine",
                                      "reason": "triage"}, csrf_from=page)
    assert response.status_code == 303
    assert all(_quarantined(tenant, case_id) for case_id in case_ids)
    html = owner.get(page, params={"quarantined": "no"}).text
    assert not re.findall(r'name="test_id" value="([^"]+)"', html)


def test_an_admin_creates_a_key_and_sees_it_once(owner, tenant):
    page = f"/projects/{tenant.project_id}/settings"
    created = owner.post_form(f"/projects/{tenant.project_id}/keys",
                              {"name": "Nightly", "scopes": ["runs:read", "runs:write"]},
                              csrf_from=page)
    assert created.status_code == 201
    key = re.search(r'<code id="new-key">(rl_live_[^<]+)</code>', created.text).group(1)
    with tenant.server.client(**{"X-API-Key": key}) as api:
        assert api.get("/api/runs").status_code == 200
    again = owner.get(page).text
    assert key not in again and "rl_****" in again
    key_id = re.search(r'/keys/(key_[0-9A-Z]+)/deactivate"', again)
    deactivated = owner.post_form(f"/projects/{tenant.project_id}/keys/"
                                  f"{re.findall(r'/keys/(key_[0-9A-Z]+)/deactivate', again)[-1]}"
                                  "/deactivate", {}, csrf_from=page)
    assert key_id and deactivated.status_code == 303


def test_settings_form_saves_through_the_service(owner, tenant):
    page = f"/projects/{tenant.project_id}/settings"
    response = owner.post_form(page, {"retention": "30", "threshold": "0.5"}, csrf_from=page)
    assert response.status_code == 303
    with tenant.as_user() as api:
        settings = api.get(f"/api/projects/{tenant.project_id}/settings").json()
    assert settings["dataRetentionDays"] == 30 and settings["flakinessThreshold"] == 0.5
    assert settings["autoQuarantineEnabled"] is False


# -- invitations --------------------------------------------------------------------------------

def test_an_invitation_link_lets_a_new_member_set_a_password_and_join(owner, tenant,
                                                                      browser_for):
    members = f"/teams/{tenant.team_id}/members"
    email = f"new{tenant.user_id[-6:].lower()}@example.com"
    created = owner.post_form(f"/teams/{tenant.team_id}/invitations",
                              {"email": email, "role": "viewer"}, csrf_from=members)
    assert created.status_code == 201
    link = re.search(r'<code id="invite-link">([^<]+)</code>', created.text).group(1)
    path = link[link.index("/invitations/"):].replace("&amp;", "&")
    newcomer = browser_for()
    form = newcomer.get(path)
    assert form.status_code == 200 and "Choose a password" in form.text
    token = re.search(r'name="token" value="([^"]+)"', form.text).group(1)
    invitation_path = path.split("?")[0]
    bad = newcomer.http.post(invitation_path, data={"csrf": csrf_of(form.text),
                                                    "token": token + "x",
                                                    "password": "long enough pw"})
    assert bad.status_code == 404 and "not valid" in bad.text
    joined = newcomer.http.post(invitation_path, data={"csrf": csrf_of(form.text),
                                                       "token": token, "name": "New Person",
                                                       "password": "long enough pw"})
    assert joined.status_code == 303, joined.text
    assert newcomer.get(f"/projects/{tenant.project_id}/runs").status_code == 200
    again = newcomer.http.post(invitation_path, data={"csrf": csrf_of(form.text),
                                                      "token": token,
                                                      "password": "long enough pw"})
    assert again.status_code == 409
    assert "New Person" in owner.get(members).text


# -- no query per row ---------------------------------------------------------------------------

def test_the_runs_list_issues_a_constant_number_of_queries(owner, tenant):
    path = f"/projects/{tenant.project_id}/runs"
    import_report(tenant)
    owner.get(path)  # warm up (last-seen bookkeeping happens at most once a minute)
    with counted_queries(tenant.server.engine) as few:
        assert owner.get(path).status_code == 200
    for _ in range(6):
        import_report(tenant, REPORTS / "junit" / "pytest-xunit1.xml")
    with counted_queries(tenant.server.engine) as many:
        html = owner.get(path).text
    assert html.count('class="row-') == 7
    assert len(many) == len(few) <= 12, many


def test_a_run_with_many_results_is_paginated_with_constant_queries(owner, tenant):
    def run_with(count: int) -> str:
        with tenant.as_key() as api:
            run = api.post("/api/runs", json={"branch": "big", "status": "running"}).json()
            results = [{"title": f"t{i}", "fullTitle": f"suite > t{i}", "filePath": "a.spec.ts",
                        "status": "failed" if i % 7 == 0 else "passed", "duration": i,
                        "suitePath": ["suite", f"group{i % 5}"],
                        **({"error": {"message": f"boom {i % 3}"}} if i % 7 == 0 else {})}
                       for i in range(count)]
            for start in range(0, count, 1000):
                assert api.post(f"/api/runs/{run['id']}/tests/batch",
                                json={"tests": results[start:start + 1000]}
                                ).status_code == 201
            api.patch(f"/api/runs/{run['id']}", json={"status": "failed"})
        return run["id"]

    run_with(10)  # a previous run on the branch: both pages below compare with one
    small, big = run_with(150), run_with(1200)
    owner.get(f"/runs/{small}")
    with counted_queries(tenant.server.engine) as few:
        assert owner.get(f"/runs/{small}").status_code == 200
    with counted_queries(tenant.server.engine) as many:
        html = owner.get(f"/runs/{big}").text
    assert len(many) == len(few) <= 45, many
    assert html.count('<tr><td><span class="badge') == 100  # one page of the test list
    assert "Next →" in html
    second = owner.get(f"/runs/{big}", params={"offset": 100}).text
    assert "Showing 101–200 of 1,200" in second


@pytest.mark.parametrize("path", ["/static/redline.css", "/static/redline.js"])
def test_static_files_are_served_with_a_validator(server, path):
    with httpx.Client(base_url=server.url) as client:
        first = client.get(path)
        assert first.status_code == 200 and first.headers["etag"]
        again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        assert client.get("/static/..%2fviews.py").status_code == 404


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff"
       b"\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")


def test_a_tests_screenshot_shows_inline_from_this_origin(owner, tenant, imported):
    run = owner.get(f"/runs/{imported['id']}").text
    test_id = _ids(run, "tests")[0]
    with tenant.as_key() as api:
        uploaded = api.post("/api/upload", data={"type": "screenshot", "runId": imported["id"],
                                                 "testId": test_id},
                            files={"file": ("failed-1.png", PNG, "image/png")})
    assert uploaded.status_code == 201, uploaded.text
    html = owner.get(f"/tests/{test_id}").text
    src = re.search(r'<img src="(/artifacts/[^"]+)"', html).group(1).replace("&amp;", "&")
    image = owner.get(src)
    assert image.status_code == 200 and image.content == PNG
    assert "Download" in html


def test_an_admin_adds_a_webhook_and_reads_its_delivery_log(start_server):
    srv = start_server(rate_limit_enabled=False, webhook_allow_nets="127.0.0.0/8")
    tenant = live.make_tenant(srv)
    client = httpx.Client(base_url=srv.url)
    try:
        token = csrf_of(client.get("/login").text)
        client.post("/login", data={"email": tenant.email, "password": live.PASSWORD,
                                    "csrf": token})
        settings = f"/projects/{tenant.project_id}/settings"
        created = client.post(f"/projects/{tenant.project_id}/webhooks", data={
            "csrf": csrf_of(client.get(settings).text), "url": "http://127.0.0.1:9/hook",
            "event": ["run.failed", "test.flaky"]})
        assert created.status_code == 201, created.text
        assert re.search(r'<code id="new-secret">whsec_', created.text)
        page = client.get(settings).text
        assert "whsec_" not in page and "http://127.0.0.1:9/hook" in page
        log = re.search(r'href="(/projects/[^"]+/webhooks/wh_[0-9A-Z]+)"', page).group(1)
        assert "No deliveries yet" in client.get(log).text
        pinged = client.post(f"{log}/ping", data={"csrf": csrf_of(client.get(log).text)})
        assert pinged.status_code == 303
        assert "No deliveries yet" not in client.get(log).text
    finally:
        client.close()


def test_an_error_without_expected_and_actual_shows_no_empty_diff(tenant, owner):
    """A result's error without `expected`/`actual` (most errors) has no Expected/Actual bars;
    one with them shows them."""
    with tenant.as_key() as api:
        run = api.post("/api/runs", json={"branch": "main", "status": "running"}).json()
        api.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": [
            {"title": "plain", "fullTitle": "plain", "status": "failed", "duration": 1,
             "error": {"message": "boom"}},
            {"title": "diff", "fullTitle": "diff", "status": "failed", "duration": 1,
             "error": {"message": "mismatch", "expected": "1", "actual": "2"}}]})
        tests = api.get("/api/tests", params={"runId": run["id"]}).json()["data"]
    pages = {t["title"]: owner.get(f"/tests/{t['id']}").text for t in tests}
    assert 'class="diff"' not in pages["plain"] and "Expected" not in pages["plain"]
    assert 'class="diff"' in pages["diff"] and '<pre class="expected">1</pre>' in pages["diff"]
