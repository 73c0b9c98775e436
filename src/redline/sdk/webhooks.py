"""Verifying Redline's webhook deliveries on the receiving side (Standard Webhooks 1.0).

    from redline.sdk.webhooks import verify, WebhookVerificationError

    event = verify(secret, request.headers, request.body)   # raises when not genuine

A delivery is genuine when one of the `v1,` signatures in `webhook-signature` is the
HMAC-SHA256 of `"{webhook-id}.{webhook-timestamp}.{body}"` with the secret, compared in
constant time, and the timestamp is within `tolerance` seconds of now (either way): a replayed
or forged request is refused. Deduplicate on `webhook-id`: retries and redeliveries keep it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping

DEFAULT_TOLERANCE = 300  # seconds, as the Standard Webhooks libraries


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh delivery."""


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def verify(secret: str, headers: Mapping[str, str], body: bytes | str,
           tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> dict:
    """The delivery's JSON payload, once its signature and timestamp are checked."""
    payload = body.encode() if isinstance(body, str) else body
    message_id = _header(headers, "webhook-id")
    timestamp_text = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except ValueError:
        raise WebhookVerificationError("the secret is not whsec_ + base64") from None
    expected = hmac.new(key, f"{message_id}.{timestamp}.".encode() + payload,
                        hashlib.sha256).digest()
    for candidate in signatures.split():
        version, _, signature = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(signature)
        except ValueError:
            continue
        if hmac.compare_digest(given, expected):
            return json.loads(payload)
    raise WebhookVerificationError("no valid v1 signature")
