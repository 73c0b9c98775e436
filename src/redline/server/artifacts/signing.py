"""Redline's own signed artifact URLs: `GET /artifacts/<id>?exp=<unix>&disposition=<d>&sig=<mac>`.

The MAC is HMAC-SHA256, under a key derived from the server's secret for this one purpose,
over the method, the artifact id, its project id, the expiry, and how the response will be
served (disposition and content type), so none of them can be changed without the signature
failing. Checked in constant time. A link works any number of times until it expires, like an
S3 presigned URL; the longest life is 7 days (SigV4's maximum). Rotating the secret key, or
deleting the artifact, ends every link.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from redline.server.kit.signing import BadSignature, Signer, derive_key

MAX_TTL_SECONDS = 7 * 24 * 3600
PARAMS = ("exp", "disposition", "sig")
DISPOSITIONS = ("inline", "attachment")

#: a refused link; `reason` is "parameters", "signature" or "expired"
BadLink = BadSignature


def _signer(secret: bytes, purpose: str) -> Signer:
    """The link signer: the purpose is the method (a file link) or REPORT (a report link),
    the parts joined by newlines, under a key derived for artifact URLs alone."""
    return Signer(derive_key(secret, "redline/artifact-url/v1"), purpose, separator=b"\n")


def signature(secret: bytes, method: str, artifact_id: str, project_id: str, exp: int,
              disposition: str, content_type: str) -> str:
    return _signer(secret, method.upper()).sign(artifact_id, project_id, exp, disposition,
                                                content_type)


def signed_query(secret: bytes, artifact_id: str, project_id: str, exp: int, disposition: str,
                 content_type: str) -> str:
    sig = signature(secret, "GET", artifact_id, project_id, exp, disposition, content_type)
    return urlencode({"exp": exp, "disposition": disposition, "sig": sig})


@dataclass
class LinkParams:
    exp: int
    disposition: str
    sig: str


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
    _signer(secret, method.upper()).verify(
        params.sig, artifact_id, project_id, params.exp, params.disposition, content_type,
        expires=params.exp, now=now, max_ttl=MAX_TTL_SECONDS)


# -- report links -----------------------------------------------------------------------------
# A report (a ZIP of Playwright's HTML report folder) is browsed entry by entry:
# `/artifacts/<id>/report/<exp>.<sig>/<entry path>`. The token is in the path, not the query,
# so the report's relative links (`./app.js`, `data/x.png`) carry it; it covers the artifact,
# its project and the expiry (any entry of that one archive may be asked for under it), under
# its own message prefix so it can never be mistaken for a file link's signature.

def report_signature(secret: bytes, artifact_id: str, project_id: str, exp: int) -> str:
    return _signer(secret, "REPORT").sign(artifact_id, project_id, exp)


def report_token(secret: bytes, artifact_id: str, project_id: str, exp: int) -> str:
    return f"{exp}.{report_signature(secret, artifact_id, project_id, exp)}"


def verify_report_token(secret: bytes, artifact_id: str, project_id: str, token: str,
                        now: int) -> int:
    """The token's expiry, or BadLink("parameters" | "signature" | "expired")."""
    exp_text, dot, sig = token.partition(".")
    if not dot or not exp_text.isascii() or not exp_text.isdigit() or len(exp_text) > 12:
        raise BadLink("parameters")
    exp = int(exp_text)
    _signer(secret, "REPORT").verify(sig, artifact_id, project_id, exp, expires=exp, now=now,
                                     max_ttl=MAX_TTL_SECONDS)
    return exp
