"""Signing in and out, sessions, passwords and sign-in throttling (RELIABILITY.md 5)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select, update

from redline.server.kit.clock import utcnow
from redline.server.tables import sessions, users
from tests.support import live


def test_login_returns_a_personal_token_and_sets_the_session_cookie(tenant):
    response = httpx.post(f"{tenant.server.url}/api/auth/login",
                          json={"email": tenant.email, "password": live.PASSWORD})
    body = response.json()
    assert body["token"].startswith("rlu_") and body["user"]["email"] == tenant.email
    cookie = response.headers["set-cookie"]
    # the test server runs on plain HTTP (cookie_secure off); in production the cookie is
    # `__Host-session; Secure`, checked below on an app with the default settings
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie


def test_the_production_cookie_is_host_prefixed_and_secure(migrated_url, tmp_path, tenant):
    with live.LiveServer.start(migrated_url, tmp_path, cookie_secure=True) as srv:
        response = httpx.post(f"{srv.url}/api/auth/login",
                              json={"email": tenant.email, "password": live.PASSWORD})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-session=") and "Secure" in cookie


def test_each_login_is_a_new_session_and_logout_revokes_it(tenant):
    url = tenant.server.url
    first = httpx.post(f"{url}/api/auth/login", json={"email": tenant.email,
                                                      "password": live.PASSWORD}).json()
    second = httpx.post(f"{url}/api/auth/login", json={"email": tenant.email,
                                                       "password": live.PASSWORD}).json()
    assert first["token"] != second["token"]
    bearer = {"Authorization": f"Bearer {first['token']}"}
    assert httpx.post(f"{url}/api/auth/logout", headers=bearer).status_code == 204
    replay = httpx.get(f"{url}/api/me", headers=bearer)
    assert replay.status_code == 401
    assert httpx.get(f"{url}/api/me", headers={
        "Authorization": f"Bearer {second['token']}"}).status_code == 200


def test_cookie_requests_need_the_csrf_token_to_change_anything(tenant):
    url = tenant.server.url
    login = httpx.post(f"{url}/api/auth/login", json={"email": tenant.email,
                                                      "password": live.PASSWORD})
    cookies = {"redline_session": login.json()["token"]}
    with httpx.Client(base_url=url, cookies=cookies) as browser:
        assert browser.get("/api/me").status_code == 200  # reads need no token
        without = browser.post("/api/teams", json={"name": "csrf"})
        assert without.status_code == 403
        assert without.json()["error"]["details"]["reason"] == "csrf"
        cross = browser.post("/api/teams", json={"name": "csrf"}, headers={
            "X-CSRF-Token": login.json()["csrfToken"], "Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        ok = browser.post("/api/teams", json={"name": "csrf"},
                          headers={"X-CSRF-Token": login.json()["csrfToken"]})
        assert ok.status_code == 201


def test_api_keys_need_no_csrf_token(tenant):
    with tenant.as_key() as client:
        assert client.patch(f"/api/projects/{tenant.project_id}/settings",
                            json={}).status_code in (200, 403)


def test_passwords_are_argon2id_at_owasp_strength(server, tenant):
    with server.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)
                              .where(users.c.id == tenant.user_id)).scalar_one()
    assert stored.startswith("$argon2id$")
    params = dict(p.split("=") for p in stored.split("$")[3].split(","))
    assert int(params["m"]) >= 19456 and int(params["t"]) >= 2 and int(params["p"]) >= 1


def test_weaker_hashes_are_upgraded_at_the_next_login(server, tenant):
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(live.PASSWORD)
    with server.engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == tenant.user_id)
                     .values(password_hash=weak))
    live.login(server, tenant.email)
    with server.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)
                              .where(users.c.id == tenant.user_id)).scalar_one()
    assert "m=19456,t=2,p=1" in stored


def test_unknown_email_and_wrong_password_look_the_same(tenant):
    url = tenant.server.url
    wrong = httpx.post(f"{url}/api/auth/login", json={"email": tenant.email,
                                                      "password": "nope-nope"})
    unknown = httpx.post(f"{url}/api/auth/login", json={"email": "ghost@example.com",
                                                        "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json()["error"].items() if k != "requestId"}
    assert strip(wrong) == strip(unknown)


def test_idle_and_absolute_session_timeouts(server, tenant):
    url = server.url
    token = live.login(server, tenant.email)
    bearer = {"Authorization": f"Bearer {token}"}
    lookup = token[4:16]
    with server.engine.begin() as conn:  # unused for 8 days (idle limit: 7)
        conn.execute(update(sessions).where(sessions.c.lookup == lookup)
                     .values(last_seen_at=utcnow() - timedelta(days=8)))
    assert httpx.get(f"{url}/api/me", headers=bearer).json()["error"]["details"][
        "reason"] == "expired"
    token = live.login(server, tenant.email)
    bearer = {"Authorization": f"Bearer {token}"}
    with server.engine.begin() as conn:  # active, but past the absolute limit
        conn.execute(update(sessions).where(sessions.c.lookup == token[4:16])
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert httpx.get(f"{url}/api/me", headers=bearer).status_code == 401


def test_me_describes_the_credentials(tenant):
    with tenant.as_key() as client:
        me = client.get("/api/me").json()
    assert me["kind"] == "key" and me["projectId"] == tenant.project_id
    assert "project:admin" not in me["scopes"]
    with tenant.as_user() as client:
        me = client.get("/api/me").json()
        assert me["kind"] == "user" and me["teams"][0]["role"] == "owner"
        renamed = client.patch("/api/me", json={"name": "Jane"}).json()
    assert renamed["name"] == "Jane"


def test_a_password_change_needs_the_current_one_and_ends_the_other_sign_ins(tenant):
    """A stolen session alone cannot take the account over; once changed, every other
    session and personal token of the user ends, the one making the change goes on."""
    url = tenant.server.url
    other = httpx.post(f"{url}/api/auth/login",
                       json={"email": tenant.email, "password": live.PASSWORD}).json()["token"]
    with tenant.as_user() as client:
        missing = client.patch("/api/me", json={"password": "a new password"})
        wrong = client.patch("/api/me", json={"password": "a new password",
                                              "currentPassword": "not it at all"})
        assert missing.status_code == wrong.status_code == 400
        assert missing.json()["error"]["details"]["field"] == "currentPassword"
        assert wrong.json()["error"]["details"]["field"] == "currentPassword"
        assert httpx.get(f"{url}/api/me",
                         headers={"Authorization": f"Bearer {other}"}).status_code == 200
        changed = client.patch("/api/me", json={"password": "a new password",
                                                "currentPassword": live.PASSWORD})
        assert changed.status_code == 200, changed.text
        assert client.get("/api/me").status_code == 200  # the session that changed it
        renamed = client.patch("/api/me", json={"name": "Renamed"})  # no password: none asked
        assert renamed.status_code == 200
    assert httpx.get(f"{url}/api/me",
                     headers={"Authorization": f"Bearer {other}"}).status_code == 401
    with tenant.as_key() as client:  # API keys are not sign-ins: they go on
        assert client.get("/api/runs").status_code == 200
    old = httpx.post(f"{url}/api/auth/login", json={"email": tenant.email,
                                                   "password": live.PASSWORD})
    new = httpx.post(f"{url}/api/auth/login", json={"email": tenant.email,
                                                   "password": "a new password"})
    assert (old.status_code, new.status_code) == (401, 200)
