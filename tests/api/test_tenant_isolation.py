"""Tenant isolation (RELIABILITY.md 6.1, OWASP API1): every route, called with tenant A's
credentials and tenant B's ids, answers NOT_FOUND exactly as for an id that does not exist,
and B's data is unchanged.

The routes come from the app's own route table, so a new route cannot be forgotten: it must
either get an id in `ID_FOR` (path parameters) / `QUERY_IDS` / `BODY_IDS`, or be listed in
`NO_TENANT_INPUT` with the reason it takes no tenant's id.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from redline.server import tables
from tests.support import live
from tests.support.routes import Route, api_routes

# Routes that take no id of a tenant's object (what they return is the caller's own).
NO_TENANT_INPUT = {
    ("GET", "/api/health"), ("POST", "/api/setup"), ("POST", "/api/auth/login"),
    ("POST", "/api/auth/logout"), ("GET", "/api/me"), ("PATCH", "/api/me"),
    ("GET", "/api/teams"), ("POST", "/api/teams"),
    ("GET", "/api/openapi.json"), ("GET", "/api/docs"),
}
# The runner API answers runner tokens only (`rlr_...`): which runs a token reaches is tested
# in tests/executions/test_queue.py.
RUNNER_API = "/api/runner/"

QUERY_IDS = {"teamId": "team_id", "projectId": "project_id", "runId": "run_id", "base": "run_id",
             "testId": "test_id"}
BODY_IDS = {"teamId": "team_id", "projectId": "project_id", "runId": "run_id",
            "testId": "test_id", "parentSuiteId": "suite_id"}

# Filler for required text fields whose format is checked, so only the id can be wrong.
FILLER = {"email": "someone@example.com", "url": "https://93.184.216.34/hook",
          "password": "password123"}


def minimal(model) -> dict:
    """The smallest valid body of a pydantic model (ids are filled in by the caller)."""
    body = {}
    for name, field in model.model_fields.items():
        if not field.is_required():
            continue
        alias = field.alias or name
        body[alias] = FILLER.get(alias) or filler_for(field.annotation)
    return body


def filler_for(annotation):
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return args[0]
    if origin is list:
        item = args[0]
        return [minimal(item) if hasattr(item, "model_fields") else filler_for(item)]
    if annotation is bool:
        return True
    if annotation is int:
        return 1
    if hasattr(annotation, "model_fields"):
        return minimal(annotation)
    return "x"


@pytest.fixture
def victim(server):
    """Tenant B, with one of each kind of object."""
    b = live.make_tenant(server)
    with b.as_user() as client:
        invite = client.post("/api/team-members", json={"teamId": b.team_id, "role": "viewer",
                                                        "email": "invitee@example.com"}).json()
        members = client.get("/api/team-members", params={"teamId": b.team_id}).json()["data"]
        hook = client.post("/api/webhooks", json={"projectId": b.project_id,
                                                  "url": "https://93.184.216.34/hook",
                                                  "events": ["run.completed"]}).json()
        ping = client.post(f"/api/webhooks/{hook['id']}/ping").json()
        # disabled, so the queued delivery never leaves the machine when a test drains jobs
        client.patch(f"/api/webhooks/{hook['id']}", json={"isActive": False})
        plan = client.post("/api/plans", json={"projectId": b.project_id, "name": "p",
                                               "command": ["true"]}).json()
        runner_token = client.post("/api/runner-tokens", json={"teamId": b.team_id,
                                                               "name": "r"}).json()
    with b.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        suite = client.post("/api/test-suites", json={"runId": run["id"], "title": "S"}).json()
        test = client.post("/api/tests", json={"runId": run["id"], "title": "t",
                                               "fullTitle": "S > t", "status": "failed",
                                               "duration": 5}).json()
        artifact = client.post("/api/upload", data={
            "type": "screenshot", "runId": run["id"], "projectId": b.project_id},
            files={"file": ("shot.png", tiny_png(), "image/png")}).json()
    return b, {"team_id": b.team_id, "project_id": b.project_id, "key_id": b.key_id,
               "member_id": members[0]["id"], "invitation_id": invite["id"],
               "run_id": run["id"], "test_id": test["id"], "suite_id": suite["id"],
               "webhook_id": hook["id"], "delivery_id": ping["id"],
               "artifact_id": artifact["id"], "plan_id": plan["id"],
               "token_id": runner_token["id"]}


def tiny_png() -> bytes:
    """A real 1x1 PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def request_for(method: str, entry: Route, ids: dict[str, str]):
    """A request to the route whose every tenant id is taken from `ids`."""
    route = entry.api_route
    path = entry.path
    for name in re.findall(r"{(\w+)}", path):
        if name not in ids:
            pytest.fail(f"{method} {entry.path}: no id for path parameter '{name}'; add it")
        path = path.replace("{" + name + "}", ids[name])
    params = {}
    for param in route.dependant.query_params:
        alias = param.alias
        if alias in QUERY_IDS and QUERY_IDS[alias] in ids:
            params[alias] = ids[QUERY_IDS[alias]]
    body = None
    if route.body_field is not None:
        schema = route.body_field.field_info.annotation
        model = getattr(schema, "model_fields", {})
        body = minimal(schema) if model else {}
        for name, field in model.items():
            alias = field.alias or name
            if alias in BODY_IDS and BODY_IDS[alias] in ids:
                body[alias] = ids[BODY_IDS[alias]]
    return path, params, body


