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


def ulid() -> str:
    global _time_part
    now = int(time.time() * 1000)
    if _time_part[0] != now:
        # 10 characters encode 50 bits: the top two are always zero
        _time_part = (now, "".join(_PAIRS[(now >> shift) & 1023] for shift in (40, 30, 20,
                                                                                10, 0)))
    r, p = int.from_bytes(os.urandom(10), "big"), _PAIRS
    return (_time_part[1] + p[r >> 70] + p[r >> 60 & 1023] + p[r >> 50 & 1023]
            + p[r >> 40 & 1023] + p[r >> 30 & 1023] + p[r >> 20 & 1023] + p[r >> 10 & 1023]
            + p[r & 1023])


def new_id(prefix: str) -> str:
    """A new id such as `run_01JD3X...`; ids of one type sort by creation time."""
    assert prefix in PREFIXES, prefix
    return f"{prefix}_{ulid()}"
