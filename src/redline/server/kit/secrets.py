"""Secrets kept at rest in the database (plans' secret env values, webhook secrets, stored
idempotent responses): AES-256-GCM under a key derived from the server's secret key.

    box = box_for(settings.resolved_secret_key)            # or SecretBox(key, "plan-env")
    sealed = box.seal("hunter2")      # 'rlsb1.<base64url of nonce + ciphertext + tag>'
    box.open(sealed) == "hunter2"     # bytes sealed come back as bytes

- The key is HKDF-SHA256 of `REDLINE_SECRET_KEY` with the `purpose` as its info, so a value
  sealed for one purpose does not open under another, and the server key itself never
  encrypts anything directly.
- A sealed value starts with its format's version (`rlsb1.`), so a later format (another
  algorithm, a rotated key) can read this one and write its own; `open_text` and
  `open_bytes` pass a value without the prefix through unchanged (rows written before
  their column was sealed).
- A fresh random 96-bit nonce per value; the purpose is also the associated data.
- `open` of a tampered value, a value sealed under another key or purpose, or an unknown
  version raises `SecretError` (never returns garbage).
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "rlsb1."
_NONCE_BYTES = 12
_TEXT, _BYTES = b"t", b"b"  # the first plaintext byte: what `open` gives back


class SecretError(Exception):
    """A sealed value that cannot be opened (tampered, another key, unknown format)."""


class SecretBox:
    """Seals and opens short values with a key derived from the server's secret key."""

    def __init__(self, server_key: bytes, purpose: str = "redline"):
        self.purpose = purpose.encode()
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"redline-secretbox-v1",
                   info=self.purpose).derive(server_key)
        self._aead = AESGCM(key)

    def seal(self, plaintext: str | bytes) -> str:
        data = (_BYTES + plaintext if isinstance(plaintext, bytes)
                else _TEXT + plaintext.encode())
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, data, self.purpose)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> str | bytes:
        """The value `seal` was given (str or bytes, as it was)."""
        if not sealed.startswith(PREFIX):
            raise SecretError(f"not a sealed value of a known format ({sealed[:6]!r}...)")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(PREFIX):].encode())
            nonce, ciphertext = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            data = self._aead.decrypt(nonce, ciphertext, self.purpose)
        except (InvalidTag, ValueError) as exc:
            raise SecretError("the sealed value cannot be opened: tampered with, or sealed "
                              "under another secret key") from exc
        kind, body = data[:1], data[1:]
        return body.decode() if kind == _TEXT else body

    def open_text(self, value: str) -> str:
        """A sealed text, or a value stored before its column was sealed (as it is)."""
        if not value.startswith(PREFIX):
            return value
        opened = self.open(value)
        return opened if isinstance(opened, str) else opened.decode()

    def open_bytes(self, value: bytes) -> bytes:
        """Sealed bytes (as stored: the sealed text's ASCII), or bytes stored before their
        column was sealed (as they are)."""
        if not value.startswith(PREFIX.encode()):
            return value
        opened = self.open(value.decode("ascii"))
        return opened if isinstance(opened, bytes) else opened.encode()

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(PREFIX)


@lru_cache(maxsize=16)
def box_for(server_key: bytes, purpose: str = "redline") -> SecretBox:
    """One box per key and purpose for the process (deriving the key costs a little)."""
    return SecretBox(server_key, purpose)
