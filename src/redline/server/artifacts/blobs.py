"""Blob stores: where artifact bytes live, behind one small interface.

- `LocalBlobStore`: a folder (`REDLINE_BLOB_URL=file:///var/lib/redline/blobs`, the default is
  `<data dir>/blobs`), for a single node.
- `S3BlobStore`: any S3-compatible service (`s3://bucket/prefix`, `REDLINE_S3_ENDPOINT` for one
  that is not AWS), credentials from the usual AWS environment variables or instance role.

Keys are made by the server (`<project>/<run>/<artifact>`); a store refuses anything else, so
no client-supplied name can ever become a path. An upload is first received into a staging
file (`new_staging_file`), checked, then moved in with `put_file`; `put` takes any stream.
Failures to reach the store are `BlobUnavailable` (UNAVAILABLE to clients), a key that is not
there is `BlobMissing`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

CHUNK = 256 * 1024
_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class BlobUnavailable(Exception):
    """The store cannot be reached right now (retry later)."""


class BlobMissing(Exception):
    """No blob under this key."""


def check_key(key: str) -> str:
    if not _KEY.match(key) or len(key) > 255:
        raise ValueError(f"not a storage key: {key!r}")
    return key


@dataclass
class BlobStream:
    chunks: Iterator[bytes]
    length: int

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


class BlobStore:
    """The interface. `start`/`end` select an inclusive byte range when given."""

    def new_staging_file(self) -> Path:
        raise NotImplementedError

    def put_file(self, key: str, path: Path) -> None:
        """Move a staged file in under `key` (the staged file is consumed)."""
        raise NotImplementedError

    def put(self, key: str, stream: BinaryIO) -> tuple[int, str]:
        """Store a stream; returns (size, sha256 hex)."""
        path = self.new_staging_file()
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "wb") as out:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            self.put_file(key, path)
        finally:
            path.unlink(missing_ok=True)
        return size, digest.hexdigest()

    def open(self, key: str, start: int | None = None, end: int | None = None) -> BlobStream:
        raise NotImplementedError

    def open_seekable(self, key: str) -> BinaryIO:
        """The blob as a seekable binary file (for reading one entry of a ZIP); the caller
        closes it."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove a blob; a missing one is not an error (jobs run twice)."""
        raise NotImplementedError

    def list(self, prefix: str) -> Iterator[str]:
        raise NotImplementedError

    def presign(self, key: str, seconds: int, content_type: str,
                content_disposition: str) -> str | None:
        """A URL of the store itself that serves the blob for `seconds`, or None."""
        return None


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.staging = self.root / ".incoming"  # same filesystem: moving in is a rename
        self.staging.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise ValueError(f"not a storage key: {key!r}")
        return path

    def new_staging_file(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.staging, prefix="upload-")
        os.close(fd)
        return Path(name)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        for attempt in range(3):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                return
            except FileNotFoundError as exc:
                # a delete emptied and removed the run's folder between the two calls
                if attempt == 2 or not path.exists():
                    raise BlobUnavailable(f"cannot write to the blob folder: {exc}") from exc
            except OSError as exc:
                raise BlobUnavailable(f"cannot write to the blob folder: {exc}") from exc

    def open(self, key: str, start: int | None = None, end: int | None = None) -> BlobStream:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 (closed by the stream)
        except FileNotFoundError:
            raise BlobMissing(key) from None
        except OSError as exc:
            raise BlobUnavailable(f"cannot read the blob folder: {exc}") from exc
        size = os.fstat(handle.fileno()).st_size
        first = start or 0
        last = size - 1 if end is None else min(end, size - 1)
        handle.seek(first)
        return BlobStream(_file_chunks(handle, last - first + 1), max(0, last - first + 1))

    def open_seekable(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise BlobMissing(key) from None
        except OSError as exc:
            raise BlobUnavailable(f"cannot read the blob folder: {exc}") from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        for parent in path.parents:  # drop emptied run/project folders
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                yield Path(dirpath, name).relative_to(self.root).as_posix()


def _file_chunks(handle: BinaryIO, length: int) -> Iterator[bytes]:
    try:
        while length > 0:
            chunk = handle.read(min(CHUNK, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()


class S3BlobStore(BlobStore):
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 staging_dir: Path | None = None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.staging = staging_dir
        if self.staging is not None:
            self.staging.mkdir(parents=True, exist_ok=True)
        config = Config(signature_version="s3v4", connect_timeout=5, read_timeout=60,
                        retries={"max_attempts": 3, "mode": "standard"},
                        s3={"addressing_style": "path" if endpoint_url else "auto"})
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=config)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _errors(self, exc: Exception, key: str) -> Exception:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                return BlobMissing(key)
            return BlobUnavailable(f"S3 answered {status} {code}")
        if isinstance(exc, BotoCoreError | Boto3Error):  # Boto3Error: a failed managed upload
            return BlobUnavailable(f"S3 cannot be reached: {exc}")
        return exc

    def new_staging_file(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.staging, prefix="redline-upload-")
        os.close(fd)
        return Path(name)

    def put_file(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key),
                                    ExtraArgs={"ContentType": "application/octet-stream"})
        except Exception as exc:
            raise self._errors(exc, key) from exc
        finally:
            path.unlink(missing_ok=True)

    def open(self, key: str, start: int | None = None, end: int | None = None) -> BlobStream:
        args = {"Bucket": self.bucket, "Key": self._key(key)}
        if start is not None or end is not None:
            args["Range"] = f"bytes={start or 0}-{'' if end is None else end}"
        try:
            response = self.client.get_object(**args)
        except Exception as exc:
            raise self._errors(exc, key) from exc
        body = response["Body"]
        return BlobStream(self._chunks(body, key), int(response["ContentLength"]))

    def _chunks(self, body, key: str) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        except Exception as exc:
            raise self._errors(exc, key) from exc
        finally:
            body.close()

    def open_seekable(self, key: str) -> BinaryIO:
        """Ranged GETs behind a 1 MiB read buffer: reading one entry of a report ZIP fetches
        the end record, the central directory and that entry's bytes, never the archive."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._errors(exc, key) from exc
        raw = _S3RangeReader(self, key, int(head["ContentLength"]))
        return io.BufferedReader(raw, buffer_size=1024 * 1024)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            error = self._errors(exc, key)
            if not isinstance(error, BlobMissing):
                raise error from exc

    def list(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix.rstrip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full)
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][strip:]
        except Exception as exc:
            raise self._errors(exc, prefix) from exc

    def presign(self, key: str, seconds: int, content_type: str,
                content_disposition: str) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", ExpiresIn=seconds,
            Params={"Bucket": self.bucket, "Key": self._key(key),
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": content_disposition})


class _S3RangeReader(io.RawIOBase):
    """A seekable, read-only file over one S3 object, each read one ranged GET."""

    def __init__(self, store: S3BlobStore, key: str, size: int):
        self.store, self.key, self.size, self.position = store, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size or len(buffer) == 0:
            return 0
        last = min(self.size, self.position + len(buffer)) - 1
        try:
            response = self.store.client.get_object(
                Bucket=self.store.bucket, Key=self.store._key(self.key),
                Range=f"bytes={self.position}-{last}")
            data = response["Body"].read()
        except Exception as exc:
            raise self.store._errors(exc, self.key) from exc
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


def parse_blob_url(url: str) -> tuple[str, str, str]:
    """(scheme, location, prefix): ("file", "/abs/dir", "") or ("s3", "bucket", "prefix")."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError("a file:// blob URL needs a folder")
        return "file", path, ""
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("an s3:// blob URL needs a bucket: s3://bucket/prefix")
        return "s3", parts.netloc, parts.path.strip("/")
    raise ValueError("the blob URL must be file://<folder> or s3://<bucket>/<prefix>")


@functools.lru_cache(maxsize=32)
def _store(url: str, endpoint: str | None, staging: str | None) -> BlobStore:
    scheme, location, prefix = parse_blob_url(url)
    if scheme == "file":
        return LocalBlobStore(Path(location))
    return S3BlobStore(location, prefix, endpoint, Path(staging) if staging else None)


def blob_store(settings) -> BlobStore:
    """The store the settings name (one per process and configuration: clients are reused)."""
    staging = str((settings.data_dir / "incoming").resolve())
    return _store(settings.resolved_blob_url, settings.s3_endpoint, staging)
