"""Webhooks (RELIABILITY.md section 2): signing, delivery and retries against a real receiver on
loopback, SSRF refusal, and a worker killed mid-delivery."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks import WebhookVerificationError

from redline.sdk.webhooks import verify as sdk_verify
from redline.server.config import Settings
from redline.server.kit.clock import utcnow
from redline.server.tables import jobs, webhook_deliveries
from redline.server.webhooks import delivery
from redline.server.worker.runner import drain
from tests.support import live

KAT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A real HTTP receiver: records every request, answers from a script of responses."""

    def __init__(self):
        self.requests: list[dict] = []
        self.responses: list[tuple[int, dict, float]] = []  # (status, headers, delay)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})
                status, headers, delay = (receiver.responses.pop(0) if receiver.responses
                                          else (200, {}, 0))
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST  # a followed redirect would show up here

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hooked(start_server):
    """A server that may deliver to loopback, and a tenant on it."""
    srv = start_server(webhook_allow_nets="127.0.0.0/8")
    return srv, live.make_tenant(srv)


def settings_of(srv) -> Settings:
    return srv.app.state.settings


def deliveries_of(srv, webhook_id):
    with srv.engine.connect() as conn:
        return conn.execute(select(webhook_deliveries).where(
            webhook_deliveries.c.webhook_id == webhook_id)
            .order_by(webhook_deliveries.c.id)).all()


def complete_a_run(client, tenant, failing: bool = False) -> dict:
    """A run reported through `client` (whatever server it talks to) with the tenant's key."""
    key = {"X-API-Key": tenant.key}
    run = client.post("/api/runs", json={"status": "running", "branch": "main"},
                      headers=key).json()
    client.post(f"/api/runs/{run['id']}/tests/batch", headers=key, json={"tests": [
        {"title": "t", "fullTitle": "t", "status": "failed" if failing else "passed",
         "duration": 1}]})
    client.patch(f"/api/runs/{run['id']}", json={"status": "passed"}, headers=key)
    return run


def job_of(srv, delivery_id):
    with srv.engine.connect() as conn:
        return [job for job in conn.execute(select(jobs).where(
            jobs.c.kind == "webhooks.deliver")) if job.payload["deliveryId"] == delivery_id][-1]


def make_due(srv):
    with srv.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.status == "queued").values(run_after=utcnow()))


# -- signing ------------------------------------------------------------------------------

