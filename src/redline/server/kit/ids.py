"""Prefixed, time-sortable ids: a type prefix and a ULID (48-bit ms time + 80 random bits)."""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

PREFIXES = {"run", "test", "tc", "suite", "artifact", "proj", "team", "user", "member",
            "invite", "key", "wh", "whd", "plan", "req", "sess", "job", "err"}


def ulid() -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id such as `run_01JD3X...`; ids of one type sort by creation time."""
    assert prefix in PREFIXES, prefix
    return f"{prefix}_{ulid()}"
