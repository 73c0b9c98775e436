"""Rate limits (RELIABILITY.md section 7) and sign-in throttling (section 5.6).

What a client of Redline can rely on:

- Every credential (an API key, or a signed-in user) has a budget per endpoint group, per
  minute (the reference's table; `projects-teams` is 60/min). A burst of the whole minute's
  quota is admitted at once, then the budget refills steadily at limit/window per second (GCRA),
  so there is never a double burst at a window boundary.
- A refused request answers 429 RATE_LIMITED (retryable) with an integer `Retry-After`, and
  every limited response carries `RateLimit-Policy: "<group>";q=<limit>;w=<window>` and
  `RateLimit: "<group>";r=<remaining>;t=<seconds to full>` (IETF ratelimit-headers draft).
- A 429 is refused before the endpoint runs: nothing happens, and the Idempotency-Key of the
  refused request is free for the retry.
- With `REDLINE_REDIS_URL` every server process shares one budget; when Redis is unreachable
  the limiter fails open (admits, logs a warning) rather than failing requests.
- Failed sign-ins are counted per account, whatever address they come from.

Tests that must time a burst do not assume a fast machine: the budget refills by one request
per `window / limit` seconds, so a burst that took longer may be admitted that many more.
"""

from __future__ import annotations

import math
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from redline.server.kit import ratelimit
from redline.server.kit.ratelimit import GROUPS, Limit, MemoryLimiter
from tests.conftest import TEST_DB, missing_service
from tests.support import live

GROUP = GROUPS["projects-teams"]  # 60 requests per 60 s per credential
INTERVAL = GROUP.window / GROUP.limit  # one request's worth of refill: 1 s


# -- helpers ------------------------------------------------------------------------------

