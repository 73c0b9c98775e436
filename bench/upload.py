"""Upload benchmark: MB/s of `POST /api/upload` for a 50 MB trace, beside a plain file copy of
the same bytes in the same run (the ceiling of writing them once).

    .venv/bin/python bench/upload.py [--megabytes 50] [--repeats 5]

The trace is a real ZIP (stored entries of random bytes: nothing compresses), so the server's
ZIP inspection reads every byte, as it does for a Playwright trace.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import Server, machine_description, scratch_database, temporary_directory


def make_trace(megabytes: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(megabytes):
            archive.writestr(f"resources/{i:04d}.bin", os.urandom(1024 * 1024))
        archive.writestr("trace.trace", b'{"type":"context-options"}\n')
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    workdir = temporary_directory("redline-upload-")
    url, drop = scratch_database("sqlite", workdir)
    trace = make_trace(args.megabytes - 1)
    size_mb = len(trace) / 1e6
    source = workdir / "trace.zip"
    source.write_bytes(trace)
    copies = []
    for i in range(args.repeats):
        started = time.perf_counter()
        shutil.copyfile(source, workdir / f"copy{i}.zip")
        os.sync()
        copies.append(time.perf_counter() - started)
    server = Server("redline", "redline.server.app:create_app", factory=True, env={
        "REDLINE_DATABASE_URL": url, "REDLINE_DATA_DIR": str(workdir / "data"),
        "REDLINE_RATE_LIMIT_ENABLED": "false"})
    uploads = []
    try:
        server.start(workdir)
        server.wait_ready("/api/health")
        key = httpx.post(f"{server.url}/api/setup", json={
            "email": "bench@example.com", "password": "benchmark-password"}).json()["apiKey"]
        client = httpx.Client(base_url=server.url, timeout=300,
                              headers={"X-API-Key": key["key"]})
        run = client.post("/api/runs", json={"status": "running"}).json()
        for _ in range(args.repeats):
            started = time.perf_counter()
            response = client.post("/api/upload", data={"type": "trace", "runId": run["id"]},
                                   files={"file": ("trace.zip", trace, "application/zip")})
            uploads.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text[:300]
        client.close()
    finally:
        server.stop()
        drop()
    upload_s, copy_s = statistics.median(uploads), statistics.median(copies)
    print(f"upload benchmark on {machine_description()}")
    print(f"\n{'what':34} {'seconds':>8} {'MB/s':>8}")
    print(f"{'POST /api/upload (trace, ' + f'{size_mb:.0f} MB)':34} {upload_s:8.3f} "
          f"{size_mb / upload_s:8.1f}")
    print(f"{'plain file copy (+ sync)':34} {copy_s:8.3f} {size_mb / copy_s:8.1f}")
    print(f"\nupload runs at {copy_s / upload_s:.0%} of the plain copy's rate "
          f"(medians of {args.repeats}); it also parses multipart, checks the ZIP entry by "
          "entry, hashes and stores")


if __name__ == "__main__":
    main()
