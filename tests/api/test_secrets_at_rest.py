"""Secrets at rest (RELIABILITY.md section 12): after one of every kind of secret is made, with
and without an Idempotency-Key, the database (SQLite: its files; PostgreSQL: every table)
holds none of them in plaintext, and a replay still answers what the first response did."""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path

import httpx
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from redline.server.kit.secrets import SecretBox, SecretError
from tests.support import live

HOOK_URL = "https://93.184.216.34/hook"


def _database_text(server) -> bytes:
    """Everything the database holds, as bytes to search."""
    engine = server.engine
    url = make_url(str(engine.url))
    if url.get_backend_name() == "sqlite":
        with engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(FULL)"))
        path = Path(url.database)
        # Read by another process: a close() of the file in this one would drop the POSIX
        # locks the server's SQLite connections hold on it (and corrupt the database).
        files = [str(p) for p in path.parent.glob(path.name + "*")]
        return subprocess.run(["cat", *files], capture_output=True, check=True).stdout
    chunks = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for (row,) in conn.execute(text(f'SELECT t::text FROM "{table}" t')):
                chunks.append(row.encode())
    return b"\n".join(chunks)


def _make_every_secret(server, tenant: live.Tenant, idempotency: bool) -> tuple[list[str], list]:
    """(secrets made, (path, json, first response) of those sent with a key, to replay)."""
    made: list[str] = []
    sent: list = []
    with tenant.as_user() as client:
        def post(path: str, body: dict) -> httpx.Response:
            headers = {"Idempotency-Key": secrets.token_hex(8)} if idempotency else {}
            response = client.post(path, json=body, headers=headers)
            assert response.status_code in (200, 201, 202), response.text
            if idempotency:
                sent.append((path, body, headers, response))
            return response

        key = post("/api/api-keys", {"projectId": tenant.project_id, "name": "scan"})
        made.append(key.json()["key"])
        hook = post("/api/webhooks", {"projectId": tenant.project_id, "url": HOOK_URL,
                                      "events": ["run.completed"]})
        made.append(hook.json()["secret"])
        own_secret = "whsec_" + __import__("base64").b64encode(secrets.token_bytes(32)).decode()
        post("/api/webhooks", {"projectId": tenant.project_id, "url": HOOK_URL,
                               "events": ["run.completed"], "secret": own_secret})
        made.append(own_secret)
        updated_secret = "whsec_" + __import__("base64").b64encode(
            secrets.token_bytes(32)).decode()
        patched = client.patch(f"/api/webhooks/{hook.json()['id']}",
                               json={"secret": updated_secret})
        assert patched.status_code == 200, patched.text
        made.append(updated_secret)
        invite = post("/api/team-members", {"teamId": tenant.team_id, "role": "member",
                                            "email": f"scan{secrets.token_hex(4)}@example.com"})
        made.append(invite.json()["acceptToken"])
        accepted = httpx.post(f"{server.url}/api/invitations/{invite.json()['id']}/accept",
                              json={"token": invite.json()["acceptToken"],
                                    "password": live.PASSWORD})
        assert accepted.status_code == 201, accepted.text
        made.append(accepted.json()["token"])
        plan_secret = "plan-secret-" + secrets.token_hex(8)
        plan = post("/api/plans", {"projectId": tenant.project_id, "name": "scan",
                                   "command": ["true"], "env": {"TOKEN": {
                                       "value": plan_secret, "secret": True}}})
        made.append(plan_secret)
        run_secret = "run-secret-" + secrets.token_hex(8)
        post(f"/api/plans/{plan.json()['id']}/runs",
             {"env": {"OVERRIDE": {"value": run_secret, "secret": True}}})
        made.append(run_secret)
        runner = post("/api/runner-tokens", {"teamId": tenant.team_id, "name": "scan"})
        made.append(runner.json()["token"])
    login = httpx.post(f"{server.url}/api/auth/login",
                       json={"email": tenant.email, "password": live.PASSWORD},
                       headers={"Idempotency-Key": secrets.token_hex(8)})
    made.append(login.json()["token"])
    return made, sent


def test_no_secret_is_kept_in_plaintext_and_replays_still_answer_the_first_response(server):
    tenant = live.make_tenant(server)
    made, _ = _make_every_secret(server, tenant, idempotency=False)
    made_with_key, sent = _make_every_secret(server, tenant, idempotency=True)
    stored = _database_text(server)
    found = [s for s in made + made_with_key + [tenant.key, tenant.token]
             if s.encode() in stored]
    assert found == []
    assert len(sent) >= 4
    with tenant.as_user() as client:
        for path, body, headers, first in sent:
            replay = client.post(path, json=body, headers=headers)
            assert replay.headers.get("idempotent-replayed") == "true"
            assert (replay.status_code, replay.content) == (first.status_code, first.content)


def test_sign_in_ignores_an_idempotency_key(server, tenant):
    """A replayed sign-in would hand its token to whoever holds the key: each sign-in with the
    same key is a new one, with a token of its own."""
    headers = {"Idempotency-Key": "login-" + secrets.token_hex(8)}
    body = {"email": tenant.email, "password": live.PASSWORD}
    first = httpx.post(f"{server.url}/api/auth/login", json=body, headers=headers)
    second = httpx.post(f"{server.url}/api/auth/login", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert "idempotent-replayed" not in second.headers
    assert first.json()["token"] != second.json()["token"]


def test_secret_box_round_trips_and_refuses_another_key_or_a_changed_byte():
    box = SecretBox(b"one key")
    sealed = box.seal("whsec_abc")
    assert sealed.startswith("rlsb1.") and "whsec_abc" not in sealed
    assert box.open(sealed) == "whsec_abc"
    assert box.open(box.seal(b"\x00bytes")) == b"\x00bytes"
    assert box.seal("same") != box.seal("same")  # a fresh nonce each time
    assert box.open_text("whsec_legacy_plaintext") == "whsec_legacy_plaintext"
    assert box.open_bytes(b'{"legacy": true}') == b'{"legacy": true}'
    # A changed byte of the ciphertext (changed in the bytes, not in a base64 character
    # whose low bits the decoder may ignore).
    raw = bytearray(base64.urlsafe_b64decode(sealed.removeprefix("rlsb1.")))
    raw[-5] ^= 0x01
    changed = "rlsb1." + base64.urlsafe_b64encode(bytes(raw)).decode()
    for bad in (SecretBox(b"another key").seal("whsec_abc"), changed):
        try:
            box.open(bad)
        except SecretError:
            continue
        raise AssertionError("opened a value it should refuse")


def test_legacy_plaintext_rows_still_work(server, tenant):
    """Rows written before secrets were sealed (a plaintext webhook secret, a plaintext
    stored response) are read as they are."""
    from sqlalchemy import update

    from redline.server.db import WRITE
    from redline.server.tables import idempotency_keys, webhooks

    with tenant.as_user() as client:
        headers = {"Idempotency-Key": "legacy-" + secrets.token_hex(6)}
        body = {"projectId": tenant.project_id, "url": HOOK_URL, "events": ["run.completed"]}
        first = client.post("/api/webhooks", json=body, headers=headers)
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(update(webhooks).where(webhooks.c.id == first.json()["id"])
                         .values(secret=first.json()["secret"]))
            conn.execute(update(idempotency_keys)
                         .where(idempotency_keys.c.key == headers["Idempotency-Key"])
                         .values(response_body=first.content))
        replay = client.post("/api/webhooks", json=body, headers=headers)
        assert replay.content == first.content
        ping = client.post(f"/api/webhooks/{first.json()['id']}/ping")
        assert ping.status_code < 500, ping.text
