"""Trace and report ZIPs are inspected before they are accepted (RELIABILITY.md section 10,
items 3 and 4): crafted archives through the real upload endpoint, and the inspector's limits
on their own. Nothing is ever extracted: no file appears anywhere, and memory stays flat."""

from __future__ import annotations

import io
import random
import struct
import threading
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest

from redline.server.artifacts import zipcheck
from redline.server.artifacts.blobs import blob_store
from tests.api.test_artifacts_support import MiB, crafted_zip, deflated, error_of, small_zip, upload


@pytest.fixture
def run_id(tenant) -> str:
    with tenant.as_key() as client:
        return client.post("/api/runs", json={"status": "running"}).json()["id"]


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


class PeakRss:
    """The largest resident size of this process (the server runs in it) while in the block."""

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def zip_of(entries: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def with_info(infos: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, data in infos:
            archive.writestr(info, data)
    return buffer.getvalue()


def symlink_zip() -> bytes:
    info = zipfile.ZipInfo("link")
    info.create_system = 3
    info.external_attr = (0o120777 << 16)
    return with_info([(info, b"/etc/passwd")])


def duplicate_zip(first: str, second: str) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate, and writes it
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(first, b"1")
            archive.writestr(second, b"2")
    return buffer.getvalue()


def nested(depth: int, copies: int = 2) -> bytes:
    """42.zip-style: archives of archives, `depth` levels below the top."""
    data = zip_of({"leaf.txt": b"0" * 1000})
    for level in range(depth):
        data = zip_of({f"level{level}-{i}.zip": data for i in range(copies)})
    return data


def bomb_of_many_entries(entries: int = 1000, each: int = 10 * MiB) -> bytes:
    """A ~10 MB ZIP that inflates to ~10 GB: the same deflated block under many names."""
    zeros = b"\0" * each
    packed = deflated(zeros)
    crc = zlib.crc32(zeros)
    return crafted_zip([{"name": f"part{i:04d}.bin", "data": packed, "method": 8,
                         "size": each, "crc": crc} for i in range(entries)])


def forged_size_bomb() -> bytes:
    """The headers say 100 bytes; the data inflates to 50 MiB (cpython#151307's trick)."""
    zeros = b"\0" * (50 * MiB)
    return crafted_zip([{"name": "small.txt", "data": deflated(zeros), "method": 8,
                         "size": 100, "crc": zlib.crc32(zeros[:100])}])


def overlapping() -> bytes:
    """zbsm.zip-style: the first entry's data covers the second entry's header and data."""
    body = crafted_zip([{"name": "a.txt", "data": b"A" * 10}, {"name": "b.txt",
                                                                "data": b"B" * 100}])
    # widen a.txt in the central directory to run over b.txt
    cd = body.rfind(b"PK\x01\x02", 0, body.rfind(b"PK\x01\x02"))
    widened = bytearray(body)
    struct.pack_into("<I", widened, cd + 20, 10 + 30 + 5 + 100)
    return bytes(widened)


def shared_header() -> bytes:
    """Two names in the directory, one local header for both."""
    body = bytearray(crafted_zip([{"name": "a.txt", "data": b"A"},
                                  {"name": "b.txt", "data": b"B"}]))
    second = body.rfind(b"PK\x01\x02")
    struct.pack_into("<I", body, second + 42, 0)
    return bytes(body)


def data_in_front() -> bytes:
    return b"MZ" + b"\0" * 100 + small_zip()


CRAFTED = {
    "../../x": (lambda: zip_of({"../../x": b"x"}), "name"),
    "a/../../x": (lambda: zip_of({"a/../../x": b"x"}), "name"),
    "/etc/x": (lambda: crafted_zip([{"name": "/etc/x", "data": b"x"}]), "name"),
    "..\\x": (lambda: crafted_zip([{"name": "..\\x", "data": b"x"}]), "name"),
    "C:/x": (lambda: crafted_zip([{"name": "C:/x", "data": b"x"}]), "name"),
    "NUL in a name": (lambda: crafted_zip([{"name": b"a\x00.txt", "data": b"x"}]), "name"),
    "a symlink": (symlink_zip, "special_file"),
    "a device": (lambda: crafted_zip([{"name": "dev", "data": b"", "mode": 0o020644}]),
                 "special_file"),
    "a duplicate name": (lambda: duplicate_zip("a.txt", "a.txt"), "duplicate"),
    "a name differing in case": (lambda: duplicate_zip("A.txt", "a.txt"), "duplicate"),
    "a folder and a file of one name": (lambda: crafted_zip([
        {"name": "x/", "data": b"", "mode": 0o040755}, {"name": "x", "data": b"1"}]),
        "duplicate"),
    "an encrypted entry": (lambda: crafted_zip([{"name": "e", "data": b"x", "flags": 1}]),
                           "encrypted"),
    "bzip2": (lambda: crafted_zip([{"name": "b", "data": b"x", "method": 12}]), "compression"),
    "a forged size": (forged_size_bomb, "forged_size"),
    "a bad CRC": (lambda: crafted_zip([{"name": "c", "data": b"abc", "crc": 1}]), "crc"),
    "overlapped entries": (overlapping, "overlap"),
    "one header for two names": (shared_header, "layout"),
    "42.zip nesting": (lambda: nested(4), "nesting"),
    "data after the archive": (lambda: small_zip() + b"trailing", "not_a_zip"),
    "10 MB inflating to 10 GB": (bomb_of_many_entries, "ratio"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_archive_is_refused_and_nothing_is_extracted(server, tenant, run_id, case,
                                                               tmp_path):
    build, problem = CRAFTED[case]
    data = build()
    root = Path(blob_store(server.app.state.settings).root)
    before = listing(root)
    with tenant.as_key() as client, PeakRss() as rss:
        response = upload(client, run_id, "trace", data, "trace.zip")
    error = error_of(response, "VALIDATION_ERROR", 400)
    assert error["details"]["reason"] == "unsafe_archive", response.text
    assert error["details"]["problem"] == problem, response.text
    assert listing(root) == before  # not one file, not even the staged upload
    assert rss.growth < 50 * MiB, f"RSS grew {rss.growth / MiB:.0f} MiB"


def test_data_in_front_of_the_archive_is_not_a_zip_and_is_refused(tenant, run_id):
    with tenant.as_key() as client:
        response = upload(client, run_id, "report", data_in_front(), "report.zip")
    assert error_of(response, "VALIDATION_ERROR", 400)["details"]["reason"] == "type_mismatch"
    with pytest.raises(zipcheck.UnsafeArchive) as caught:
        # even if its first bytes were a ZIP's: the directory is not where the end record says
        data = small_zip() + b"X" * 10 + small_zip()
        zipcheck.inspect_zip(io.BytesIO(data), len(data), zipcheck.LIMITS["trace"])
    assert caught.value.problem == "layout"


def test_real_shapes_of_traces_and_reports_are_accepted(tenant, run_id):
    trace = zip_of({"trace.trace": b'{"type":"context-options"}\n' * 1000,
                    "trace.network": b"{}\n" * 100, "resources/0a1b.png": b"\x89PNG" + b"1" * 500,
                    "resources/": b""})
    report = zip_of({"index.html": b"<html>report</html>", "data/3f2e.zip": trace,
                     "data/9c1d.png": b"\x89PNG" + b"2" * 300, "trace/index.html": b"<html/>"})
    zip64 = io.BytesIO()
    with zipfile.ZipFile(zip64, "w") as archive, archive.open("big.bin", "w",
                                                               force_zip64=True) as entry:
        entry.write(b"z" * 1000)

    class Unseekable(io.RawIOBase):  # written as a stream: data descriptors after entries
        def __init__(self):
            self.buffer = bytearray()

        def writable(self):
            return True

        def write(self, data):
            self.buffer += data
            return len(data)

    stream = Unseekable()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.txt", b"hello" * 100)
        archive.writestr("b/c.txt", b"world" * 100)
    with tenant.as_key() as client:
        for kind, data in [("trace", trace), ("report", report), ("trace", zip64.getvalue()),
                           ("trace", bytes(stream.buffer)), ("report", zip_of({}))]:
            response = upload(client, run_id, kind, data, f"{kind}.zip")
            assert response.status_code == 201, response.text


def test_a_bad_entry_inside_a_nested_trace_names_where_it_is(tenant, run_id):
    evil = zip_of({"../escape.txt": b"x"})
    report = zip_of({"index.html": b"<html/>", "data/trace.zip": evil})
    with tenant.as_key() as client:
        response = upload(client, run_id, "report", report, "report.zip")
    error = error_of(response, "VALIDATION_ERROR", 400)
    assert error["details"]["problem"] == "name"
    assert error["details"]["entry"] == "data/trace.zip!/../escape.txt"


def test_one_level_of_nesting_below_a_nested_trace_is_allowed_and_no_more():
    limits = zipcheck.LIMITS["report"]
    for depth, ok in [(1, True), (2, True), (3, False)]:
        data = nested(depth, copies=1)
        if ok:
            zipcheck.inspect_zip(io.BytesIO(data), len(data), limits)
        else:
            with pytest.raises(zipcheck.UnsafeArchive) as caught:
                zipcheck.inspect_zip(io.BytesIO(data), len(data), limits)
            assert caught.value.problem == "nesting"


@pytest.mark.parametrize("limits,entries,problem", [
    (zipcheck.Limits(max_entries=10), {f"{i}.txt": b"x" for i in range(11)}, "entries"),
    (zipcheck.Limits(max_total=1 * MiB, ratio_floor=0),
     {"a.bin": random.Random(1).randbytes(600_000),
      "b.bin": random.Random(2).randbytes(600_000)}, "total_size"),
    (zipcheck.Limits(ratio_floor=64 * 1024), {"z.bin": b"\0" * MiB}, "ratio"),
    # many small entries, each under the floor, still count toward the archive's ratio
    (zipcheck.Limits(ratio_floor=2 * MiB), {f"{i}.bin": b"\0" * MiB for i in range(5)},
     "ratio"),
])
def test_the_limits_on_entries_total_and_ratio(limits, entries, problem):
    data = zip_of(entries)
    with pytest.raises(zipcheck.UnsafeArchive) as caught:
        zipcheck.inspect_zip(io.BytesIO(data), len(data), limits)
    assert caught.value.problem == problem