def test_the_signature_matches_the_standard_webhooks_known_answer():
    body = b'{"test": 2432232314}'
    assert delivery.sign(KAT_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_delivery_verifies_with_the_standard_webhooks_library(hooked, receiver):
    srv, tenant = hooked
    with tenant.as_user() as client:
        created = client.post("/api/webhooks", json={
            "projectId": tenant.project_id, "url": receiver.url,
            "events": ["run.completed", "run.failed"], "headers": {"X-Custom-Header": "v"}})
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_")
        listed = client.get("/api/webhooks", params={"projectId": tenant.project_id}).json()
        assert "secret" not in listed["data"][0]
        run = complete_a_run(client, tenant, failing=True)
    drain(srv.engine, settings_of(srv))
    assert len(receiver.requests) == 2  # run.completed and run.failed
    events = []
    for request in receiver.requests:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        payload = StandardWebhook(hook["secret"]).verify(request["body"], headers)
        assert sdk_verify(hook["secret"], headers, request["body"]) == payload
        events.append(payload["type"])
        assert payload["data"]["runId"] == run["id"] and payload["data"]["verdict"] == "failed"
        assert headers["x-custom-header"] == "v"
        # one changed byte, or another secret: refused
        with pytest.raises(WebhookVerificationError):
            StandardWebhook(hook["secret"]).verify(request["body"] + b" ", headers)
        with pytest.raises(WebhookVerificationError):
            StandardWebhook(delivery.new_secret()).verify(request["body"], headers)
    assert sorted(events) == ["run.completed", "run.failed"]
    recorded = deliveries_of(srv, hook["id"])
    assert [(d.status, d.attempts, d.response_code) for d in recorded] == [
        ("succeeded", 1, 200)] * 2


# -- retries ------------------------------------------------------------------------------

def test_a_failing_receiver_is_retried_with_the_same_id_and_a_fresh_signature(hooked, receiver):
    srv, tenant = hooked
    receiver.responses = [(500, {}, 0), (200, {}, 0)]
    with tenant.as_user() as client:
        hook = client.post("/api/webhooks", json={"url": receiver.url,
                                                  "projectId": tenant.project_id,
                                                  "events": ["run.completed"]}).json()
        complete_a_run(client, tenant)
    drain(srv.engine, settings_of(srv))
    [pending] = deliveries_of(srv, hook["id"])
    assert (pending.status, pending.attempts, pending.response_code) == ("pending", 1, 500)
    job = job_of(srv, pending.id)
    assert 2.5 <= (job.run_after - job.updated_at).total_seconds() <= 5  # backoff + jitter
    time.sleep(1.1)  # a new second for a fresh timestamp
    make_due(srv)
    drain(srv.engine, settings_of(srv))
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert first["headers"]["webhook-signature"] != second["headers"]["webhook-signature"]
    [done] = deliveries_of(srv, hook["id"])
    assert (done.status, done.attempts) == ("succeeded", 2)


def test_gone_disables_the_webhook(hooked, receiver):
    srv, tenant = hooked
    receiver.responses = [(410, {}, 0)]
    with tenant.as_user() as client:
        hook = client.post("/api/webhooks", json={"url": receiver.url,
                                                  "projectId": tenant.project_id,
                                                  "events": ["run.completed"]}).json()
        complete_a_run(client, tenant)
        drain(srv.engine, settings_of(srv))
        after = client.get(f"/api/webhooks/{hook['id']}").json()
    assert after["isActive"] is False and "410" in after["disabledReason"]


def test_retry_after_is_honoured(hooked, receiver):
    srv, tenant = hooked
    receiver.responses = [(429, {"Retry-After": "120"}, 0)]
    with tenant.as_user() as client:
        hook = client.post("/api/webhooks", json={"url": receiver.url,
                                                  "projectId": tenant.project_id,
                                                  "events": ["run.completed"]}).json()
        complete_a_run(client, tenant)
    drain(srv.engine, settings_of(srv))
    job = job_of(srv, deliveries_of(srv, hook["id"])[0].id)
    assert (job.run_after - job.updated_at).total_seconds() >= 119


def test_redirects_are_failures_and_never_followed(hooked, receiver):
    srv, tenant = hooked
    receiver.responses = [(302, {"Location": "http://169.254.169.254/latest/meta-data"}, 0)]
    with tenant.as_user() as client:
        hook = client.post("/api/webhooks", json={"url": receiver.url,
                                                  "projectId": tenant.project_id,
                                                  "events": ["run.completed"]}).json()
        complete_a_run(client, tenant)
    drain(srv.engine, settings_of(srv))
    assert len(receiver.requests) == 1
    [attempt] = deliveries_of(srv, hook["id"])
    assert attempt.response_code == 302 and "not followed" in attempt.last_error


def test_a_slow_receiver_times_out(hooked, receiver, monkeypatch):
    srv, tenant = hooked
    monkeypatch.setattr(delivery, "TIMEOUT", 0.5)
    receiver.responses = [(200, {}, 2)]
    with tenant.as_user() as client:
        hook = client.post("/api/webhooks", json={"url": receiver.url,
                                                  "projectId": tenant.project_id,
                                                  "events": ["run.completed"]}).json()
        complete_a_run(client, tenant)
    drain(srv.engine, settings_of(srv))
    [attempt] = deliveries_of(srv, hook["id"])
    assert attempt.status == "pending" and "no response" in attempt.last_error


def test_ping_redeliver_and_the_delivery_log(hooked, receiver):
    srv, tenant = hooked
    with tenant.as_user() as client:
        hook = client.post("/api/webhooks", json={"url": receiver.url,
                                                  "projectId": tenant.project_id,
                                                  "events": ["run.completed"]}).json()
        ping = client.post(f"/api/webhooks/{hook['id']}/ping").json()
        drain(srv.engine, settings_of(srv))
        again = client.post(f"/api/webhooks/{hook['id']}/deliveries/{ping['id']}/redeliver")
        drain(srv.engine, settings_of(srv))
        log = client.get(f"/api/webhooks/{hook['id']}/deliveries").json()
    assert again.status_code == 200
    assert [r["headers"]["webhook-id"] for r in receiver.requests] == [ping["id"]] * 2
    [entry] = log["data"]
    assert entry["event"] == "ping" and entry["attempts"] == 2 and entry["latencyMs"] >= 0


def test_quarantine_and_flaky_events(hooked, receiver):
    srv, tenant = hooked
    with tenant.as_user() as client:
        client.post("/api/webhooks", json={"url": receiver.url, "projectId": tenant.project_id,
                                           "events": ["test.flaky", "test.quarantined"]})
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        client.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": [
            {"title": "f", "fullTitle": "f", "status": "flaky", "duration": 1}]})
        client.patch(f"/api/runs/{run['id']}", json={"status": "passed"})
        case = client.get("/api/test-cases").json()["data"][0]
        client.post("/api/flakiness", json={"testId": case["id"], "isQuarantined": True})
    drain(srv.engine, settings_of(srv))
    types = [json.loads(r["body"])["type"] for r in receiver.requests]
    assert types == ["test.flaky", "test.quarantined"]


# -- SSRF ---------------------------------------------------------------------------------

