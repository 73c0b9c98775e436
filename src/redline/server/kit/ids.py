"""Prefixed, time-sortable ids: a type prefix and a ULID (48-bit ms time + 80 random bits)."""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

PREFIXES = {"run", "test", "tc", "suite", "artifact", "proj", "team", "user", "member",
            "invite", "key", "wh", "whd", "plan", "req", "sess", "job", "err", "qe", "runner"}


# Two Crockford characters for every 10-bit value. The 48-bit time is 5 lookups, done once
# per batch; the 80 random bits are 8, spelled out (ids are minted for every stored result,
# so this is on the ingestion hot path).
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_RANDOM_BITS = 80
# Ids minted in one millisecond increase in the order they are minted (the random parts of a
# batch sorted, and above the last id of the same millisecond): a run's results sort by id in
# the order they arrived, which is the order their case's window takes them in (two results
# of one test in one run: a failure, then its passing re-run).
_last: tuple[int, int] = (-1, 0)  # the millisecond and random part of the last id minted
_lock = threading.Lock()


def _time_prefix(now: int) -> str:
    # 10 characters encode 50 bits: the top two are always zero
    return "".join(_PAIRS[(now >> shift) & 1023] for shift in (40, 30, 20, 10, 0))


def ulid() -> str:
    return _ulids(1)[0]


def _ulids(count: int) -> list[str]:
    """`count` ULIDs from one read of the random source, increasing."""
    global _last
    randomness = os.urandom(10 * count)
    parts = sorted(int.from_bytes(randomness[start:start + 10], "big")
                   for start in range(0, 10 * count, 10))
    with _lock:
        now = int(time.time() * 1000)
        last_now, last_part = _last
        if now <= last_now:  # the same millisecond (or the clock stepped back): go on from it
            now = last_now
            if parts[0] <= last_part:
                shift = last_part + 1 - parts[0]
                parts = [part + shift for part in parts]
            if parts[-1] >> _RANDOM_BITS:  # (80 bits exhausted in one millisecond: the next)
                now, parts = now + 1, [part & ((1 << _RANDOM_BITS) - 1) for part in parts]
                parts.sort()
        _last = (now, parts[-1])
    head, p = _time_prefix(now), _PAIRS
    return [head + p[r >> 70] + p[r >> 60 & 1023] + p[r >> 50 & 1023] + p[r >> 40 & 1023]
            + p[r >> 30 & 1023] + p[r >> 20 & 1023] + p[r >> 10 & 1023] + p[r & 1023]
            for r in parts]


def new_ids(prefix: str, count: int) -> list[str]:
    """`count` new ids of one type at once (a bulk insert of results mints thousands)."""
    assert prefix in PREFIXES, prefix
    return [f"{prefix}_{value}" for value in _ulids(count)]


def new_id(prefix: str) -> str:
    """A new id such as `run_01JD3X...`; ids of one type sort by creation time."""
    assert prefix in PREFIXES, prefix
    return f"{prefix}_{ulid()}"
