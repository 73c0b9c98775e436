"""Rate limits per credential and endpoint group (GCRA), in process or shared through Redis.

GCRA keeps one "theoretical arrival time" (TAT) per key: each admitted request moves it one
emission interval (window / limit) forward, and a request is refused while the TAT is more than
one window ahead of now. That admits a burst of `limit` and then `limit` per window, with no
double burst at a window boundary. The Redis backend runs the same arithmetic in one Lua
script, so any number of server processes share one budget without over-admitting.

When Redis cannot be reached (or hangs) the limiter falls back to a per-process limiter for a
few seconds before trying Redis again, and logs a warning once a minute: an outage of the
counter store must not turn into an outage, or a slowdown, of the API.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("redline.ratelimit")


@dataclass(frozen=True)
class Limit:
    group: str
    limit: int
    window: int = 60  # seconds


# The reference's table: per API key (or signed-in user) and endpoint group, per minute.
GROUPS: dict[str, Limit] = {limit.group: limit for limit in [
    Limit("runs-read", 100),
    Limit("runs-write", 30),
    Limit("tests-read", 200),
    Limit("tests-write", 60),
    Limit("uploads", 30),
    Limit("projects-teams", 60),
    Limit("keys-webhooks", 30),
    Limit("flakiness", 60),
    # Not in the reference: sign-in attempts per client address.
    Limit("auth", 30),
]}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the full quota is back
    retry_after: int  # seconds to wait when refused (0 when allowed)
    window: int
    group: str

    def headers(self) -> dict[str, str]:
        """IETF draft-ietf-httpapi-ratelimit-headers structured fields."""
        headers = {
            "RateLimit-Policy": f'"{self.group}";q={self.limit};w={self.window}',
            "RateLimit": f'"{self.group}";r={self.remaining};t={self.reset_seconds}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def _decide(tat: float, now: float, limit: Limit) -> tuple[bool, float, Decision]:
    interval = limit.window / limit.limit
    new_tat = max(tat, now) + interval
    ahead = new_tat - now
    if ahead > limit.window:
        retry_after = max(1, math.ceil(ahead - limit.window))
        remaining = 0
        return False, tat, Decision(False, limit.limit, remaining,
                                    max(1, math.ceil(max(tat, now) - now)),
                                    retry_after, limit.window, limit.group)
    remaining = max(0, int((limit.window - ahead) // interval))
    return True, new_tat, Decision(True, limit.limit, remaining, max(0, math.ceil(ahead)), 0,
                                   limit.window, limit.group)


class MemoryLimiter:
    """Per-process limiter: right for one server process, the default without Redis."""

    blocking = False  # never waits on anything: fine on the event loop

    def __init__(self):
        self._tats: dict[str, float] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, limit: Limit) -> Decision:
        now = time.time()
        with self._lock:
            _, tat, decision = _decide(self._tats.get(key, 0.0), now, limit)
            self._tats[key] = tat
            if len(self._tats) > 100_000:  # forget idle keys rather than grow for ever
                self._tats = {k: v for k, v in self._tats.items() if v > now}
        return decision

    def count(self, key: str) -> int:
        with self._lock:
            value, expires = self._counters.get(key, (0, 0.0))
            return value if expires > time.time() else 0

    def incr(self, key: str, ttl: int) -> int:
        with self._lock:
            now = time.time()
            value, expires = self._counters.get(key, (0, 0.0))
            if expires <= now:
                value, expires = 0, now + ttl
            self._counters[key] = (value + 1, expires)
            return value + 1

    def reset(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)


_GCRA_LUA = """
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > window then
  return {0, tostring(tat), tostring(now)}
end
redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(window * 1000) + 1000)
return {1, tostring(new_tat), tostring(now)}
"""


class RedisLimiter:
    """Limiter shared by every process that talks to the same Redis."""

    RETRY_AFTER_ERROR = 5.0  # seconds on the fallback before Redis is tried again
    blocking = True  # a network round trip (up to its 0.5 s timeouts): not on the event loop

    def __init__(self, url: str):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_GCRA_LUA)
        self._last_warning = 0.0
        self._down_until = 0.0
        self._fallback = MemoryLimiter()

    @property
    def _down(self) -> bool:
        return time.monotonic() < self._down_until

    def _fail_open(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + self.RETRY_AFTER_ERROR
        if time.time() - self._last_warning > 60:
            self._last_warning = time.time()
            log.warning("rate limiter: Redis unreachable (%s); limiting per process for now",
                        exc)

    def acquire(self, key: str, limit: Limit) -> Decision:
        import redis

        if self._down:
            return self._fallback.acquire(key, limit)
        interval = limit.window / limit.limit
        try:
            allowed, tat, now = self._script(keys=[f"redline:rl:{key}"],
                                             args=[interval, limit.window])
        except redis.RedisError as exc:
            self._fail_open(exc)
            return self._fallback.acquire(key, limit)
        tat, now = float(tat), float(now)
        if allowed:
            ahead = tat - now
            remaining = max(0, int((limit.window - ahead) // interval))
            return Decision(True, limit.limit, remaining, max(0, math.ceil(ahead)), 0,
                            limit.window, limit.group)
        ahead = tat + interval - now
        return Decision(False, limit.limit, 0, max(1, math.ceil(tat - now)),
                        max(1, math.ceil(ahead - limit.window)), limit.window, limit.group)

    def count(self, key: str) -> int:
        import redis

        if self._down:
            return self._fallback.count(key)
        try:
            return int(self._redis.get(f"redline:cnt:{key}") or 0)
        except redis.RedisError as exc:
            self._fail_open(exc)
            return self._fallback.count(key)

    def incr(self, key: str, ttl: int) -> int:
        import redis

        if self._down:
            return self._fallback.incr(key, ttl)
        try:
            pipe = self._redis.pipeline()
            pipe.incr(f"redline:cnt:{key}")
            pipe.expire(f"redline:cnt:{key}", ttl, nx=True)
            return int(pipe.execute()[0])
        except redis.RedisError as exc:
            self._fail_open(exc)
            return self._fallback.incr(key, ttl)

    def reset(self, key: str) -> None:
        import redis

        self._fallback.reset(key)
        if self._down:
            return
        try:
            self._redis.delete(f"redline:cnt:{key}")
        except redis.RedisError as exc:
            self._fail_open(exc)


def make_limiter(redis_url: str | None):
    return RedisLimiter(redis_url) if redis_url else MemoryLimiter()
