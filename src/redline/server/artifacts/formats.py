"""What an artifact may be, told from its bytes, and how it is served back.

The type a client names (`screenshot`, `video`, `trace`, `report`) fixes the size cap and the
formats accepted; the format itself is read from the file's first bytes, never from its name or
the client's content type. The MIME type stored is the one detected.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

MiB = 1024 * 1024
SNIFF_BYTES = 64  # enough for every signature below


@dataclass(frozen=True)
class ArtifactType:
    name: str
    cap: int  # bytes
    formats: tuple[str, ...]
    description: str


TYPES: dict[str, ArtifactType] = {t.name: t for t in [
    ArtifactType("screenshot", 5 * MiB, ("png", "jpeg", "webp", "gif"), "a PNG, JPEG, WebP or GIF image"),
    ArtifactType("video", 100 * MiB, ("webm", "mp4", "avi", "mov"), "a WebM, MP4, AVI or MOV video"),
    ArtifactType("trace", 50 * MiB, ("zip",), "a ZIP archive (Playwright trace)"),
    ArtifactType("report", 200 * MiB, ("zip",), "a ZIP archive (HTML report)"),
]}
MAX_CAP = max(t.cap for t in TYPES.values())

MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
              "webm": "video/webm", "mp4": "video/mp4", "avi": "video/x-msvideo",
              "mov": "video/quicktime", "zip": "application/zip"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif", "webm": ".webm",
              "mp4": ".mp4", "avi": ".avi", "mov": ".mov", "zip": ".zip"}

# QuickTime files without an `ftyp` box start with one of these atoms.
_QT_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes, or None when it is none we accept."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:SNIFF_BYTES]:
        return "webm"
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in _QT_ATOMS:
        return "mov"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    return None


def cap_for_format(fmt: str) -> int:
    """The largest cap of the types that accept a format: what a stream is held to while its
    `type` field has not arrived yet."""
    return max(t.cap for t in TYPES.values() if fmt in t.formats)


# -- serving --------------------------------------------------------------------------------

# Served with their own Content-Type; anything else goes out as application/octet-stream.
SERVABLE = frozenset(MIME_TYPES.values())
# Shown in the browser (inline) when asked; everything else is always a download. Never SVG or
# HTML: they can run scripts.
INLINE = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "video/webm",
                    "video/mp4", "video/quicktime"})


def served_type(mime_type: str) -> str:
    return mime_type if mime_type in SERVABLE else "application/octet-stream"


def served_disposition(requested: str, content_type: str) -> str:
    return "inline" if requested == "inline" and content_type in INLINE else "attachment"


def default_disposition(mime_type: str) -> str:
    return "inline" if served_type(mime_type) in INLINE else "attachment"


def content_disposition(disposition: str, file_name: str) -> str:
    """`attachment; filename="ascii"; filename*=UTF-8''...` (RFC 6266): the name cannot end
    the header or start another, whatever characters it has."""
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._-+ ()") else "_"
                       for c in file_name).strip() or "download"
    return (f'{disposition}; filename="{fallback}"; '
            f"filename*=UTF-8''{quote(file_name, safe='')}")


# -- display names ----------------------------------------------------------------------------

_STRIP_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def display_name(raw: str | None, artifact_type: str, fmt: str | None) -> str:
    """A name to show and to offer on download: the last path part of what the client sent,
    without control or formatting characters (CR, LF, NUL, bidi overrides) or quotes. It is
    never used as a path: blobs are stored under server-made keys. Fullwidth dots and slashes
    are kept as the characters they are."""
    name = unicodedata.normalize("NFC", raw or "")
    name = "".join(c for c in name if unicodedata.category(c) not in _STRIP_CATEGORIES)
    name = re.split(r"[/\\]", name)[-1]
    name = name.replace('"', "").replace("'", "").strip().strip(".").strip()
    if not name:
        name = artifact_type + EXTENSIONS.get(fmt or "", "")
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[:255 - len(ext) - 1] + "." + ext
        else:
            name = name[:255]
    return name


def path_parts(raw: str | None) -> list[str]:
    """The client's name as path components (for matching a reporter's attachment paths)."""
    if not raw:
        return []
    return [p for p in re.split(r"[/\\]", raw) if p not in ("", ".")]
