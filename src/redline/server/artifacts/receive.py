"""Receiving an upload: the multipart body parsed as it streams, the file written to a staging
file (never held in memory), its size capped and its format read from its first bytes as
they arrive.

The cap while streaming is the type's when `type` is known (query parameter, or a form field
sent before the file); otherwise the largest cap of the types that accept the detected format
(a PNG is held to the screenshot cap from its first bytes). The exact type cap is checked again
once every field has arrived.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from redline.server.artifacts import formats
from redline.server.http_errors import ApiError, validation_error

FIELDS = ("type", "runId", "testId", "projectId")
MAX_FIELD_BYTES = 1024
FLUSH_BYTES = 1024 * 1024


@dataclass
class Received:
    fields: dict[str, str] = field(default_factory=dict)
    has_file: bool = False
    raw_name: str | None = None
    fmt: str | None = None
    size: int = 0
    sha256: str = ""
    path: Path | None = None


def too_large(artifact_type: str | None, cap: int, fmt: str | None = None) -> ApiError:
    what = f"a {artifact_type}" if artifact_type else f"any type taking {(fmt or '').upper()}"
    return ApiError("PAYLOAD_TOO_LARGE", f"The file is over the {cap}-byte cap of {what}",
                    {"field": "file", "limit": cap, **({"type": artifact_type}
                                                       if artifact_type else {})})


def not_the_type(artifact_type: str, fmt: str | None) -> ApiError:
    kind = formats.TYPES[artifact_type]
    found = f"its bytes are {fmt.upper()}" if fmt else "its bytes match no accepted format"
    error = validation_error("file", "type_mismatch", f"A {artifact_type} must be "
                             f"{kind.description}; {found}")
    error.details["detected"] = fmt
    return error


def check_type_field(value: str | None) -> str | None:
    if value is not None and value not in formats.TYPES:
        raise validation_error("type", "invalid_choice", "Field 'type' must be one of "
                               + ", ".join(formats.TYPES))
    return value


class UploadReceiver:
    def __init__(self, boundary: bytes, new_staging_file, query: dict[str, str]):
        self.result = Received(fields=dict(query))
        self._new_staging_file = new_staging_file
        self._digest = hashlib.sha256()
        self._pending = bytearray()
        self._head = bytearray()
        self._cap: int | None = None
        self._handle: BinaryIO | None = None
        self._part: str | None = None  # "file" or a field name
        self._value = bytearray()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._query_fields = set(query)
        self._form_fields: set[str] = set()
        self.complete = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_header_field": self._header_field,
            "on_header_value": self._header_val, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_end": self._end})

    # -- driving ------------------------------------------------------------------------

    async def receive(self, stream) -> Received:
        try:
            try:
                async for chunk in stream:
                    self._parser.write(chunk)
                    if len(self._pending) >= FLUSH_BYTES:
                        await self._flush()
            except ClientDisconnect:
                raise ApiError("VALIDATION_ERROR", "The client went away mid-upload",
                               {"field": "file", "reason": "disconnected"}) from None
            self._parser.finalize()
            if not self.complete:
                raise validation_error("body", "malformed_multipart", "The multipart body "
                                       "ends before its closing boundary")
            await self._flush()
            await anyio.to_thread.run_sync(self._close)
        except BaseException:
            await anyio.to_thread.run_sync(self.discard)
            raise
        self.result.sha256 = self._digest.hexdigest()
        return self.result

    async def _flush(self) -> None:
        if not self._pending:
            return
        data = bytes(self._pending)
        self._pending.clear()
        await anyio.to_thread.run_sync(self._write, data)

    def _write(self, data: bytes) -> None:
        if self._handle is None:
            self.result.path = self._new_staging_file()
            self._handle = open(self.result.path, "wb")  # noqa: SIM115 (kept across chunks)
        self._digest.update(data)
        self._handle.write(data)

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def discard(self) -> None:
        """Remove the staged file (the upload failed or was refused)."""
        self._close()
        if self.result.path is not None:
            self.result.path.unlink(missing_ok=True)
            self.result.path = None

    # -- parser callbacks ---------------------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}
        self._part = None
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_value) > 4096:
            raise validation_error("body", "malformed_multipart", "A part header is too long")

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).decode("latin-1").lower()] = bytes(
            self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition", b"")
        kind, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if kind != b"form-data" or not name:
            raise validation_error("body", "malformed_multipart", "Every part needs "
                                   "'Content-Disposition: form-data; name=...'")
        if name == "file":
            if self.result.has_file:
                raise validation_error("file", "too_many", "Send one file per upload")
            self.result.has_file = True
            self.result.raw_name = _file_name(disposition, options)
            artifact_type = self.result.fields.get("type")
            if artifact_type is not None:
                self._cap = formats.TYPES[artifact_type].cap
        elif name in FIELDS:
            if name in self._form_fields:
                raise validation_error(name, "duplicate", f"Field '{name}' is sent twice")
            self._form_fields.add(name)
        else:
            raise validation_error(name, "unknown_field", f"Field '{name}' is not accepted "
                                   "here")
        self._part = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file":
            self._file_data(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            assert self._part is not None  # data comes after a part's headers
            raise validation_error(self._part, "too_long", f"Field '{self._part}' is too long")

    def _file_data(self, chunk: bytes) -> None:
        result = self.result
        result.size += len(chunk)
        if result.fmt is None and len(self._head) < formats.SNIFF_BYTES:
            self._head += chunk[:formats.SNIFF_BYTES - len(self._head)]
            if len(self._head) >= formats.SNIFF_BYTES:
                self._detect()
        if self._cap is not None and result.size > self._cap:
            raise too_large(result.fields.get("type"), self._cap, result.fmt)
        self._pending += chunk

    def _detect(self) -> None:
        result = self.result
        result.fmt = formats.sniff(bytes(self._head))
        artifact_type = result.fields.get("type")
        if artifact_type is not None:
            if result.fmt not in formats.TYPES[artifact_type].formats:
                raise not_the_type(artifact_type, result.fmt)
        elif result.fmt is None:
            raise validation_error("file", "type_mismatch", "The file is none of the accepted "
                                   "formats (PNG, JPEG, WebP, GIF, WebM, MP4, AVI, MOV, ZIP)")
        else:
            self._cap = formats.cap_for_format(result.fmt)
        if self._cap is not None and result.size > self._cap:
            raise too_large(artifact_type, self._cap, result.fmt)

    def _part_end(self) -> None:
        if self._part == "file":
            if self.result.fmt is None:
                self._detect()
        elif self._part is not None:
            value = bytes(self._value).decode("utf-8", "replace").strip()
            if self._part in self._query_fields and self.result.fields[self._part] != value:
                raise validation_error(self._part, "conflict", f"Field '{self._part}' differs "
                                       "between the query and the form")
            if self._part == "type":
                check_type_field(value)
            self.result.fields[self._part] = value
        self._part = None

    def _end(self) -> None:
        self.complete = True


_FILENAME_STAR = re.compile(rb"filename\*\s*=\s*([^;]+)", re.IGNORECASE)


def _file_name(disposition: bytes, options: dict[bytes, bytes]) -> str | None:
    """The client's file name: RFC 5987 `filename*` when sent, else `filename`."""
    star = _FILENAME_STAR.search(disposition)
    if star:
        value = star.group(1).strip().strip(b'"').decode("latin-1")
        charset, _, rest = value.partition("'")
        _, _, encoded = rest.partition("'")
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="replace")
        except LookupError:
            pass
    raw = options.get(b"filename")
    return None if raw is None else raw.decode("utf-8", "replace")


def boundary_of(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise validation_error("Content-Type", "unsupported_media_type", "Send the upload as "
                               "multipart/form-data with a 'file' part")
    return boundary
