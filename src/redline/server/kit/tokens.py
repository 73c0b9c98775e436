"""Secret tokens a client holds: project API keys (`rl_live_...`), personal tokens
(`rlu_...`), invitation secrets.

Shape (after GitHub's and Seam's formats): `<prefix>_<lookup 12><secret 32><check 6>`, base62.
The lookup part finds the row; only a SHA-256 of the whole token is stored and compared in
constant time; the last 6 characters are a CRC32 of the rest, so a mistyped or mangled token is
refused without touching the database, and secret scanners can validate a token offline.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LOOKUP_LEN = 12
SECRET_LEN = 32
CHECK_LEN = 6

API_KEY_PREFIX = "rl_live_"
PERSONAL_TOKEN_PREFIX = "rlu_"
INVITATION_PREFIX = "rli_"


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(_BASE62[digit])
    return "".join(reversed(chars))


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def _checksum(payload: str) -> str:
    return _base62(zlib.crc32(payload.encode()), CHECK_LEN)


@dataclass(frozen=True)
class NewToken:
    token: str  # shown to the user once
    lookup: str
    secret_hash: str
    last4: str


def make_token(prefix: str) -> NewToken:
    lookup = _random_base62(LOOKUP_LEN)
    payload = prefix + lookup + _random_base62(SECRET_LEN)
    token = payload + _checksum(payload)
    return NewToken(token, lookup, hash_token(token), token[-4:])


def hash_token(token: str) -> str:
    # 256-bit random tokens need no slow hash: SHA-256 cannot be brute-forced here.
    return hashlib.sha256(token.encode()).hexdigest()


def parse_token(token: str, prefix: str) -> str | None:
    """The lookup part of a well-formed token, or None (wrong prefix, length or checksum)."""
    body_len = LOOKUP_LEN + SECRET_LEN + CHECK_LEN
    if not token.startswith(prefix) or len(token) != len(prefix) + body_len:
        return None
    body = token[len(prefix):]
    if not (body.isascii() and body.isalnum()):  # base62: ASCII letters and digits only
        return None
    if not hmac.compare_digest(_checksum(token[:-CHECK_LEN]), token[-CHECK_LEN:]):
        return None
    return body[:LOOKUP_LEN]


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


def mask(last4: str) -> str:
    return f"rl_****...****{last4}"
