"""HMAC signing of small values (cursors, signed URLs) with the server's secret key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, purpose: str, payload: dict) -> str:
    """`<payload>.<mac>`; the purpose is mixed in so a cursor is never a valid URL token."""
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac[:20])}"


def unsign(secret: bytes, purpose: str, token: str) -> dict | None:
    """The payload of a token made by `sign`, or None if it was altered or is not one."""
    try:
        body, mac = token.split(".", 1)
        expected = hmac.new(secret, f"{purpose}.{body}".encode(), hashlib.sha256).digest()[:20]
        if not hmac.compare_digest(_unb64(mac), expected):
            return None
        payload = json.loads(_unb64(body))
        return payload if isinstance(payload, dict) else None
    except (ValueError, TypeError):
        return None
