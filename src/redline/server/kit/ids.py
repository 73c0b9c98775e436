"""Prefixed, time-sortable ids: a type prefix and a ULID (48-bit ms time + 80 random bits)."""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

PREFIXES = {"run", "test", "tc", "suite", "artifact", "proj", "team", "user", "member",
            "invite", "key", "wh", "whd", "plan", "req", "sess", "job", "err", "qe"}


# Two Crockford characters for every 10-bit value. The 48-bit time is 5 lookups, done once
# per millisecond; the 80 random bits are 8, spelled out (ids are minted for every stored
# result, so this is on the ingestion hot path).
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_time_part: tuple[int, str] = (-1, "")


def _time_prefix() -> str:
    global _time_part
    now = int(time.time() * 1000)
    if _time_part[0] != now:
        # 10 characters encode 50 bits: the top two are always zero
        _time_part = (now, "".join(_PAIRS[(now >> shift) & 1023] for shift in (40, 30, 20,
                                                                                10, 0)))
    return _time_part[1]


def ulid() -> str:
    return _ulids(1)[0]


def _ulids(count: int) -> list[str]:
    """`count` ULIDs from one read of the random source."""
    head, p = _time_prefix(), _PAIRS
    randomness = os.urandom(10 * count)
    ulids = []
    for start in range(0, 10 * count, 10):
        r = int.from_bytes(randomness[start:start + 10], "big")
        ulids.append(head + p[r >> 70] + p[r >> 60 & 1023] + p[r >> 50 & 1023]
                     + p[r >> 40 & 1023] + p[r >> 30 & 1023] + p[r >> 20 & 1023]
                     + p[r >> 10 & 1023] + p[r & 1023])
    return ulids


def new_ids(prefix: str, count: int) -> list[str]:
    """`count` new ids of one type at once (a bulk insert of results mints thousands)."""
    assert prefix in PREFIXES, prefix
    return [f"{prefix}_{value}" for value in _ulids(count)]


def new_id(prefix: str) -> str:
    """A new id such as `run_01JD3X...`; ids of one type sort by creation time."""
    assert prefix in PREFIXES, prefix
    return f"{prefix}_{ulid()}"
