"""Retries by the catalog's policies, against a real server behind a loopback fault proxy that
answers 503/429/409/500, drops connections or answers late, and counts requests and the
Idempotency-Key each carried. Waits are recorded (`sleep=`) rather than slept, except where the
real server's own Retry-After is honoured."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from redline.errors import CATALOG
from redline.sdk import AsyncClient, Client
from redline.sdk import exceptions as errors
from redline.sdk._base import Call, retry_delay
from tests.clients.peers import FaultProxy, error_reply
from tests.support import live


def client_for(proxy, tenant, sleeps, **options) -> Client:
    return Client(proxy.url, token=tenant.token, sleep=sleeps.append, from_env=False,
                  **options)


def unavailable(**headers):
    return error_reply("UNAVAILABLE", "database down", headers=headers)


def test_a_read_is_retried_with_backoff_until_it_succeeds(proxy, tenant):
    sleeps: list[float] = []
    proxy.faults = [unavailable(), unavailable(), "drop"]
    with client_for(proxy, tenant, sleeps) as client:
        page = client.teams.list()
    assert [t.id for t in page] == [tenant.team_id]
    assert len(proxy.requests_to("/api/teams")) == 4
    # equal jitter over a doubling ceiling: [0.25, 0.5], [0.5, 1], then NETWORK_ERROR's own
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0 and 0.25 <= sleeps[2] <= 0.5


def test_unavailable_gives_up_after_four_retries(proxy, tenant):
    sleeps: list[float] = []
    proxy.faults = [unavailable() for _ in range(6)]
    with client_for(proxy, tenant, sleeps) as client, pytest.raises(errors.UnavailableError):
        client.teams.list()
    assert len(proxy.requests_to("/api/teams")) == 5
    assert len(sleeps) == 4
    for attempt, delay in enumerate(sleeps):
        ceiling = 0.5 * 2 ** attempt
        assert ceiling / 2 <= delay <= ceiling


def test_a_write_reuses_one_idempotency_key_on_every_retry_and_lands_once(proxy, tenant):
    sleeps: list[float] = []
    proxy.faults = [unavailable(), "drop", error_reply("INTERNAL")]
    with client_for(proxy, tenant, sleeps) as client:
        team = client.teams.create("retried team")
        names = [t.name for t in client.teams.list()]
    posts = [s for s in proxy.requests_to("/api/teams") if s.method == "POST"]
    assert len(posts) == 4
    keys = {s.idempotency_key for s in posts}
    assert len(keys) == 1 and None not in keys
    assert names.count("retried team") == 1 and team.name == "retried team"
    assert sleeps[-1] == CATALOG["INTERNAL"].retry.delay


def test_a_caller_key_is_sent_as_given(proxy, tenant):
    proxy.faults = [unavailable()]
    with client_for(proxy, tenant, []) as client:
        client.teams.create("keyed", idempotency_key="my-key-1")
    assert [s.idempotency_key for s in proxy.requests_to("/api/teams")] == ["my-key-1"] * 2


def test_a_write_without_an_idempotency_key_is_not_retried(proxy, tenant):
    proxy.faults = [unavailable()]
    with client_for(proxy, tenant, []) as client, pytest.raises(errors.UnavailableError):
        client.auth.login(tenant.email, live.PASSWORD)  # sign-in sends no key on purpose
    seen = proxy.requests_to("/api/auth/login")
    assert len(seen) == 1 and seen[0].idempotency_key is None


def test_rate_limited_honours_retry_after_at_most_three_times(proxy, tenant):
    sleeps: list[float] = []
    proxy.faults = [error_reply("RATE_LIMITED", headers={"Retry-After": "2"}),
                    error_reply("RATE_LIMITED", details={"retryAfter": 3},
                                headers={"Retry-After": "9"})]
    with client_for(proxy, tenant, sleeps) as client:
        client.teams.list()
    assert sleeps == [2.0, 3.0]  # the header, then the body's details.retryAfter first
    proxy.faults = [error_reply("RATE_LIMITED", headers={"Retry-After": "1"})] * 5
    sleeps.clear()
    with client_for(proxy, tenant, sleeps) as client, pytest.raises(errors.RateLimitedError):
        client.teams.list()
    assert sleeps == [1.0, 1.0, 1.0]


def test_a_retry_after_beyond_the_ceiling_is_raised_not_slept(proxy, tenant):
    sleeps: list[float] = []
    proxy.faults = [error_reply("RATE_LIMITED", headers={"Retry-After": "300"})]
    with client_for(proxy, tenant, sleeps, max_retry_delay=30) as client, \
            pytest.raises(errors.RateLimitedError) as info:
        client.teams.list()
    assert sleeps == [] and info.value.retry_after == 300


def test_conflict_is_retried_once_after_one_second(proxy, tenant):
    sleeps: list[float] = []
    proxy.faults = [error_reply("CONFLICT"), error_reply("CONFLICT")]
    with client_for(proxy, tenant, sleeps) as client, pytest.raises(errors.ConflictError):
        client.teams.create("conflicted")
    assert sleeps == [1.0]
    posts = proxy.requests_to("/api/teams")
    assert len(posts) == 2 and posts[0].idempotency_key == posts[1].idempotency_key


@pytest.mark.parametrize("code", ["NOT_FOUND", "VALIDATION_ERROR", "AUTH_FORBIDDEN",
                                  "IDEMPOTENCY_BODY_MISMATCH", "PRECONDITION_FAILED",
                                  "INSUFFICIENT_CREDITS", "UNSUPPORTED", "PAYLOAD_TOO_LARGE"])
def test_codes_that_are_not_retryable_are_raised_at_once(proxy, tenant, code):
    proxy.faults = [error_reply(code)]
    with client_for(proxy, tenant, []) as client, pytest.raises(errors.APIError) as info:
        client.teams.list()
    assert info.value.code == code
    assert len(proxy.requests_to("/api/teams")) == 1


def test_max_retries_zero_turns_retries_off(proxy, tenant):
    proxy.faults = [unavailable()]
    with client_for(proxy, tenant, [], max_retries=0) as client, \
            pytest.raises(errors.UnavailableError):
        client.teams.list()
    assert len(proxy.requests_to("/api/teams")) == 1


def test_a_write_that_timed_out_says_to_verify_and_may_have_landed(proxy, tenant):
    proxy.faults = [("delay", 1.0)]
    with client_for(proxy, tenant, [], timeout=0.3) as client:
        with pytest.raises(errors.TimeoutError) as info:
            client.teams.create("slow team")
        assert info.value.write and info.value.exit_code == 7
        assert "may have landed" in info.value.message and "verify" in info.value.message
        assert "redline teams list" in info.value.message
        assert not isinstance(info.value, TimeoutError)  # not the builtin
        deadline = time.monotonic() + 10
        while "slow team" not in [t.name for t in client.teams.list()]:  # it does land
            assert time.monotonic() < deadline, "the delayed write never landed"
            time.sleep(0.1)
    assert len([s for s in proxy.requests_to("/api/teams") if s.method == "POST"]) == 1


def test_the_real_server_rate_limit_is_waited_out(start_server):
    srv = start_server(rate_limit_enabled=True)
    tenant = live.make_tenant(srv)
    with httpx.Client(base_url=srv.url, headers={"X-API-Key": tenant.key}) as raw:
        while raw.get(f"/api/projects/{tenant.project_id}").status_code != 429:
            pass
    with FaultProxy(srv.url) as proxy, \
            Client(proxy.url, api_key=tenant.key, from_env=False) as client:
        started = time.monotonic()
        project = client.projects.get(tenant.project_id)
        waited = time.monotonic() - started
    assert project.id == tenant.project_id
    assert len(proxy.requests_to("/api/projects")) == 2
    assert waited >= 0.9  # the server's Retry-After (1 s), really waited


def test_the_async_client_retries_with_the_same_key(proxy, tenant):
    sleeps: list[float] = []

    async def go():
        async with AsyncClient(proxy.url, token=tenant.token, sleep=sleeps.append,
                               from_env=False) as client:
            proxy.faults = [unavailable(), error_reply("INTERNAL")]
            team = await client.teams.create("async team")
            teams = [t async for t in client.teams.iter()]
            return team, teams

    team, teams = asyncio.run(go())
    posts = [s for s in proxy.requests_to("/api/teams") if s.method == "POST"]
    assert len(posts) == 3 and len({s.idempotency_key for s in posts}) == 1
    assert team.id in [t.id for t in teams]
    assert len(sleeps) == 2


def test_retry_decisions_are_values():
    get, post = Call("GET", "/api/x"), Call("POST", "/api/x")

    def error(code, **kw):
        return errors.API_ERRORS[code]("x", code=code, status=CATALOG[code].http_status, **kw)

    assert retry_delay(error("CONFLICT"), 0, get, None, 60) == 1.0
    assert retry_delay(error("CONFLICT"), 1, get, None, 60) is None
    assert retry_delay(error("UNAVAILABLE"), 0, get, None, 60, rand=lambda: 0.0) == 0.25
    assert retry_delay(error("UNAVAILABLE"), 3, get, None, 60, rand=lambda: 1.0) == 4.0
    assert retry_delay(error("UNAVAILABLE"), 4, get, None, 60) is None
    assert retry_delay(error("UNAVAILABLE", retry_after=5), 0, get, None, 60) == 5
    assert retry_delay(error("RATE_LIMITED", retry_after=7), 2, get, None, 60) == 7
    assert retry_delay(error("RATE_LIMITED", retry_after=7), 3, get, None, 60) is None
    assert retry_delay(error("UNAVAILABLE"), 0, post, None, 60) is None
    assert retry_delay(error("UNAVAILABLE"), 0, post, "key", 60) is not None
    assert retry_delay(error("NOT_FOUND"), 0, get, None, 60) is None
    assert retry_delay(errors.TimeoutError("t"), 0, get, None, 60) is None
    unknown = errors.APIError("x", code="SHINY_NEW", status=503)
    assert retry_delay(unknown, 0, get, None, 60) is not None  # its status class: UNAVAILABLE