def ratelimit_fields(response: httpx.Response) -> dict[str, str | int]:
    """`"projects-teams";r=59;t=1` -> {"name": "projects-teams", "r": 59, "t": 1}."""
    match = re.fullmatch(r'"([^"]+)";r=(-?\d+);t=(-?\d+)', response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    return {"name": match[1], "r": int(match[2]), "t": int(match[3])}


def admissible(limit: Limit, elapsed: float) -> int:
    """The most requests a limit may admit over `elapsed` seconds of burst: the full quota,
    plus what refilled meanwhile."""
    return limit.limit + math.floor(elapsed * limit.limit / limit.window)


def burst(client: httpx.Client, path: str, limit: Limit) -> tuple[list[httpx.Response], float]:
    """Send requests one after another until the first refusal; (responses, seconds the
    admitted part took)."""
    responses: list[httpx.Response] = []
    started = time.monotonic()
    for _ in range(2 * limit.limit):
        responses.append(client.get(path))
        if responses[-1].status_code != 200:
            break
    return responses, time.monotonic() - started


def count_teams(server: live.LiveServer, token: str) -> int:
    """Counted through the session's unlimited server (same database): the check itself must
    not spend the budget under test."""
    with server.client(Authorization=f"Bearer {token}") as client:
        response = client.get("/api/teams", params={"limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["total"]


# -- a private Redis per module, so no test shares counters with another ------------------

@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("redis-server is not installed (apt-get install redis-server); the "
                        "shared-limiter tests need a real Redis")
    import redis

    port = live.free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.time() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"the private redis-server on port {port} did not start")
            time.sleep(0.02)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(params=["memory", "redis"])
def limited(request, start_server):
    """A server with rate limits on: the in-process limiter, or the Redis one."""
    if request.param == "redis":
        return start_server(rate_limit_enabled=True,
                            redis_url=request.getfixturevalue("redis_url"))
    return start_server(rate_limit_enabled=True)


# -- 1. a burst: N admitted, then 429 with the headers ------------------------------------

def test_a_burst_past_the_limit_is_refused_with_retry_after_and_ratelimit_headers(limited):
    tenant = live.make_tenant(limited)
    with tenant.as_key() as client:
        responses, elapsed = burst(client, f"/api/projects/{tenant.project_id}", GROUP)

    *admitted, refused = responses
    assert all(r.status_code == 200 for r in admitted)
    assert GROUP.limit <= len(admitted) <= admissible(GROUP, elapsed)

    # Every admitted response tells how many remain; the count only goes down, to 0.
    for response in admitted:
        assert response.headers["ratelimit-policy"] == '"projects-teams";q=60;w=60'
    remaining = [ratelimit_fields(r)["r"] for r in admitted]
    assert remaining[0] == GROUP.limit - 1
    assert all(later <= earlier for earlier, later in pairwise(remaining))
    assert min(remaining) >= 0

    # The refusal: the catalog's envelope, and when to come back.
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/json")
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["retryable"] is True
    assert error["requestId"] == refused.headers["x-request-id"]
    assert error["details"]["group"] == "projects-teams"
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= GROUP.window
    assert refused.headers["ratelimit-policy"] == '"projects-teams";q=60;w=60'
    fields = ratelimit_fields(refused)
    assert fields["name"] == "projects-teams" and fields["r"] == 0
    assert 0 < fields["t"] <= GROUP.window


# -- 2. after Retry-After: allowed again; the arithmetic over a simulated minute -----------

def test_after_retry_after_the_next_request_is_allowed(limited):
    tenant = live.make_tenant(limited)
    path = f"/api/projects/{tenant.project_id}"
    with tenant.as_key() as client:
        responses, _ = burst(client, path, GROUP)
        assert responses[-1].status_code == 429
        time.sleep(int(responses[-1].headers["retry-after"]))  # 1 s: one request's refill
        again = client.get(path)
    assert again.status_code == 200, again.text


class FakeClock:
    """Stands in for the `time` module inside the limiter; tests move `now` by hand."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock(1_800_000_000.0)  # a realistic epoch: floats lose precision up there
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=fake.time))
    return fake


def replay_timeline(limiter: MemoryLimiter, clock: FakeClock, limit: Limit,
                    arrivals: list[float]) -> list[float]:
    """Offer requests at these times (seconds from the start); the times that were admitted."""
    start = clock.now
    admitted = []
    for at in sorted(arrivals):
        clock.now = start + at
        if limiter.acquire("k", limit).allowed:
            admitted.append(at)
    return admitted


def most_in_any_window(admitted: list[float], window: float) -> int:
    """The most admissions inside any half-open window [t, t + window) (t at an admission)."""
    return max((sum(1 for b in admitted if a <= b < a + window) for a in admitted), default=0)


def test_no_double_burst_at_a_window_boundary(clock):
    """A fixed-window counter admits N at 59.9 s and N more at 60.1 s: 2N in 0.2 s. GCRA
    admits the first N, and at 60.1 s only what refilled in those 0.2 s (nothing)."""
    n = GROUP.limit
    admitted = replay_timeline(MemoryLimiter(), clock, GROUP, [59.9] * n + [60.1] * n)
    assert admitted == [59.9] * n
    # The burst a window holds is the quota itself; never more than quota + burst in 60 s.
    assert most_in_any_window(admitted, GROUP.window) <= n + n


def test_under_constant_overload_the_rate_converges_to_the_limit(clock):
    """Ten requests a second for five minutes: a full burst first, then one per interval.
    In every 60 s window at most limit + burst, and over the whole run the limit per minute
    plus the initial burst."""
    n = GROUP.limit
    arrivals = [i / 10 for i in range(10 * 300)]
    admitted = replay_timeline(MemoryLimiter(), clock, GROUP, arrivals)
    assert most_in_any_window(admitted, GROUP.window) <= n + n
    assert len(admitted) <= n + math.floor(300 / INTERVAL) + 1
    assert len(admitted) >= n + math.floor(300 / INTERVAL) - 1
    # GCRA's own bound, for every span [a, b] between two admissions: quota + refill.
    for i, a in enumerate(admitted):
        for j in range(i, min(len(admitted), i + 2 * n)):
            assert j - i + 1 <= n + math.floor((admitted[j] - a) / INTERVAL + 1e-9)


def test_retry_after_is_exactly_when_the_next_request_fits(clock):
    limiter, limit = MemoryLimiter(), Limit("slow", 30, 60)  # one request per 2 s
    refused_at = clock.now
    decisions = [limiter.acquire("k", limit) for _ in range(limit.limit + 1)]
    assert all(d.allowed for d in decisions[:-1])
    assert [d.remaining for d in decisions[:-1]] == list(range(limit.limit - 1, -1, -1))
    refused = decisions[-1]
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after == 2
    assert refused.headers()["Retry-After"] == "2"

    clock.now = refused_at + refused.retry_after - 0.01
    assert not limiter.acquire("k", limit).allowed  # a moment early: still refused
    clock.now = refused_at + refused.retry_after
    assert limiter.acquire("k", limit).allowed  # on time: admitted
    assert not limiter.acquire("k", limit).allowed  # and one request's worth only


def test_a_refusal_spends_nothing(clock):
    """Hammering while refused does not push the retry time further away."""
    limiter, limit = MemoryLimiter(), Limit("g", 60, 60)
    for _ in range(limit.limit):
        limiter.acquire("k", limit)
    for _ in range(1000):
        assert limiter.acquire("k", limit).retry_after == 1
    clock.now += 1
    assert limiter.acquire("k", limit).allowed


# -- 3. one credential's budget is its own -----------------------------------------------

def test_one_key_exhausted_leaves_another_key_of_the_same_project_unaffected(limited):
    tenant = live.make_tenant(limited)
    with tenant.as_user() as user:
        other_key = user.post("/api/api-keys", json={"projectId": tenant.project_id,
                                                     "name": "second CI"}).json()["key"]
    path = f"/api/projects/{tenant.project_id}"
    with tenant.as_key() as key_a, tenant.as_key(other_key) as key_b:
        responses, _ = burst(key_a, path, GROUP)
        assert responses[-1].status_code == 429

        response = key_b.get(path)
    assert response.status_code == 200
    assert ratelimit_fields(response)["r"] == GROUP.limit - 1  # a full budget of its own


# -- 4. several processes share one budget through Redis ----------------------------------

PROCESSES = 4
CONCURRENT = 200
# All 200 requests leave at once; on PostgreSQL each process keeps at most 12 of them on the
# wire, so that 4 processes (each pooling up to 30 connections) stay under the server's default
# max_connections of 100 that other test sessions share.
IN_FLIGHT_PER_PROCESS = CONCURRENT // PROCESSES if TEST_DB == "sqlite" else 12


def start_processes(count: int, env: dict[str, str], cwd: Path) -> list[tuple]:
    """`count` real uvicorn processes serving create_app() from the environment."""
    started = []
    for _ in range(count):
        port = live.free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "redline.server.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--no-access-log"], env=env, cwd=cwd, stdout=subprocess.DEVNULL)
        started.append((process, f"http://127.0.0.1:{port}"))
    return started


def wait_until_serving(processes: list[tuple]) -> None:
    deadline = time.time() + 30
    for process, url in processes:
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.time() > deadline:
                pytest.fail(f"server process at {url} did not start")
            time.sleep(0.05)


def test_four_processes_sharing_redis_admit_exactly_the_limit(server, migrated_url, redis_url,
                                                               tmp_path):
    tenant = live.make_tenant(server)  # same database as the processes below
    env = {"PATH": "/usr/bin:/bin", "REDLINE_DATABASE_URL": migrated_url,
           "REDLINE_REDIS_URL": redis_url, "REDLINE_RATE_LIMIT_ENABLED": "true",
           "REDLINE_SECRET_KEY": "test-secret-key", "REDLINE_DATA_DIR": str(tmp_path),
           "REDLINE_COOKIE_SECURE": "false"}
    processes = start_processes(PROCESSES, env, tmp_path)
    try:
        wait_until_serving(processes)
        path = f"/api/projects/{tenant.project_id}"
        gate = threading.Barrier(CONCURRENT)
        # At most IN_FLIGHT_PER_PROCESS requests on the wire to each process, each on a
        # connection of its own: one pooled client shared by 50 threads once failed here
        # with a connection closed under a thread that was reading it (EBADF).
        in_flight = [threading.BoundedSemaphore(IN_FLIGHT_PER_PROCESS) for _ in processes]

        def one(i: int) -> tuple[int, int]:
            process = i % PROCESSES
            gate.wait()  # all 200 leave together
            with in_flight[process], httpx.Client(
                    base_url=processes[process][1], headers={"X-API-Key": tenant.key},
                    timeout=30) as client:
                return process, client.get(path).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            results = list(pool.map(one, range(CONCURRENT)))
        elapsed = time.monotonic() - started
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            process.wait(timeout=10)

    statuses = [status for _, status in results]
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}, {s: statuses.count(s) for s in set(statuses)}
    # Per-process limiters would have admitted all 200 (4 x 60 > 200); one shared budget
    # admits the limit, plus at most what refilled while the burst ran (usually nothing).
    assert GROUP.limit <= admitted <= admissible(GROUP, elapsed), (admitted, elapsed)
    admitted_by = {p: sum(1 for q, s in results if q == p and s == 200)
                   for p in range(PROCESSES)}
    assert sum(1 for count in admitted_by.values() if count) > 1, admitted_by


# -- 5. a refused request has no effect; its Idempotency-Key is free for the retry --------

def test_a_refused_create_creates_nothing_and_the_retry_runs_once(server, start_server, clock):
    """The limiter's clock is frozen (`clock`), so the spent budget stays spent while the test
    looks around: at 60/min, one request's worth refills within a second of real time."""
    limited = start_server(rate_limit_enabled=True)  # the in-process limiter, on `clock`
    tenant = live.make_tenant(limited)
    before = count_teams(server, tenant.token)
    headers = {"Idempotency-Key": "create-release-team-1"}
    with tenant.as_user() as client:
        spent, _ = burst(client, "/api/teams", GROUP)
        assert spent[-1].status_code == 429

        refused = client.post("/api/teams", json={"name": "release"}, headers=headers)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
        assert count_teams(server, tenant.token) == before

        clock.now += int(refused.headers["retry-after"])
        created = client.post("/api/teams", json={"name": "release"}, headers=headers)
        assert created.status_code == 201, created.text
        replayed = client.post("/api/teams", json={"name": "release"}, headers=headers)
    assert replayed.status_code == 201
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert replayed.json()["id"] == created.json()["id"]
    assert count_teams(server, tenant.token) == before + 1


# -- 6. the limiter's store is down: limits per process, never a 500 ----------------------

def test_with_redis_unreachable_limits_fall_back_to_the_process(start_server):
    """No Redis: the documented fallback is a per-process limiter (for a few seconds at a
    time, then Redis is tried again): requests are still limited, and none fails."""
    closed_port = live.free_port()  # nothing listens there
    srv = start_server(rate_limit_enabled=True, redis_url=f"redis://127.0.0.1:{closed_port}/0")
    tenant = live.make_tenant(srv)
    with tenant.as_key() as client:
        statuses = [client.get(f"/api/projects/{tenant.project_id}").status_code
                    for _ in range(GROUP.limit + 10)]
    admitted = statuses.count(200)
    assert GROUP.limit <= admitted <= GROUP.limit + 2  # what refilled during the burst
    assert set(statuses) <= {200, 429}


def test_with_redis_hanging_requests_are_admitted_after_the_short_timeout(server, start_server):
    """A Redis that accepts connections but never answers (a dead host, a full network
    buffer): the first check gives up after the client's short socket timeout; the next ones
    skip Redis for a few seconds instead of waiting again."""
    tenant = live.make_tenant(server)  # made on the unlimited server: same database
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        port = listener.getsockname()[1]
        srv = start_server(rate_limit_enabled=True, redis_url=f"redis://127.0.0.1:{port}/0")
        with srv.client(**{"X-API-Key": tenant.key}) as client:
            started = time.monotonic()
            statuses = [client.get(f"/api/projects/{tenant.project_id}").status_code
                        for _ in range(10)]
            elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert statuses == [200] * 10
    assert elapsed < 3  # one 0.5 s timeout, not ten


# -- sign-in: failures are counted per account --------------------------------------------

WRONG = "not the password"


def login(srv: live.LiveServer, email: str, password: str, address: str | None = None):
    headers = {"X-Forwarded-For": address} if address else {}
    return httpx.post(f"{srv.url}/api/auth/login", json={"email": email, "password": password},
                      headers=headers, timeout=30)


def test_ten_failed_sign_ins_throttle_the_account_not_other_users(start_server):
    srv = start_server(rate_limit_enabled=True)
    victim, bystander = (f"u{time.time_ns()}-{i}@example.com" for i in range(2))
    live.create_user(srv, victim)
    live.create_user(srv, bystander)

    # Ten guesses, each from another address: the counter belongs to the account.
    for i in range(10):
        response = login(srv, victim, WRONG, address=f"203.0.113.{i + 1}")
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "AUTH_INVALID"

    # Now even the right password waits.
    throttled = login(srv, victim, live.PASSWORD, address="198.51.100.7")
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "RATE_LIMITED"
    assert throttled.json()["error"]["retryable"] is True
    assert throttled.headers["retry-after"].isdigit()
    assert int(throttled.headers["retry-after"]) >= 1
    assert "token" not in throttled.json()

    assert login(srv, bystander, live.PASSWORD).status_code == 200


def test_concurrent_guesses_are_counted_too(start_server):
    """Forty guesses sent at once, each from its own address: no more of them are checked
    against the password than the threshold allows; the rest are refused."""
    srv = start_server(rate_limit_enabled=True)
    victim = f"v{time.time_ns()}@example.com"
    live.create_user(srv, victim)
    gate = threading.Barrier(40)

    def guess(i: int) -> int:
        gate.wait()
        return login(srv, victim, WRONG, address=f"192.0.2.{i + 1}").status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(guess, range(40)))
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) == 10, {s: statuses.count(s) for s in set(statuses)}


