"""A real S3-compatible server for tests: moto's server, in-process, on a free loopback port.

moto does not verify presigned URLs (a tampered or expired one still answers 200), so tests of
link tampering and expiry exercise Redline's own signed links; this server is the blob store
behind them. Import the fixture into a test module: `from tests.support.s3 import s3  # noqa`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3:
    endpoint: str
    bucket: str
    client: object  # a boto3 S3 client on the same server

    def blob_url(self, prefix: str = "redline") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                       Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="session")
def s3():
    """moto's ThreadedMotoServer on 127.0.0.1:<free port>, with a fresh bucket. The AWS
    credentials the server's boto3 client reads are set for the session."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - the dev group pins moto[s3]
        from tests.conftest import missing_service

        missing_service(f"moto's S3 server is not installed ({exc})")
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"redline-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    try:
        yield S3(endpoint, bucket, client)
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
