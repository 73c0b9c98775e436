"""The server's one HMAC signing helper: a MAC bound to a purpose, optionally to an expiry.

Everything the server signs goes through `Signer`: pagination cursors (`sign`/`unsign`
below), artifact and report links (artifacts/signing.py), the dashboard's anonymous-form CSRF
token (web/core.py) and webhook signatures (webhooks/delivery.py). Each use has its own
purpose, mixed into the signed bytes, so a value signed for one purpose never verifies for
another. The wire formats are each use's own (documented where it is used); this module only
decides how bytes are MACed, encoded and compared:

    mac = HMAC-SHA256(key, separator.join([purpose, *parts]))    (no purpose: just the parts)

encoded as unpadded URL-safe base64, standard base64 or hex, optionally truncated, and
compared in constant time. An expiry, when there is one, is one of the signed parts and is
checked only after the signature (an edited expiry is a bad signature, not an expired link).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["b64url", "b64", "hex"]


class BadSignature(Exception):
    """A signed value that must be refused; `reason` is `signature`, `expired` or
    `parameters` (not even shaped like one)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(secret: bytes, label: str) -> bytes:
    """A key for one family of uses, so that its MACs never collide with another's."""
    return hmac.new(secret, label.encode(), hashlib.sha256).digest()


def _bytes(part: str | bytes | int) -> bytes:
    if isinstance(part, bytes):
        return part
    return str(part).encode()


@dataclass(frozen=True)
class Signer:
    """HMAC-SHA256 under `key` for one `purpose`.

    `purpose` is the first signed part (None only where the key itself is the purpose's
    alone, as a webhook endpoint's secret is); `separator` joins the parts; `size` truncates
    the MAC (bytes); `encoding` is how the MAC travels.
    """

    key: bytes
    purpose: str | None
    separator: bytes = b"."
    encoding: Encoding = "b64url"
    size: int | None = None

    def digest(self, *parts: str | bytes | int) -> bytes:
        prefix = [] if self.purpose is None else [self.purpose.encode()]
        message = self.separator.join([*prefix, *map(_bytes, parts)])
        mac = hmac.new(self.key, message, hashlib.sha256).digest()
        return mac[:self.size] if self.size else mac

    def sign(self, *parts: str | bytes | int) -> str:
        """The encoded MAC of the parts."""
        mac = self.digest(*parts)
        if self.encoding == "hex":
            return mac.hex()
        if self.encoding == "b64":
            return base64.b64encode(mac).decode()
        return b64url(mac)

    def verify(self, signature: str, *parts: str | bytes | int, expires: int | None = None,
               now: int | None = None, max_ttl: int | None = None) -> None:
        """Raise `BadSignature` unless `signature` is the parts' MAC and, when `expires` (one
        of the parts) is given, `now` is not past it. A link claiming to live longer than
        `max_ttl` (plus a minute of clock skew) was never minted here: a bad signature."""
        expected = self.sign(*parts)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise BadSignature("signature")
        if expires is None:
            return
        current = int(time.time()) if now is None else now
        if current > expires:
            raise BadSignature("expired")
        if max_ttl is not None and expires - current > max_ttl + 60:
            raise BadSignature("signature")

    def is_valid(self, signature: str, *parts: str | bytes | int) -> bool:
        try:
            self.verify(signature, *parts)
        except BadSignature:
            return False
        return True


# -- signed JSON tokens (pagination cursors) -------------------------------------------------
# `<base64url JSON payload>.<base64url MAC, 20 bytes>`, the MAC over `<purpose>.<payload>`.
# With `expires_at`, the payload carries `exp` (unix seconds) and `unsign` refuses it after.

def _token_signer(secret: bytes, purpose: str) -> Signer:
    return Signer(secret, purpose, size=20)


def sign(secret: bytes, purpose: str, payload: dict, *, expires_at: int | None = None) -> str:
    """`<payload>.<mac>`; the purpose is mixed in so a cursor is never a valid URL token."""
    if expires_at is not None:
        payload = {**payload, "exp": int(expires_at)}
    body = b64url(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_token_signer(secret, purpose).sign(body)}"


def unsign(secret: bytes, purpose: str, token: str, *, now: int | None = None) -> dict | None:
    """The payload of a token made by `sign` for this purpose, or None if it was altered, is
    not one, was made for another purpose, or has expired."""
    try:
        body, mac = token.split(".", 1)
        _token_signer(secret, purpose).verify(mac, body)
        payload = json.loads(unb64url(body))
    except (ValueError, TypeError, BadSignature):
        return None
    if not isinstance(payload, dict):
        return None
    expires = payload.get("exp")
    if expires is not None:
        current = int(time.time()) if now is None else now
        if not isinstance(expires, int) or current > expires:
            return None
    return payload
