"""Prefixed, time-sortable ids: a type prefix and a ULID (48-bit ms time + 80 random bits)."""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

PREFIXES = {"run", "test", "tc", "suite", "artifact", "proj", "team", "user", "member",
            "invite", "key", "wh", "whd", "plan", "req", "sess", "job", "err", "qe"}


# Two Crockford characters for every 10-bit value: 13 lookups make a ULID (ids are minted
# for every stored result, so this is on the ingestion hot path).
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def ulid() -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    # 26 characters encode 130 bits: the top two are always zero
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10))


def new_id(prefix: str) -> str:
    """A new id such as `run_01JD3X...`; ids of one type sort by creation time."""
    assert prefix in PREFIXES, prefix
    return f"{prefix}_{ulid()}"
