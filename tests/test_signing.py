"""The one signing helper (server/kit/signing.py): purpose and expiry are enforced, every signed
value the server hands out goes through it, and the wire formats stay byte for byte what they
were (the vectors below were made by the code before it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from redline.server.artifacts import signing as links
from redline.server.kit.signing import BadSignature, Signer, sign, unsign
from redline.server.webhooks import delivery

SRC = Path(__file__).resolve().parents[1] / "src" / "redline"
SECRET = b"k" * 32


def test_a_token_of_another_purpose_is_refused():
    token = sign(SECRET, "cursor", {"o": 50})
    assert unsign(SECRET, "cursor", token) == {"o": 50}
    assert unsign(SECRET, "report", token) is None
    mac = Signer(SECRET, "web-csrf").sign("nonce")
    assert Signer(SECRET, "web-csrf").is_valid(mac, "nonce")
    with pytest.raises(BadSignature, match="signature"):
        Signer(SECRET, "cursor").verify(mac, "nonce")
    # a file link's signature is not a report link's, for the same artifact and expiry
    file_sig = links.signature(SECRET, "GET", "artifact_1", "proj_1", 1000, "inline", "")
    with pytest.raises(BadSignature):
        links.verify_report_token(SECRET, "artifact_1", "proj_1", f"1000.{file_sig}", now=900)


def test_an_expired_token_is_refused_and_an_edited_expiry_is_a_bad_signature():
    token = sign(SECRET, "cursor", {"o": 1}, expires_at=100)
    assert unsign(SECRET, "cursor", token, now=100) == {"o": 1, "exp": 100}
    assert unsign(SECRET, "cursor", token, now=101) is None
    signer = Signer(SECRET, "link")
    mac = signer.sign("artifact_1", 100)
    signer.verify(mac, "artifact_1", 100, expires=100, now=100)
    with pytest.raises(BadSignature, match="expired"):
        signer.verify(mac, "artifact_1", 100, expires=100, now=101)
    with pytest.raises(BadSignature, match="signature"):
        signer.verify(mac, "artifact_1", 200, expires=200, now=101)
    with pytest.raises(BadSignature, match="signature"):  # longer-lived than ever minted
        signer.verify(signer.sign("a", 10_000), "a", 10_000, expires=10_000, now=0, max_ttl=60)


def test_an_altered_or_malformed_token_is_refused():
    token = sign(SECRET, "cursor", {"o": 1})
    body, mac = token.split(".")
    assert unsign(SECRET, "cursor", f"{body}x.{mac}") is None
    assert unsign(SECRET, "cursor", f"{body}.{mac[:-1]}A") is None
    assert unsign(b"other" * 8, "cursor", token) is None
    for junk in ("", ".", "nodot", "é.é", "a.b.c"):
        assert unsign(SECRET, "cursor", junk) is None
    assert not Signer(SECRET, "web-csrf", encoding="hex").is_valid("é", "nonce")


def test_the_wire_formats_are_unchanged():
    assert sign(SECRET, "cursor", {"o": 50, "l": 50, "b": "abc"}) == \
        "eyJiIjoiYWJjIiwibCI6NTAsIm8iOjUwfQ.lj9y0sn9XE_A4aRWjm-6zzAYquc"
    assert links.signed_query(SECRET, "artifact_1", "proj_1", 1000, "inline", "image/png") == \
        "exp=1000&disposition=inline&sig=4QIWMtfsf7l2Rmvg7k42dfzmbGD7dIE2uSFBwYf3EmU"
    assert links.report_token(SECRET, "artifact_1", "proj_1", 1000) == \
        "1000.z0oXa3s0ixLGjLInUlZDPhewDvlZQvUMozRe_eT5VKw"
    assert Signer(SECRET, "web-csrf", encoding="hex").sign("nonce123") == \
        "4d5538d3d4f49a8d77df4d8e9aec42376403bdfb965687799434b8090b290db5"
    # Standard Webhooks' own example
    assert delivery.sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                         1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _files_using_hmac(root: Path) -> set[str]:
    return {str(path.relative_to(SRC)) for path in root.rglob("*.py")
            if re.search(r"\bhmac\.new\(", path.read_text())}


def test_the_server_computes_macs_in_one_place_and_the_clients_verify_in_one():
    assert _files_using_hmac(SRC / "server") == {"server/kit/signing.py"}
    clients = set().union(*(_files_using_hmac(SRC / part) for part in ("sdk", "cli", "mcp")))
    assert clients == {"sdk/webhooks.py"}