def has_tenant_input(method, entry: Route, ids) -> bool:
    path, params, body = request_for(method, entry, ids)
    return path != entry.path or bool(params) or any(k in BODY_IDS for k in (body or {}))


def snapshot(engine) -> str:
    """A checksum of every tenant table (minus use timestamps) to prove nothing changed."""
    digest = hashlib.sha256()
    skip = {"last_used_at", "last_seen_at"}
    with engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            if table.name in ("idempotency_keys", "alembic_version"):
                continue
            columns = [c for c in table.columns if c.name not in skip]
            for row in conn.execute(select(*columns).order_by(*table.primary_key.columns)):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def normalised(response, ids: dict[str, str]) -> dict:
    error = dict(response.json()["error"])
    error.pop("requestId")
    text = repr(error)
    for value in ids.values():
        text = text.replace(value, "<id>")
    return {"status": response.status_code, "error": text}


def random_ids(ids: dict[str, str]) -> dict[str, str]:
    return {name: value.split("_")[0] + "_01HZZZZZZZZZZZZZZZZZZZZZZZ" for name, value in
            ids.items()}


@pytest.mark.parametrize("credential", ["personal token", "project API key"])
def test_every_route_hides_other_tenants_objects(server, tenant, victim, credential):
    _, b_ids = victim
    missing_ids = random_ids(b_ids)
    client = tenant.as_user() if credential == "personal token" else tenant.as_key()
    before = snapshot(server.engine)
    checked = []
    for route in api_routes(server.app):
        method = route.method
        if (method, route.path) in NO_TENANT_INPUT or route.path.startswith(RUNNER_API):
            continue
        assert has_tenant_input(method, route, b_ids), (
            f"{method} {route.path} takes no id: list it in NO_TENANT_INPUT with a reason")
        path, params, body = request_for(method, route, b_ids)
        response = client.request(method, path, params=params, json=body)
        assert response.status_code == 404, f"{method} {route.path}: {response.text}"
        m_path, m_params, m_body = request_for(method, route, missing_ids)
        missing = client.request(method, m_path, params=m_params, json=m_body)
        assert normalised(response, b_ids) == normalised(missing, missing_ids), route.path
        checked.append((method, route.path))
    client.close()
    assert snapshot(server.engine) == before, "tenant B's data changed"
    assert len(checked) >= 20


def test_cursors_of_one_tenant_fail_for_another(tenant, other_tenant):
    with tenant.as_user() as client:
        client.post("/api/teams", json={"name": "second"})
        cursor = client.get("/api/teams", params={"limit": 1}).json()["nextCursor"]
    assert cursor
    with other_tenant.as_user() as client:
        response = client.get("/api/teams", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["reason"] == "invalid_cursor"


def test_mass_assignment_is_refused(tenant):
    """PATCH /me cannot smuggle a role or a team (extra fields are refused, nothing changes)."""
    with tenant.as_user() as client:
        response = client.patch("/api/me", json={"role": "owner", "teamId": "team_x"})
        assert response.status_code == 400
        assert {e["field"] for e in response.json()["error"]["details"]["errors"]} == {
            "role", "teamId"}


def test_responses_never_carry_secrets(server, tenant):
    """No password hash, key hash or key secret in any read."""
    with tenant.as_user() as client:
        bodies = [client.get(path, params=params).text for path, params in [
            ("/api/me", {}), ("/api/team-members", {"teamId": tenant.team_id}),
            ("/api/api-keys", {"projectId": tenant.project_id}), ("/api/teams", {})]]
    for body in bodies:
        assert "argon2" not in body and "secret_hash" not in body.lower()
        assert tenant.key not in body


def test_every_route_but_the_public_ones_authenticates_its_caller(server):
    """A route added without `rate_limited` (or `current_principal`, or `address_rate_limited`
    for the sign-in forms) would answer anyone: every API route has one of them among its
    dependencies."""
    from redline.server.app import PUBLIC_OPERATIONS

    public = {path for path, _method in PUBLIC_OPERATIONS} | {"/api/openapi.json",
                                                               "/api/docs", "/api/health"}
    for route in api_routes(server.app):
        if route.path in public:
            continue
        calls = {dependency.call.__qualname__
                 for dependency in route.api_route.dependant.dependencies}
        assert any(name.startswith(("rate_limited", "address_rate_limited",
                                    "current_principal", "runner_caller"))
                   for name in calls), (route.method, route.path, calls)
