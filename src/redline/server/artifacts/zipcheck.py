"""Inspecting an uploaded ZIP (a trace or a report) before it is accepted.

Nothing is extracted: the central directory is read and every entry's data is streamed
through its decompressor, counting the bytes that come out. Refused:

- names that are absolute (`/x`, `C:x`), contain `..` parts, backslashes or NUL, or repeat
  another entry's name (exactly, or differing only in case or by a trailing slash);
- symlinks and other special files; encrypted entries; compression other than stored/deflate;
- entries whose data overlap another entry or the central directory (zbsm-style bombs), local
  headers that disagree with the central directory, data before the first entry or after the
  end record, split archives;
- an uncompressed size that differs from the declared one (a forged size), a bad CRC;
- over the limits: entry count, total uncompressed bytes (nested archives included), the
  compression ratio of an entry or of the whole, nesting depth (42.zip).

Python's zipfile is not used to read the directory: it tolerates data before the archive and
reads the whole central directory into memory at the size the archive claims.
"""

from __future__ import annotations

import struct
import tempfile
import unicodedata
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from redline.server.artifacts.formats import MiB

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Limits:
    max_entries: int = 50_000
    max_total: int = 2048 * MiB  # uncompressed bytes of everything, nested archives included
    max_ratio: int = 200  # uncompressed / compressed, for an entry and for the archive
    ratio_floor: int = 4 * MiB  # smaller outputs may have any ratio (a blank log compresses well)
    max_depth: int = 2  # archives inside archives: a report's traces are depth 1
    max_central_directory: int = 64 * MiB


LIMITS = {"trace": Limits(max_total=512 * MiB), "report": Limits(max_total=2048 * MiB)}


class UnsafeArchive(Exception):
    def __init__(self, problem: str, message: str, entry: str | None = None):
        super().__init__(message)
        self.problem = problem
        self.entry = entry


@dataclass
class Budget:
    ratio_cap: int  # the whole upload may inflate to this (its size x max_ratio)
    total: int = 0  # uncompressed bytes seen so far, across nested archives


@dataclass
class Entry:
    name: str
    raw_name: bytes
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    offset: int
    mode: int
    data_start: int = 0


@dataclass
class Summary:
    entries: int
    uncompressed: int
    nested: list[str] = field(default_factory=list)


def inspect_zip(fp: BinaryIO, size: int, limits: Limits, budget: Budget | None = None,
                depth: int = 0, where: str = "") -> Summary:
    """Raise UnsafeArchive unless the archive in `fp` (of `size` bytes) is safe to keep."""
    budget = budget or Budget(max(limits.ratio_floor, size * limits.max_ratio))
    cd_offset, cd_size, count, _ = _end_record(fp, size, limits)
    entries = _central_directory(fp, cd_offset, cd_size, count, where)
    _check_names(entries, where)
    _check_layout(fp, entries, cd_offset, where)
    summary = Summary(len(entries), 0)
    for entry in sorted(entries, key=lambda e: e.offset):
        summary.uncompressed += _stream_entry(fp, entry, limits, budget, depth, where, summary)
    return summary


# -- the directory ----------------------------------------------------------------------------

def _read_at(fp: BinaryIO, offset: int, length: int) -> bytes:
    fp.seek(offset)
    data = fp.read(length)
    if len(data) != length:
        raise UnsafeArchive("truncated", "the archive is truncated")
    return data