def test_an_unknown_email_and_a_wrong_password_get_the_same_answer(start_server):
    srv = start_server(rate_limit_enabled=True)
    email = f"known{time.time_ns()}@example.com"
    live.create_user(srv, email)

    wrong_password = login(srv, email, WRONG)
    unknown_email = login(srv, f"nobody{time.time_ns()}@example.com", WRONG)

    assert wrong_password.status_code == unknown_email.status_code == 401

    def without_request_id(response: httpx.Response) -> dict:
        body = response.json()
        body["error"].pop("requestId")
        return body

    assert without_request_id(wrong_password) == without_request_id(unknown_email)


def test_sign_in_attempts_are_also_limited_per_address(start_server):
    """The `auth` group: 30 attempts a minute from one address, whichever accounts."""
    srv = start_server(rate_limit_enabled=True)
    auth = GROUPS["auth"]  # 30 a minute: one more every 2 s
    statuses = []
    started = time.monotonic()
    while len(statuses) < 2 * auth.limit:  # each attempt hashes: the burst takes seconds
        statuses.append(login(srv, f"guess{len(statuses)}-{time.time_ns()}@example.com",
                              WRONG).status_code)
        if statuses[-1] != 401:
            break
    elapsed = time.monotonic() - started
    *refused_credentials, limited = statuses
    assert set(refused_credentials) == {401}
    assert auth.limit <= len(refused_credentials) <= admissible(auth, elapsed)
    assert limited == 429
