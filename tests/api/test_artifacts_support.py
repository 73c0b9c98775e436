"""Files, multipart bodies and link helpers shared by the artifact tests (no tests here)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

MiB = 1024 * 1024
CAPS = {"screenshot": 5 * MiB, "video": 100 * MiB, "trace": 50 * MiB, "report": 200 * MiB}

HEADS = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    "gif": b"GIF89a\x01\x00\x01\x00\x80\x00\x00",
    "webp": b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00",
    "webm": (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3"
             b"\x81\x08\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02"),
    "mp4": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",
    "mov": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ",
    "avi": b"RIFF\x24\x00\x00\x00AVI LIST\x00\x00\x00\x00hdrlavih",
}
MIME = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
        "webm": "video/webm", "mp4": "video/mp4", "mov": "video/quicktime",
        "avi": "video/x-msvideo", "zip": "application/zip"}
FORMAT_OF = {"screenshot": "png", "video": "webm", "trace": "zip", "report": "zip"}


def media(fmt: str, size: int = 256) -> bytes:
    head = HEADS[fmt]
    return head + bytes((i * 7) % 251 for i in range(size - len(head)))


def small_zip(entries: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (entries or {"trace.trace": b'{"type":"context-options"}\n'}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def sample(kind: str, size: int = 300) -> bytes:
    return small_zip() if kind in ("trace", "report") else media(FORMAT_OF[kind], size)


def file_of_size(kind: str, size: int, path: Path) -> Path:
    """A valid file of the kind, exactly `size` bytes, on disk (sparse where it can be)."""
    if kind in ("trace", "report"):
        name = "d"
        overhead = 30 + 46 + 2 * len(name) + 22
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_STORED
        with zipfile.ZipFile(path, "w") as archive, archive.open(info, "w") as entry:
            left = size - overhead
            block = b"\0" * MiB
            while left > 0:
                entry.write(block[:min(MiB, left)])
                left -= min(MiB, left)
    else:
        with open(path, "wb") as out:
            out.write(HEADS[FORMAT_OF[kind]])
            out.truncate(size)
    assert path.stat().st_size == size, (path.stat().st_size, size)
    return path


def upload(client: httpx.Client, run_id: str | None, kind: str | None, content,
           name: str = "file.bin", **fields) -> httpx.Response:
    data = {k: v for k, v in {"type": kind, "runId": run_id, **fields}.items() if v is not None}
    return client.post("/api/upload", data=data, files={"file": (name, content)})


def raw_multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"xYzBoUnDaRy") -> tuple[
        bytes, dict[str, str]]:
    """A multipart body whose part headers are exactly the bytes given:
    [(b'form-data; name="file"; filename="x"', content), ...]."""
    body = b""
    for disposition, content in parts:
        body += (b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n"
                 + content + b"\r\n")
    body += b"--" + boundary + b"--\r\n"
    return body, {"content-type": f"multipart/form-data; boundary={boundary.decode()}"}


def local(server, url: str) -> str:
    """A minted link, pointed at the test server (REDLINE_PUBLIC_URL is not its address)."""
    parts = urlsplit(url)
    return urlunsplit(("http", f"127.0.0.1:{server.port}", parts.path, parts.query, ""))


def fetch(server, url: str, method: str = "GET", **kwargs) -> httpx.Response:
    """Follow a link like a browser would: no credentials at all."""
    with httpx.Client(timeout=30) as client:
        return client.request(method, local(server, url), **kwargs)


def error_of(response: httpx.Response, code: str, status: int | None = None) -> dict:
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert error["code"] == code, response.text
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers.get("x-request-id")
    return error


# -- crafted archives ---------------------------------------------------------------------------

def crafted_zip(entries: list[dict]) -> bytes:
    """A ZIP written by hand, so every field can lie. Each entry: name (str|bytes), data
    (bytes as stored), size (declared), crc, method (0|8), flags, mode (unix mode bits),
    offset (override the central directory's header offset)."""
    out = bytearray()
    central = bytearray()
    for entry in entries:
        name = entry["name"].encode() if isinstance(entry["name"], str) else entry["name"]
        data = entry.get("data", b"")
        method = entry.get("method", 0)
        flags = entry.get("flags", 0x800)
        size = entry.get("size", len(data) if method == 0 else 0)
        crc = entry.get("crc", zlib.crc32(data) if method == 0 else 0)
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x21, crc,
                           len(data), size, len(name), 0) + name + data
        mode = entry.get("mode", 0o100644)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 20, 20, flags,
                               method, 0, 0x21, crc, len(data), size, len(name), 0, 0, 0, 0,
                               mode << 16, entry.get("offset", offset)) + name
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central),
                       cd_offset, 0)
    return bytes(out)


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()