def _end_record(fp: BinaryIO, size: int, limits: Limits) -> tuple[int, int, int, int]:
    if size < 22:
        raise UnsafeArchive("not_a_zip", "the file is too short to be a ZIP archive")
    tail_len = min(size, 22 + 65535)
    tail = _read_at(fp, size - tail_len, tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    while pos >= 0 and pos + 22 + struct.unpack("<H", tail[pos + 20:pos + 22])[0] != tail_len:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    if pos < 0:
        raise UnsafeArchive("not_a_zip", "no ZIP end record at the end of the file (data after "
                            "the archive, or not a ZIP)")
    end_start = size - tail_len + pos
    (_, disk, cd_disk, _on_disk, count, cd_size, cd_offset,
     _comment) = struct.unpack("<IHHHHIIH", tail[pos:pos + 22])
    record_start = end_start
    if 0xFFFF in (disk, cd_disk, count) or 0xFFFFFFFF in (cd_size, cd_offset):
        if end_start < 20:
            raise UnsafeArchive("not_a_zip", "a ZIP64 archive without its locator")
        locator = _read_at(fp, end_start - 20, 20)
        sig, z_disk, z64_offset, disks = struct.unpack("<IIQI", locator)
        if sig != 0x07064B50 or z_disk != 0 or disks != 1:
            raise UnsafeArchive("not_a_zip", "a ZIP64 archive without a valid locator")
        if z64_offset + 56 > end_start - 20:
            raise UnsafeArchive("layout", "the ZIP64 end record is out of place")
        record = _read_at(fp, z64_offset, 56)
        (sig, _rec_size, _made, _need, disk, cd_disk, _on_disk, count, cd_size,
         cd_offset) = struct.unpack("<IQHHIIQQQQ", record)
        if sig != 0x06064B50:
            raise UnsafeArchive("not_a_zip", "a ZIP64 archive without its end record")
        record_start = z64_offset
    if disk != 0 or cd_disk != 0:
        raise UnsafeArchive("split", "split (multi-disk) archives are not accepted")
    if count > limits.max_entries:
        raise UnsafeArchive("entries", f"the archive has {count} entries; at most "
                            f"{limits.max_entries} are accepted")
    if cd_size > limits.max_central_directory:
        raise UnsafeArchive("entries", "the archive's directory is too large")
    if cd_offset + cd_size != record_start:
        # zipfile would shift every offset to make room for data in front; we do not
        raise UnsafeArchive("layout", "the central directory is not where the end record "
                            "says (data before or inside the archive)")
    return cd_offset, cd_size, count, end_start


def _central_directory(fp: BinaryIO, cd_offset: int, cd_size: int, count: int,
                       where: str) -> list[Entry]:
    data = _read_at(fp, cd_offset, cd_size)
    entries: list[Entry] = []
    pos = 0
    for _ in range(count):
        if pos + 46 > len(data) or data[pos:pos + 4] != b"PK\x01\x02":
            raise UnsafeArchive("layout", "the central directory is damaged")
        (made_by, _need, flags, method, _time, _date, crc, compressed, size, n_len, x_len,
         c_len, disk, _internal, external, offset) = struct.unpack(
            "<HHHHHHIIIHHHHHII", data[pos + 4:pos + 46])
        raw_name = data[pos + 46:pos + 46 + n_len]
        extra = data[pos + 46 + n_len:pos + 46 + n_len + x_len]
        pos += 46 + n_len + x_len + c_len
        if pos > len(data):
            raise UnsafeArchive("layout", "the central directory is damaged")
        if disk not in (0, 0xFFFF):
            raise UnsafeArchive("split", "split (multi-disk) archives are not accepted")
        size, compressed, offset = _zip64_extra(extra, size, compressed, offset)
        try:
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        except UnicodeDecodeError:
            raise UnsafeArchive("name", "an entry name is not valid UTF-8") from None
        mode = (external >> 16) & 0xFFFF if made_by >> 8 in (3, 19) else 0  # Unix, OS X
        entries.append(Entry(name, raw_name, flags, method, crc, compressed, size, offset,
                             mode))
    if pos != len(data):
        raise UnsafeArchive("layout", "the central directory has data it does not list")
    return entries


def _zip64_extra(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos:pos + 4])
        body = extra[pos + 4:pos + 4 + length]
        if tag == 0x0001:
            values = list(struct.unpack(f"<{len(body) // 8}Q", body[:len(body) // 8 * 8]))
            if size == 0xFFFFFFFF and values:
                size = values.pop(0)
            if compressed == 0xFFFFFFFF and values:
                compressed = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
        pos += 4 + length
    return size, compressed, offset


# -- names and layout -------------------------------------------------------------------------

_SPECIAL = {0o120000: "a symlink", 0o020000: "a device", 0o060000: "a device",
            0o010000: "a FIFO", 0o140000: "a socket"}


def _check_names(entries: list[Entry], where: str) -> None:
    seen: set[str] = set()
    for entry in entries:
        name = entry.name
        label = where + name
        if not name or "\x00" in name:
            raise UnsafeArchive("name", "an entry has an empty name or a NUL byte", label)
        if "\\" in name:
            raise UnsafeArchive("name", f"entry '{label}' has a backslash in its name", label)
        if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise UnsafeArchive("name", f"entry '{label}' has an absolute path", label)
        if ".." in name.split("/"):
            raise UnsafeArchive("name", f"entry '{label}' climbs out of the archive (..)", label)
        kind = _SPECIAL.get(entry.mode & 0o170000)
        if kind:
            raise UnsafeArchive("special_file", f"entry '{label}' is {kind}", label)
        if entry.flags & 0x41:
            raise UnsafeArchive("encrypted", f"entry '{label}' is encrypted", label)
        if entry.method not in (0, 8):
            raise UnsafeArchive("compression", f"entry '{label}' uses compression method "
                                f"{entry.method}; only stored and deflate are accepted", label)
        key = unicodedata.normalize("NFC", name.rstrip("/")).casefold()
        if key in seen:
            raise UnsafeArchive("duplicate", f"entry '{label}' appears twice", label)
        seen.add(key)


def _check_layout(fp: BinaryIO, entries: list[Entry], cd_offset: int, where: str) -> None:
    spans = []
    for entry in entries:
        label = where + entry.name
        if entry.offset + 30 > cd_offset:
            raise UnsafeArchive("overlap", f"entry '{label}' starts inside the directory", label)
        header = _read_at(fp, entry.offset, 30)
        (sig, _need, flags, method, _t, _d, _crc, _csize, _size, n_len,
         x_len) = struct.unpack("<IHHHHHIIIHH", header)
        if sig != 0x04034B50:
            raise UnsafeArchive("layout", f"entry '{label}' has no local header", label)
        if method != entry.method or (flags & 0x41):
            raise UnsafeArchive("layout", f"entry '{label}': the local header disagrees with "
                                "the directory", label)
        if _read_at(fp, entry.offset + 30, n_len) != entry.raw_name:
            raise UnsafeArchive("layout", f"entry '{label}': the local name differs from the "
                                "directory's", label)
        entry.data_start = entry.offset + 30 + n_len + x_len
        spans.append((entry.offset, entry.data_start + entry.compressed, label))
    spans.sort()
    if spans and spans[0][0] != 0:
        raise UnsafeArchive("layout", "the archive has data before its first entry")
    for (_, end, label), (next_start, _, _) in zip(spans, spans[1:] + [(cd_offset, 0, "")]):
        if end > next_start:
            raise UnsafeArchive("overlap", f"entry '{label}' overlaps the next one (overlapped "
                                "entries: a possible zip bomb)", label)


# -- the data ---------------------------------------------------------------------------------

def _stream_entry(fp: BinaryIO, entry: Entry, limits: Limits, budget: Budget, depth: int,
                  where: str, summary: Summary) -> int:
    label = where + entry.name
    decompressor = zlib.decompressobj(-15) if entry.method == 8 else None
    crc = 0
    out_total = 0
    nested = None
    head = b""
    left = entry.compressed
    fp.seek(entry.data_start)

    def take(out: bytes) -> None:
        nonlocal crc, out_total, nested, head
        if not out:
            return
        out_total += len(out)
        budget.total += len(out)
        if out_total > entry.size:
            raise UnsafeArchive("forged_size", f"entry '{label}' inflates past its declared "
                                f"size of {entry.size} bytes (a forged size: a zip bomb)", label)
        if out_total > limits.ratio_floor and out_total > entry.compressed * limits.max_ratio:
            raise UnsafeArchive("ratio", f"entry '{label}' expands over "
                                f"{limits.max_ratio}:1", label)
        if budget.total > limits.max_total:
            raise UnsafeArchive("total_size", f"the archive inflates to over {limits.max_total} "
                                "bytes", label)
        if budget.total > budget.ratio_cap:
            raise UnsafeArchive("ratio", f"the archive inflates over {limits.max_ratio} times "
                                "its size", label)
        crc = zlib.crc32(out, crc)
        if len(head) < 4:
            head += out[:4 - len(head)]
            if len(head) >= 4 and head in (b"PK\x03\x04", b"PK\x05\x06"):
                if depth + 1 > limits.max_depth:
                    raise UnsafeArchive("nesting", f"entry '{label}' is an archive nested more "
                                        f"than {limits.max_depth} deep", label)
                nested = tempfile.SpooledTemporaryFile(max_size=8 * MiB)  # noqa: SIM115
        if nested is not None:
            nested.write(out)

    try:
        while left > 0:
            chunk = fp.read(min(CHUNK, left))
            if not chunk:
                raise UnsafeArchive("truncated", f"entry '{label}' is truncated", label)
            left -= len(chunk)
            if decompressor is None:
                take(chunk)
                continue
            take(decompressor.decompress(chunk, CHUNK))
            while decompressor.unconsumed_tail:
                take(decompressor.decompress(decompressor.unconsumed_tail, CHUNK))
            if decompressor.eof and left > 0:
                raise UnsafeArchive("layout", f"entry '{label}' has data after its end", label)
        if decompressor is not None:
            take(decompressor.flush())
            if not decompressor.eof:
                raise UnsafeArchive("truncated", f"entry '{label}': the compressed data ends "
                                    "early", label)
        if out_total != entry.size:
            raise UnsafeArchive("forged_size", f"entry '{label}' holds {out_total} bytes, not "
                                f"the {entry.size} its header declares", label)
        if crc != entry.crc:
            raise UnsafeArchive("crc", f"entry '{label}' fails its CRC check", label)
        if nested is not None:
            summary.nested.append(label)
            nested.seek(0)
            inspect_zip(cast(BinaryIO, nested), out_total, limits, budget, depth + 1,
                        where=label + "!/")
    except zlib.error:
        raise UnsafeArchive("corrupt", f"entry '{label}' is not valid deflate data",
                            label) from None
    finally:
        if nested is not None:
            nested.close()
    return out_total
