"""One way to provoke each catalog code for real, shared by the SDK, CLI and MCP tests.

Every server code is provoked on a real Redline server on loopback (a key without a scope, a
stale If-Match, a server with a tiny body cap, a server whose schema lost a table, one whose
database is down...), except INSUFFICIENT_CREDITS, which no endpoint of this version can
produce: a stub HTTP server on loopback answers that envelope. The client-side codes come from a
closed port (NETWORK_ERROR), a loopback peer that answers late (TIMEOUT) and a real run that
nobody finishes (WAIT_TIMEOUT).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from redline.sdk import Client
from tests.clients.peers import Reply, StubServer, error_reply
from tests.support import live

MISSING_TEAM = "team_01HZZZZZZZZZZZZZZZZZZZZZZZ"


@dataclass
class Scenario:
    code: str
    url: str
    api_key: str | None = None
    token: str | None = None
    #: the SDK call that fails with `code`
    sdk: Callable[[Client], Any] = lambda c: c.me()
    #: CLI arguments that fail with `code`
    cli: list[str] = field(default_factory=lambda: ["whoami"])
    #: (tool, arguments) that fail with `code`, or None when no tool reaches it for real
    mcp: tuple[str, dict] | None = None
    timeout: float | None = None
    #: why the scenario fails (for the reader of a failing test)
    how: str = ""

    def client(self) -> Client:
        options: dict[str, Any] = {"max_retries": 0, "from_env": False}
        if self.timeout:
            options["timeout"] = self.timeout
        return Client(self.url, api_key=self.api_key, token=self.token, **options)

    def env(self) -> dict[str, str]:
        """Environment for the CLI and MCP subprocesses."""
        env = {"REDLINE_URL": self.url, "REDLINE_MAX_RETRIES": "0"}
        if self.api_key:
            env["REDLINE_API_KEY"] = self.api_key
        if self.token:
            env["REDLINE_TOKEN"] = self.token
        if self.timeout:
            env["REDLINE_TIMEOUT"] = str(self.timeout)
        return env


def build(code: str, request) -> Scenario:
    """The scenario for `code`, using the test's fixtures through `request`."""
    get = request.getfixturevalue
    if code == "AUTH_REQUIRED":
        srv = get("server")
        return Scenario(code, srv.url, mcp=("whoami", {}), how="no credentials")
    if code == "AUTH_INVALID":
        srv = get("server")
        return Scenario(code, srv.url, api_key="rl_live_" + secrets.token_urlsafe(40),
                        mcp=("whoami", {}), how="an unknown key")
    if code == "AUTH_FORBIDDEN":
        tenant = get("tenant")
        return Scenario(code, tenant.server.url, api_key=tenant.key,
                        sdk=lambda c: c.api_keys.list(), cli=["keys", "list"],
                        how="a CI key lacks project:admin")
    if code == "NOT_FOUND":
        tenant = get("tenant")
        return Scenario(code, tenant.server.url, api_key=tenant.key,
                        sdk=lambda c: c.projects.list(MISSING_TEAM),
                        cli=["projects", "list", "--team", MISSING_TEAM],
                        mcp=("list_projects", {"team_id": MISSING_TEAM}), how="no such team")
    if code == "VALIDATION_ERROR":
        tenant = get("tenant")
        return Scenario(code, tenant.server.url, token=tenant.token,
                        sdk=lambda c: c.projects.list("x" * 41),
                        cli=["projects", "list", "--team", "x" * 41],
                        mcp=("list_projects", {"team_id": "x" * 41}), how="teamId too long")
    if code == "PAYLOAD_TOO_LARGE":
        srv = get("start_server")(max_body_bytes=120, rate_limit_enabled=False)
        tenant = live.make_tenant(srv)
        return Scenario(code, srv.url, token=tenant.token,
                        sdk=lambda c: c.teams.create("x" * 200),
                        cli=["teams", "create", "x" * 200], how="a body over a 120-byte cap")
    if code == "CONFLICT":
        srv = get("tenant").server  # the tenant's user means the server is set up
        return Scenario(code, srv.url,
                        sdk=lambda c: c.setup("again@example.com", "password123"),
                        cli=["init", "--email", "again@example.com", "--password",
                             "password123"], how="setup of a set-up server")
    if code == "PRECONDITION_FAILED":
        tenant = get("tenant")
        with Client(tenant.server.url, token=tenant.token, from_env=False) as owner:
            stale = owner.projects.get_settings(tenant.project_id).etag
            time.sleep(0.002)  # the version is the update time: make it differ
            owner.projects.update_settings(tenant.project_id, data_retention_days=30,
                                           if_match=stale)
        return Scenario(code, tenant.server.url, token=tenant.token,
                        sdk=lambda c: c.projects.update_settings(
                            tenant.project_id, data_retention_days=60, if_match=stale),
                        cli=["settings", "set", "--project", tenant.project_id,
                             "--retention-days", "60", "--if-match", stale],
                        how="If-Match names an older version")
    if code == "IDEMPOTENCY_BODY_MISMATCH":
        tenant = get("tenant")
        key = f"k-{secrets.token_hex(6)}"
        with Client(tenant.server.url, token=tenant.token, from_env=False) as owner:
            owner.teams.create("first", idempotency_key=key)
        return Scenario(code, tenant.server.url, token=tenant.token,
                        sdk=lambda c: c.teams.create("second", idempotency_key=key),
                        cli=["teams", "create", "second", "--idempotency-key", key],
                        how="a used Idempotency-Key with another body")
    if code == "RATE_LIMITED":
        # Sign-in throttling per account: stable for minutes, unlike the per-second refill of
        # the request budgets (whose waiting-out test_sdk_retries covers).
        srv = get("start_server")(login_max_failures=1, rate_limit_enabled=False)
        tenant = live.make_tenant(srv)
        with httpx.Client(base_url=srv.url) as raw:
            wrong = raw.post("/api/auth/login", json={"email": tenant.email,
                                                      "password": "wrong password"})
            assert wrong.status_code == 401
        return Scenario(code, srv.url,
                        sdk=lambda c: c.auth.login(tenant.email, live.PASSWORD),
                        cli=["login", "--email", tenant.email, "--password", live.PASSWORD],
                        how="sign-in of an account throttled after a failure")
    if code == "INSUFFICIENT_CREDITS":
        stub = get("stub")
        stub.reply = error_reply(code, "The team's execution budget is spent",
                                 {"teamId": "team_x", "remainingSeconds": 0})
        return Scenario(code, stub.url, api_key="rl_live_stub",
                        sdk=lambda c: c.plans.trigger("plan_x"),
                        cli=["run", "plan_x"], mcp=("whoami", {}),
                        how="stub: no endpoint spends credits in this version")
    if code == "UNSUPPORTED":
        stub = get("stub")
        stub.reply = error_reply(code, "The Kubernetes executor is planned, not in this "
                                 "version", {"feature": "executions"})
        return Scenario(code, stub.url, api_key="rl_live_stub",
                        sdk=lambda c: c.plans.list(), cli=["plans", "list"],
                        how="stub: the server's one UNSUPPORTED (a plan's kubernetes "
                        "executor) is not reachable through the clients yet")
    if code == "INTERNAL":
        srv, tenant = get("broken_server")
        return Scenario(code, srv.url, token=tenant.token,
                        sdk=lambda c: c.teams.get(tenant.team_id),
                        cli=["teams", "get", tenant.team_id], mcp=("whoami", {}),
                        how="a table dropped from under the server")
    if code == "UNAVAILABLE":
        srv = get("dead_database_server")
        # a well-formed key the server must look up (without credentials, or with a malformed
        # key, it answers AUTH_REQUIRED / AUTH_INVALID before touching the database)
        from redline.server.kit.tokens import API_KEY_PREFIX, make_token

        return Scenario(code, srv.url, api_key=make_token(API_KEY_PREFIX).token,
                        sdk=lambda c: c.health(), cli=["health"], mcp=("whoami", {}),
                        how="the database is down")
    if code == "NETWORK_ERROR":
        return Scenario(code, get("closed_url"), sdk=lambda c: c.health(), cli=["health"],
                        mcp=("whoami", {}), how="nobody listens on the port")
    if code == "TIMEOUT":
        stub = get("stub")

        def late(seen):
            time.sleep(1.5)
            return Reply(201, {"id": "team_late", "name": "late"})

        stub.respond = late
        return Scenario(code, stub.url, api_key="rl_live_stub", timeout=0.4,
                        sdk=lambda c: c.teams.create("late"), cli=["teams", "create", "late"],
                        mcp=("whoami", {}), how="the answer comes after the timeout")
    if code == "WAIT_TIMEOUT":
        tenant = get("tenant")
        with Client(tenant.server.url, api_key=tenant.key, from_env=False) as ci:
            run_id = ci.runs.create(branch="main").id  # running until someone finishes it
        return Scenario(code, tenant.server.url, api_key=tenant.key,
                        sdk=lambda c: c.runs.wait(run_id, timeout=0.3, poll=0.1),
                        cli=["wait", run_id, "--timeout", "0.3", "--poll", "0.1"],
                        mcp=("wait_for_run", {"run_id": run_id, "timeout_seconds": 0.3,
                                              "poll_seconds": 0.1}),
                        how="a run that stays running")
    raise KeyError(f"no scenario provokes {code}: add one")


__all__ = ["Scenario", "StubServer", "build"]
