"""Receiving webhooks with the SDK (RELIABILITY.md 2.1 and 2.2): the known answer, then every
way a request can be forged or replayed."""

from __future__ import annotations

import base64

import pytest

from redline.sdk.webhooks import WebhookVerificationError, verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(signature: str = SIGNATURE, **changes) -> dict:
    return {"webhook-id": MSG_ID, "webhook-timestamp": str(TS), "webhook-signature": signature,
            **changes}


def test_the_known_answer_verifies():
    assert verify(SECRET, headers(), BODY, now=TS) == {"test": 2432232314}


def test_the_valid_signature_third_of_four_is_accepted():
    signature = f"v1,AAAA v2,{SIGNATURE[3:]} v1,{SIGNATURE[3:]} v1,ZZZZ"
    assert verify(SECRET, headers(signature), BODY, now=TS)


@pytest.mark.parametrize("case", ["body byte", "late", "early", "wrong secret", "only v2",
                                  "missing header", "bad timestamp"])
def test_forged_or_replayed_requests_are_refused(case):
    body, now, secret, given = BODY, TS, SECRET, headers()
    if case == "body byte":
        body = BODY.replace(b"4", b"5", 1)
    elif case == "late":
        now = TS + 301
    elif case == "early":
        now = TS - 301
    elif case == "wrong secret":
        secret = "whsec_" + base64.b64encode(b"x" * 24).decode()
    elif case == "only v2":
        given = headers("v2," + SIGNATURE[3:])
    elif case == "missing header":
        del given["webhook-id"]
    elif case == "bad timestamp":
        given = headers(**{"webhook-timestamp": "soon"})
    with pytest.raises(WebhookVerificationError):
        verify(secret, given, body, now=now)


def test_the_comparison_is_constant_time():
    import inspect

    from redline.sdk import webhooks

    assert "hmac.compare_digest" in inspect.getsource(webhooks.verify)
