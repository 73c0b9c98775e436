"""Project API keys (reference "API Keys", RELIABILITY.md section 4)."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from sqlalchemy import update

from redline.server.kit.clock import utcnow
from redline.server.tables import api_keys

KEY_SHAPE = re.compile(r"^rl_live_[A-Za-z0-9]+$")


def test_the_whole_key_is_shown_once_then_masked(tenant):
    with tenant.as_user() as client:
        created = client.post("/api/api-keys", json={"projectId": tenant.project_id,
                                                     "name": "GitLab CI",
                                                     "expiresAt": "2099-12-31T23:59:59Z"})
        listed = client.get("/api/api-keys", params={"projectId": tenant.project_id}).json()
    assert created.status_code == 201
    body = created.json()
    assert KEY_SHAPE.match(body["key"])
    assert body["isActive"] is True and body["expiresAt"] == "2099-12-31T23:59:59.000Z"
    assert body["scopes"] == ["artifacts:read", "artifacts:write", "flakiness:write",
                              "runs:read", "runs:write"]
    entry = next(k for k in listed["data"] if k["id"] == body["id"])
    assert "key" not in entry
    assert entry["maskedKey"] == f"rl_****...****{body['key'][-4:]}"
    assert body["key"] not in str(listed)


def test_the_plaintext_key_is_nowhere_in_the_database(server, tenant):
    with server.engine.connect() as conn:
        dump = "\n".join(str(tuple(row)) for table in ("api_keys", "sessions", "users")
                         for row in conn.exec_driver_sql(f"SELECT * FROM {table}"))
    assert tenant.key not in dump
    assert tenant.key[8:20] in dump  # only the lookup part is stored in clear


def test_a_mangled_key_fails_its_checksum_before_any_query(tenant):
    mangled = tenant.key[:-1] + ("A" if tenant.key[-1] != "A" else "B")
    with tenant.as_key(mangled) as client:
        response = client.get(f"/api/projects/{tenant.project_id}")
    assert response.status_code == 401
    assert response.json()["error"]["details"]["reason"] == "malformed"


def test_a_known_lookup_with_a_wrong_secret_is_refused(tenant):
    from redline.server.kit import tokens

    forged_body = tenant.key[: 8 + 12] + "x" * 32
    forged = forged_body + tokens._checksum(forged_body)
    with tenant.as_key(forged) as client:
        response = client.get(f"/api/projects/{tenant.project_id}")
    assert response.status_code == 401
    assert response.json()["error"]["details"]["reason"] == "unknown"


def test_deactivation_takes_effect_on_the_next_request(tenant):
    with tenant.as_key() as ci, tenant.as_user() as owner:
        assert ci.get(f"/api/projects/{tenant.project_id}").status_code == 200
        patched = owner.patch(f"/api/api-keys/{tenant.key_id}", json={"isActive": False})
        assert patched.json()["isActive"] is False
        refused = ci.get(f"/api/projects/{tenant.project_id}")
        assert refused.status_code == 401
        assert refused.json()["error"]["details"]["reason"] == "inactive"
        owner.patch(f"/api/api-keys/{tenant.key_id}", json={"isActive": True})
        assert ci.get(f"/api/projects/{tenant.project_id}").status_code == 200


def test_an_expired_key_is_refused(server, tenant):
    with server.engine.begin() as conn:
        conn.execute(update(api_keys).where(api_keys.c.id == tenant.key_id)
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    with tenant.as_key() as client:
        response = client.get(f"/api/projects/{tenant.project_id}")
    assert response.json()["error"]["details"]["reason"] == "expired"


def test_a_deleted_key_is_refused(tenant):
    with tenant.as_user() as owner:
        assert owner.delete(f"/api/api-keys/{tenant.key_id}").status_code == 200
    with tenant.as_key() as client:
        assert client.get(f"/api/projects/{tenant.project_id}").status_code == 401


def test_expiry_in_the_past_is_refused(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/api-keys", json={"projectId": tenant.project_id,
                                                      "name": "x",
                                                      "expiresAt": "2001-01-01T00:00:00Z"})
    assert response.json()["error"]["details"]["reason"] == "in_the_past"


def test_a_key_in_the_url_is_refused(tenant):
    with tenant.server.client() as client:
        response = client.get(f"/api/projects/{tenant.project_id}",
                              params={"api_key": tenant.key})
    assert response.status_code == 401
    assert response.json()["error"]["details"]["reason"] == "credential_in_url"


def test_last_used_is_recorded(tenant):
    """At most once a minute per key, by a thread of its own: it lands moments after the
    response of a read (which runs on the event loop on SQLite, see test_request_path.py)."""
    import time

    with tenant.as_key() as client:
        client.get(f"/api/projects/{tenant.project_id}")
    deadline = time.monotonic() + 5
    with tenant.as_user() as owner:
        while True:
            keys = owner.get("/api/api-keys", params={"projectId": tenant.project_id}).json()
            if next(k for k in keys["data"] if k["id"] == tenant.key_id)["lastUsedAt"]:
                break
            assert time.monotonic() < deadline, "lastUsedAt was not recorded"
            time.sleep(0.05)


def test_a_key_sees_only_its_project_and_a_viewer_key_cannot_write(tenant):
    from tests.support import live

    token, _ = live.add_member(tenant, "viewer")
    with tenant.server.client(Authorization=f"Bearer {token}") as viewer:
        created = viewer.post("/api/api-keys", json={"projectId": tenant.project_id,
                                                     "name": "v"})
    assert created.status_code == 403  # viewers cannot make keys at all
    with tenant.as_user() as owner:
        other = owner.post("/api/projects", json={"name": "other",
                                                  "teamId": tenant.team_id}).json()
    with tenant.as_key() as client:
        assert client.get(f"/api/projects/{other['id']}").status_code == 404
        listed = client.get("/api/projects", params={"teamId": tenant.team_id}).json()
    assert [p["id"] for p in listed["data"]] == [tenant.project_id]


def test_keys_never_reach_the_logs(tenant, caplog):
    caplog.set_level(logging.DEBUG)
    with tenant.as_key() as client:
        client.get(f"/api/projects/{tenant.project_id}")
        client.get("/api/nowhere")
    assert tenant.key not in caplog.text