BLOCKED = ["http://127.0.0.1/x", "http://[::1]/x", "http://0.0.0.0/x", "http://10.1.2.3/x",
           "http://172.16.0.1/x", "http://192.168.1.1/x", "http://100.64.0.1/x",
           "http://169.254.169.254/latest/meta-data", "http://[fe80::1]/x", "http://[fd00::1]/x",
           "http://[::ffff:127.0.0.1]/x", "http://2130706433/x", "http://0177.0.0.1/x",
           "http://localhost/x",
           # 6to4 (2002::/16) and Teredo (2001::/32) addresses carrying a private, loopback or
           # metadata IPv4 (issue 22): refused like that IPv4
           "http://[2002:7f00:1::]/x", "http://[2002:a9fe:a9fe::1]/x",
           "http://[2002:c0a8:101::]/x", "http://[2002:a00:1::]/x",
           "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x",
           "http://[2001:0:a9fe:a9fe:8000:63bf:3fff:fdd2]/x", "http://[64:ff9b::a9fe:a9fe]/x"]


@pytest.mark.parametrize("url", BLOCKED + ["file:///etc/passwd", "gopher://127.0.0.1/x",
                                             "http://[not-an-address/x", "http://h:99999/x"])
def test_private_and_metadata_destinations_are_refused(tenant, url):
    with tenant.as_user() as client:
        response = client.post("/api/webhooks", json={"url": url, "events": ["run.completed"],
                                                      "projectId": tenant.project_id})
    assert response.status_code == 400


@pytest.mark.parametrize("url", BLOCKED)
def test_the_guard_refuses_before_any_packet(url):
    with pytest.raises(delivery.BlockedDestination):
        delivery.send(url, KAT_SECRET, "msg_x", b"{}", {}, allowed=[])


def test_6to4_of_a_public_ipv4_is_as_public_as_that_ipv4():
    import ipaddress

    assert delivery._is_public(ipaddress.ip_address("2002:5db8:d822::1"))  # 93.184.216.34
    assert not delivery._is_public(ipaddress.ip_address("2002:a9fe:a9fe::1"))


def test_dns_rebinding_is_caught_at_delivery_time(hooked, receiver, monkeypatch):
    """The name resolved to a public address when registered and to loopback when sent."""
    srv, tenant = hooked
    real = socket.getaddrinfo
    answer = {"ip": "93.184.216.34"}

    def resolver(host, port, *args, **kwargs):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer["ip"], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    port = receiver.server.server_address[1]
    with live.LiveServer.start(srv.app.state.settings.resolved_database_url,
                               srv.app.state.settings.data_dir) as strict:  # no allow-list
        with strict.client(Authorization=f"Bearer {tenant.token}") as client:
            created = client.post("/api/webhooks", json={
                "url": f"http://rebind.example:{port}/hook", "events": ["run.completed"],
                "projectId": tenant.project_id})
            assert created.status_code == 201, created.text
            answer["ip"] = "127.0.0.1"
            complete_a_run(client, tenant)
        drain(strict.engine, settings_of(strict))
    assert receiver.requests == []
    [refused] = deliveries_of(srv, created.json()["id"])
    assert refused.status == "failed" and "not a public address" in refused.last_error


# -- a worker killed mid-delivery -------------------------------------------------------------

def test_a_worker_killed_mid_delivery_is_replaced_and_the_event_arrives(hooked, receiver,
                                                                       tmp_path):
    srv, tenant = hooked
    receiver.responses = [(200, {}, 4)]  # the first attempt hangs while we kill the worker
    with tenant.as_user() as client:
        hook = client.post("/api/webhooks", json={"url": receiver.url,
                                                  "projectId": tenant.project_id,
                                                  "events": ["run.completed"]}).json()
        complete_a_run(client, tenant)
    env = {**os.environ, "REDLINE_DATABASE_URL": srv.app.state.settings.resolved_database_url,
           "REDLINE_DATA_DIR": str(tmp_path), "REDLINE_WEBHOOK_ALLOW_NETS": "127.0.0.0/8",
           "REDLINE_JOB_LEASE_SECONDS": "2",
           # the server's: a worker opens the webhook secrets it sealed
           "REDLINE_SECRET_KEY": srv.app.state.settings.secret_key}
    command = [sys.executable, "-c", "from redline.server.run import worker; worker()"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while not receiver.requests and time.time() < deadline:
        time.sleep(0.05)
    assert receiver.requests, "the first worker never delivered"
    os.kill(first.pid, signal.SIGKILL)  # mid-delivery: the receiver is still sleeping
    first.wait()
    second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            [row] = deliveries_of(srv, hook["id"])
            if row.status == "succeeded":
                break
            time.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) >= 2 and len(ids) == 1  # at least once, one event id
    # each send counted, the one that died mid-request too (issue 22)
    assert row.status == "succeeded" and row.attempts == len(receiver.requests) == 2
    assert second.returncode == 0  # SIGTERM: a graceful stop
