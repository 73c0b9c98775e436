"""Every failure, from every source, answers with the catalog's envelope and X-Request-Id.

One test per catalog code provokes it for real over HTTP and checks status, code, envelope and
headers; the framework's own failures (unknown path, wrong method, bad JSON...) are covered too.
"""

from __future__ import annotations

import json

import httpx
import pytest

from redline.errors import CATALOG
from tests.support import live

ENVELOPE_KEYS = {"code", "message", "details", "retryable", "nextAction", "requestId"}


def assert_envelope(response: httpx.Response, code: str, status: int | None = None) -> dict:
    """The response is the catalog's answer for `code`, in the one envelope."""
    kind = CATALOG[code]
    assert response.status_code == (status or kind.http_status), response.text
    assert response.headers["content-type"].startswith("application/json")
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_")
    error = response.json()["error"]
    assert set(error) == ENVELOPE_KEYS
    assert error["code"] == code
    assert error["retryable"] is kind.retryable
    assert error["nextAction"] == kind.next_action
    assert error["requestId"] == request_id
    assert "Traceback" not in response.text and 'File "' not in response.text
    return error


# -- framework-level failures -------------------------------------------------------------

def test_unknown_path_is_not_found(server):
    with server.client() as client:
        assert_envelope(client.get("/api/no-such-thing"), "NOT_FOUND")


