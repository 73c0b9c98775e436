"""Sending one webhook request: Standard Webhooks signing, and the SSRF guard.

Signing (Standard Webhooks 1.0): headers `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
base64 secret after the `whsec_` prefix. Receivers can verify with the `standardwebhooks`
library.

SSRF: the host is resolved once, every address must be public (not loopback, private,
link-local, carrier-grade NAT, multicast, reserved or a metadata address, IPv4-mapped forms
included) unless it is inside `REDLINE_WEBHOOK_ALLOW_NETS`, and the request goes to the very
address that was checked (so DNS rebinding between check and connect cannot redirect it).
Redirects are never followed, and at most 64 KiB of the response is read.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from redline.server.kit.signing import Signer

TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
SIGNATURE_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type",
                     "host", "content-length"}


class BlockedDestination(ValueError):
    """The URL points somewhere Redline must not send requests."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    # The endpoint's secret is a key for this one purpose, so no purpose part: the signed
    # content is exactly Standard Webhooks' "{id}.{timestamp}.{body}".
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return "v1," + Signer(key, None, encoding="b64").sign(message_id, timestamp, body)


def parse_networks(text: str | None) -> list:
    return [ipaddress.ip_network(part.strip(), strict=False)
            for part in (text or "").split(",") if part.strip()]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo's server and client,
    NAT64): a packet to it may end up at them."""
    embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ipv4 for ipv4 in embedded if ipv4 is not None]


def _is_public(address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not all(_is_public(ipv4) for ipv4 in embedded):
            return False  # e.g. 2002:a9fe:a9fe:: (6to4 of 169.254.169.254), like the IPv4
        if address.sixtofour is not None:
            # as public as the IPv4 it carries (Python 3.13 calls all of 2002::/16 not global)
            return True
    return address.is_global and not (address.is_multicast or address.is_reserved)


def resolve_destination(url: str, allowed: list) -> tuple[str, str]:
    """(the address to connect to, the host name) for an allowed URL; BlockedDestination
    otherwise."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a malformed host or port
        raise BlockedDestination(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise BlockedDestination(f"only http and https URLs are allowed, not {parts.scheme!r}")
    if not host:
        raise BlockedDestination("the URL has no host")
    try:
        port = port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise BlockedDestination(f"cannot resolve {host!r}: {exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        inside = any(address in network for network in allowed)
        if not inside and not _is_public(address):
            raise BlockedDestination(f"{host!r} resolves to {address}, which is not a public "
                                     "address (allow it with REDLINE_WEBHOOK_ALLOW_NETS)")
    return str(addresses[0]), host


@dataclass
class Outcome:
    status_code: int | None
    latency_ms: int
    error: str | None
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def send(url: str, secret: str, message_id: str, body: bytes, custom_headers: dict,
         allowed: list, timeout: float | None = None) -> Outcome:
    """Deliver once. Raises BlockedDestination when the URL is not allowed (checked now,
    at delivery time, against the address actually dialled)."""
    timeout = TIMEOUT if timeout is None else timeout
    address, host = resolve_destination(url, allowed)
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    timestamp = int(time.time())
    headers = {k: v for k, v in custom_headers.items() if k.lower() not in SIGNATURE_HEADERS}
    headers.update({
        "Host": parts.netloc.rsplit("@", 1)[-1], "content-type": "application/json",
        "user-agent": "Redline-Webhooks/1", "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body)})
    started = time.monotonic()
    try:
        with (httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
              client.stream("POST", target, content=body, headers=headers,
                            extensions={"sni_hostname": host}) as response):
            received = 0
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received >= MAX_RESPONSE_BYTES:
                    break
            latency = int((time.monotonic() - started) * 1000)
            retry_after = None
            if response.status_code in (429, 503) and "retry-after" in response.headers:
                try:
                    retry_after = float(response.headers["retry-after"])
                except ValueError:
                    retry_after = None
            error = None if 200 <= response.status_code < 300 else (
                f"HTTP {response.status_code}" + (
                    " (redirects are not followed)" if 300 <= response.status_code < 400
                    else ""))
            return Outcome(response.status_code, latency, error, retry_after)
    except httpx.TimeoutException:
        return Outcome(None, int((time.monotonic() - started) * 1000),
                       f"no response within {timeout:.0f} s")
    except httpx.HTTPError as exc:
        return Outcome(None, int((time.monotonic() - started) * 1000),
                       f"{type(exc).__name__}: {exc}")
