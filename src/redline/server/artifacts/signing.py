"""Redline's own signed artifact URLs: `GET /artifacts/<id>?exp=<unix>&disposition=<d>&sig=<mac>`.

The MAC is HMAC-SHA256, under a key derived from the server's secret for this one purpose,
over the method, the artifact id, its project id, the expiry, and how the response will be
served (disposition and content type), so none of them can be changed without the signature
failing. Checked in constant time. A link works any number of times until it expires, like an
S3 presigned URL; the longest life is 7 days (SigV4's maximum). Rotating the secret key, or
deleting the artifact, ends every link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode

MAX_TTL_SECONDS = 7 * 24 * 3600
PARAMS = ("exp", "disposition", "sig")
DISPOSITIONS = ("inline", "attachment")


def _url_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"redline/artifact-url/v1", hashlib.sha256).digest()


def _message(method: str, artifact_id: str, project_id: str, exp: int, disposition: str,
             content_type: str) -> bytes:
    return "\n".join([method.upper(), artifact_id, project_id, str(exp), disposition,
                      content_type]).encode()


def signature(secret: bytes, method: str, artifact_id: str, project_id: str, exp: int,
              disposition: str, content_type: str) -> str:
    mac = hmac.new(_url_key(secret), _message(method, artifact_id, project_id, exp, disposition,
                                              content_type), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def signed_query(secret: bytes, artifact_id: str, project_id: str, exp: int, disposition: str,
                 content_type: str) -> str:
    sig = signature(secret, "GET", artifact_id, project_id, exp, disposition, content_type)
    return urlencode({"exp": exp, "disposition": disposition, "sig": sig})


@dataclass
class LinkParams:
    exp: int
    disposition: str
    sig: str


class BadLink(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_params(pairs: list[tuple[str, str]]) -> LinkParams:
    """Exactly the three parameters, each once: anything added, dropped or repeated is a
    tampered link."""
    names = [name for name, _ in pairs]
    if sorted(names) != sorted(PARAMS):
        raise BadLink("parameters")
    values = dict(pairs)
    exp = values["exp"]
    if not exp.isascii() or not exp.isdigit() or len(exp) > 12:
        raise BadLink("parameters")
    if values["disposition"] not in DISPOSITIONS:
        raise BadLink("parameters")
    return LinkParams(int(exp), values["disposition"], values["sig"])


def verify(secret: bytes, method: str, artifact_id: str, project_id: str, params: LinkParams,
           content_type: str, now: int) -> None:
    """Raise BadLink("signature") or BadLink("expired"); the signature is checked first, so
    an edited expiry is a bad signature, not an expired link."""
    expected = signature(secret, method, artifact_id, project_id, params.exp,
                         params.disposition, content_type)
    if not hmac.compare_digest(expected.encode(), params.sig.encode("utf-8", "replace")):
        raise BadLink("signature")
    if now > params.exp:
        raise BadLink("expired")
    if params.exp - now > MAX_TTL_SECONDS + 60:
        raise BadLink("signature")  # never minted by this server


# -- report links -----------------------------------------------------------------------------
# A report (a ZIP of Playwright's HTML report folder) is browsed entry by entry:
# `/artifacts/<id>/report/<exp>.<sig>/<entry path>`. The token is in the path, not the query,
# so the report's relative links (`./app.js`, `data/x.png`) carry it; it covers the artifact,
# its project and the expiry (any entry of that one archive may be asked for under it), under
# its own message prefix so it can never be mistaken for a file link's signature.

def report_signature(secret: bytes, artifact_id: str, project_id: str, exp: int) -> str:
    message = "\n".join(["REPORT", artifact_id, project_id, str(exp)]).encode()
    mac = hmac.new(_url_key(secret), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def report_token(secret: bytes, artifact_id: str, project_id: str, exp: int) -> str:
    return f"{exp}.{report_signature(secret, artifact_id, project_id, exp)}"


def verify_report_token(secret: bytes, artifact_id: str, project_id: str, token: str,
                        now: int) -> int:
    """The token's expiry, or BadLink("parameters" | "signature" | "expired")."""
    exp_text, dot, sig = token.partition(".")
    if not dot or not exp_text.isascii() or not exp_text.isdigit() or len(exp_text) > 12:
        raise BadLink("parameters")
    exp = int(exp_text)
    expected = report_signature(secret, artifact_id, project_id, exp)
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
        raise BadLink("signature")
    if now > exp:
        raise BadLink("expired")
    if exp - now > MAX_TTL_SECONDS + 60:
        raise BadLink("signature")
    return exp