def test_wrong_method_is_405_with_allow(server):
    with server.client() as client:
        response = client.put("/api/health")
    error = assert_envelope(response, "VALIDATION_ERROR", status=405)
    assert error["details"]["reason"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


def test_malformed_json_points_at_the_body(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/teams", content=b'{"name": ',
                               headers={"content-type": "application/json"})
    error = assert_envelope(response, "VALIDATION_ERROR")
    assert error["details"]["field"] == "body"
    assert error["details"]["reason"] == "malformed_json"


def test_wrong_content_type_is_refused(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/teams", content=b"name=x",
                               headers={"content-type": "application/x-www-form-urlencoded"})
    error = assert_envelope(response, "VALIDATION_ERROR")
    assert error["details"]["reason"] == "unsupported_media_type"


def test_every_invalid_field_is_listed(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/projects", json={"name": "", "extra": 1})
    error = assert_envelope(response, "VALIDATION_ERROR")
    fields = {e["field"]: e["reason"] for e in error["details"]["errors"]}
    assert fields == {"name": "string_too_short", "teamId": "required", "extra": "unknown_field"}
    assert error["details"]["field"] == error["details"]["errors"][0]["field"]


def test_unknown_query_value_is_a_validation_error(tenant):
    with tenant.as_user() as client:
        response = client.get("/api/teams", params={"limit": "many"})
    assert assert_envelope(response, "VALIDATION_ERROR")["details"]["field"] == "limit"


def test_limit_above_the_maximum_is_refused(tenant):
    with tenant.as_user() as client:
        response = client.get("/api/teams", params={"limit": 10**6})
    assert assert_envelope(response, "VALIDATION_ERROR")["details"]["field"] == "limit"


def test_bad_cursor_is_a_validation_error(tenant):
    with tenant.as_user() as client:
        response = client.get("/api/teams", params={"cursor": "not-a-cursor"})
    assert assert_envelope(response, "VALIDATION_ERROR")["details"]["reason"] == "invalid_cursor"


def test_json_nested_ten_thousand_deep_is_400_not_500(tenant):
    body = b'{"name": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with tenant.as_user() as client:
        response = client.post("/api/teams", content=body,
                               headers={"content-type": "application/json"})
    assert_envelope(response, "VALIDATION_ERROR")


def test_body_over_the_cap_is_refused_from_content_length(tenant):
    body = json.dumps({"name": "x" * (11 * 1024 * 1024)}).encode()
    with tenant.as_user() as client:
        response = client.post("/api/teams", content=body,
                               headers={"content-type": "application/json"})
    assert assert_envelope(response, "PAYLOAD_TOO_LARGE")["details"]["limit"] == 10 * 1024 * 1024


def test_body_over_the_cap_is_refused_while_streaming(tenant):
    """No Content-Length (chunked): the cap is enforced as the bytes arrive."""
    def chunks():
        yield b'{"name": "'
        for _ in range(12):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    with tenant.as_user() as client:
        response = client.post("/api/teams", content=chunks(),
                               headers={"content-type": "application/json"})
    assert_envelope(response, "PAYLOAD_TOO_LARGE")


# -- one test per catalog code --------------------------------------------------------------

def test_auth_required(server):
    with server.client() as client:
        assert_envelope(client.get("/api/teams"), "AUTH_REQUIRED")


def test_auth_invalid(server):
    with server.client(**{"X-API-Key": "rl_live_nope"}) as client:
        assert_envelope(client.get("/api/teams"), "AUTH_INVALID")


def test_auth_forbidden_lists_required_and_granted(tenant):
    viewer_token, _ = live.add_member(tenant, "viewer")
    with tenant.server.client(Authorization=f"Bearer {viewer_token}") as client:
        response = client.patch(f"/api/projects/{tenant.project_id}/settings",
                                json={"flakinessThreshold": 0.5})
    error = assert_envelope(response, "AUTH_FORBIDDEN")
    assert error["details"]["required"] == ["project:admin"]
    assert error["details"]["granted"] == ["artifacts:read", "runs:read"]


def test_not_found(tenant):
    with tenant.as_key() as client:
        assert_envelope(client.get("/api/projects/proj_01HZZZZZZZZZZZZZZZZZZZZZZZ"), "NOT_FOUND")


def test_validation_error(tenant):
    with tenant.as_user() as client:
        assert_envelope(client.post("/api/teams", json={}), "VALIDATION_ERROR")


def test_payload_too_large(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/teams", content=b"{" + b" " * (10 * 1024 * 1024 + 1) + b"}",
                               headers={"content-type": "application/json"})
    assert_envelope(response, "PAYLOAD_TOO_LARGE")


def test_conflict_on_a_second_setup(server):
    with server.client() as client:
        client.post("/api/setup", json={"email": "first@example.com", "password": "password1"})
        response = client.post("/api/setup", json={"email": "second@example.com",
                                                   "password": "password1"})
    assert assert_envelope(response, "CONFLICT")["details"]["reason"] == "already_set_up"


def test_precondition_failed_on_a_stale_if_match(tenant):
    with tenant.as_user() as client:
        etag = client.get(f"/api/projects/{tenant.project_id}/settings").headers["etag"]
        first = client.patch(f"/api/projects/{tenant.project_id}/settings",
                             json={"dataRetentionDays": 30}, headers={"If-Match": etag})
        assert first.status_code == 200
        stale = client.patch(f"/api/projects/{tenant.project_id}/settings",
                             json={"dataRetentionDays": 60}, headers={"If-Match": etag})
        error = assert_envelope(stale, "PRECONDITION_FAILED")
        assert error["details"]["current"] == first.headers["etag"]
        assert client.get(f"/api/projects/{tenant.project_id}/settings").json()[
            "dataRetentionDays"] == 30


def test_idempotency_body_mismatch(tenant):
    with tenant.as_user() as client:
        client.post("/api/teams", json={"name": "a"}, headers={"Idempotency-Key": "k-mismatch"})
        response = client.post("/api/teams", json={"name": "b"},
                               headers={"Idempotency-Key": "k-mismatch"})
    assert_envelope(response, "IDEMPOTENCY_BODY_MISMATCH")


def test_rate_limited(start_server):
    srv = start_server(rate_limit_enabled=True)
    tenant = live.make_tenant(srv)
    with tenant.as_key() as client:
        responses = [client.get(f"/api/projects/{tenant.project_id}") for _ in range(61)]
    assert [r.status_code for r in responses[:60]] == [200] * 60
    error = assert_envelope(responses[60], "RATE_LIMITED")
    assert 1 <= int(responses[60].headers["retry-after"]) <= 60
    assert error["details"]["group"] == "projects-teams"


def test_unsupported(tenant):
    """The Kubernetes executor of plans is planned, not built (issue 24)."""
    with tenant.as_user() as client:
        error = assert_envelope(client.post("/api/plans", json={
            "projectId": tenant.project_id, "name": "k8s", "command": ["true"],
            "executor": "kubernetes"}), "UNSUPPORTED")
    assert error["details"]["feature"] == "executions"


def test_internal_error_is_enveloped_and_logged_with_its_request_id(start_server, tmp_path,
                                                                   caplog):
    """A real fault (a table gone from under the server) is INTERNAL: no stack trace leaves,
    and the log has the request id."""
    from redline.server.db import migrate

    url = f"sqlite:///{tmp_path / 'broken.db'}"
    migrate(url)
    srv = live.LiveServer.start(url, tmp_path / "broken-data")
    with srv:
        tenant = live.make_tenant(srv)
        with srv.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE team_members")
        with tenant.as_user() as client:
            response = client.get(f"/api/teams/{tenant.team_id}")
    error = assert_envelope(response, "INTERNAL")
    assert "team_members" not in response.text
    assert any(error["requestId"] in record.getMessage() for record in caplog.records)


def test_unavailable_when_the_database_cannot_be_reached(tmp_path):
    srv = live.LiveServer.start("postgresql+psycopg://postgres@127.0.0.1:9/none",
                                tmp_path / "data")
    with srv, srv.client() as client:
        response = client.get("/api/health")
    assert_envelope(response, "UNAVAILABLE")
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("code", [c for c, k in CATALOG.items() if k.http_status])
def test_every_server_code_has_a_test_here(code):
    """Adding a code to the catalog without a test that provokes it fails here."""
    provoked = {"AUTH_REQUIRED", "AUTH_INVALID", "AUTH_FORBIDDEN", "NOT_FOUND",
                "VALIDATION_ERROR", "PAYLOAD_TOO_LARGE", "CONFLICT", "PRECONDITION_FAILED",
                "IDEMPOTENCY_BODY_MISMATCH", "RATE_LIMITED", "UNSUPPORTED", "INTERNAL",
                "UNAVAILABLE",
                # Only executed runs spend credits, and they are not in this version: the
                # client tests check the SDK/CLI/MCP mapping with a stub server instead.
                "INSUFFICIENT_CREDITS"}
    assert code in provoked


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/runs/run_%00", None),
    ("GET", "/api/runs?branch=main%00", None),
    ("POST", "/api/flakiness", {"testId": "tc_\u0000", "isQuarantined": False}),
    ("POST", "/api/runs", {"status": "running", "branch": "main\u0000"}),
    ("POST", "/api/runs", {"status": "running", "tags": ["smoke\u0000"]}),  # JSON: jsonb
])
def test_a_nul_character_is_a_bad_request_never_a_server_error(tenant, server, method, path,
                                                               body):
    """PostgreSQL's text cannot hold U+0000 (SQLite's can): where the database refuses one, the
    client hears what to fix (schemathesis found the 500 this was)."""
    with tenant.as_key() as client:
        response = client.request(method, path, json=body)
    assert response.status_code < 500, response.text
    if server.engine.dialect.name == "postgresql":
        error = assert_envelope(response, "VALIDATION_ERROR")
        assert error["details"]["reason"] == "nul_character"
