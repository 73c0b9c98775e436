"""The S3 blob store against a real S3-compatible server (moto's, in-process on loopback), and
a Redline server keeping its artifacts there. moto does not check presigned signatures, so the
links' tampering and expiry are Redline's own checks (tested in test_artifacts.py, and here
once more in front of the redirect)."""

from __future__ import annotations

import hashlib
import io
from types import SimpleNamespace

import httpx
import pytest

from redline.server.artifacts.blobs import BlobMissing, S3BlobStore, blob_store
from tests.api.test_artifacts_support import error_of, fetch, local, media, upload
from tests.support import live
from tests.support.live import free_port
from tests.support.s3 import s3  # noqa: F401  (the fixture)


def test_the_s3_store_round_trip(s3, tmp_path):  # noqa: F811
    store = S3BlobStore(s3.bucket, "roundtrip/x", s3.endpoint, tmp_path)
    data = bytes(range(256)) * 4000
    size, digest = store.put("proj_1/run_1/artifact_1", io.BytesIO(data))
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert s3.keys("roundtrip/") == ["roundtrip/x/proj_1/run_1/artifact_1"]
    whole = store.open("proj_1/run_1/artifact_1")
    assert whole.length == len(data) and b"".join(whole.chunks) == data
    part = store.open("proj_1/run_1/artifact_1", 1000, 1999)
    assert part.length == 1000 and b"".join(part.chunks) == data[1000:2000]
    assert list(store.list("proj_1/")) == ["proj_1/run_1/artifact_1"]
    url = store.presign("proj_1/run_1/artifact_1", 60, "image/png",
                        "attachment; filename=\"a.png\"")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    assert "response-content-disposition=" in url
    assert httpx.get(url).content == data
    staged = store.new_staging_file()
    staged.write_bytes(b"staged")
    store.put_file("proj_1/run_1/artifact_2", staged)
    assert not staged.exists()  # consumed
    store.delete("proj_1/run_1/artifact_1")
    store.delete("proj_1/run_1/artifact_1")  # a second time is fine
    with pytest.raises(BlobMissing):
        b"".join(store.open("proj_1/run_1/artifact_1").chunks)
    with pytest.raises(ValueError):
        store.put("../escape", io.BytesIO(b"x"))
    assert s3.keys("roundtrip/") == ["roundtrip/x/proj_1/run_1/artifact_2"]


def test_a_server_on_s3_keeps_uploads_there_and_deletes_them_through_the_outbox(
        s3, start_server):  # noqa: F811
    srv = start_server(blob_url=s3.blob_url("srv-a"), s3_endpoint=s3.endpoint,
                       rate_limit_enabled=False)
    tenant = live.make_tenant(srv)
    content = media("webm", 300_000)
    with tenant.as_key() as client:
        run_id = client.post("/api/runs", json={"status": "running"}).json()["id"]
        created = upload(client, run_id, "video", content, "run.webm")
        assert created.status_code == 201, created.text
        artifact = created.json()
    key = f"srv-a/{tenant.project_id}/{run_id}/{artifact['id']}"
    assert s3.keys("srv-a/") == [key]
    assert not list((srv.app.state.settings.data_dir / "incoming").iterdir())
    served = fetch(srv, artifact["url"])
    assert served.status_code == 200 and served.content == content
    assert served.headers["content-type"] == "video/webm"
    assert served.headers["content-security-policy"] == "sandbox; default-src 'none'"
    ranged = fetch(srv, artifact["url"], headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == content[100:200]
    with tenant.as_key() as client:
        assert client.delete(f"/api/artifacts/{artifact['id']}").status_code == 200
    from redline.server.artifacts.tasks import delete_blob

    delete_blob(SimpleNamespace(engine=srv.engine, settings=srv.app.state.settings),
                {"storageKey": key.removeprefix("srv-a/")})
    assert s3.keys("srv-a/") == []


def test_with_redirects_a_valid_link_goes_to_a_short_lived_s3_url(s3, start_server):  # noqa: F811
    srv = start_server(blob_url=s3.blob_url("srv-b"), s3_endpoint=s3.endpoint,
                       s3_redirect=True, rate_limit_enabled=False)
    tenant = live.make_tenant(srv)
    content = media("png", 2000)
    with tenant.as_key() as client:
        run_id = client.post("/api/runs", json={"status": "running"}).json()["id"]
        artifact = upload(client, run_id, "screenshot", content, "r.png").json()
    with httpx.Client(timeout=30) as browser:
        answer = browser.get(local(srv, artifact["url"]))
        assert answer.status_code == 302
        location = answer.headers["location"]
        assert location.startswith(s3.endpoint) and "X-Amz-Signature=" in location
        expires = int(httpx.URL(location).params["X-Amz-Expires"])
        assert 1 <= expires <= 60
        assert httpx.URL(location).params["response-content-type"] == "image/png"
        assert browser.get(location).content == content
        # Redline checks its own signature before it hands out S3's
        tampered = local(srv, artifact["url"]).replace("disposition=inline",
                                                       "disposition=attachment")
        refused = browser.get(tampered)
    error_of(refused, "AUTH_FORBIDDEN", 403)
    assert "location" not in refused.headers


def test_an_unreachable_store_is_unavailable_and_keeps_nothing(start_server):
    srv = start_server(blob_url="s3://nowhere/p", s3_endpoint=f"http://127.0.0.1:{free_port()}",
                       rate_limit_enabled=False)
    tenant = live.make_tenant(srv)
    with tenant.as_key() as client:
        run_id = client.post("/api/runs", json={"status": "running"}).json()["id"]
        response = upload(client, run_id, "screenshot", media("png"), "u.png")
        listed = client.get("/api/artifacts", params={"runId": run_id}).json()
    error = error_of(response, "UNAVAILABLE", 503)
    assert error["details"] == {"dependency": "blob store"}
    assert response.headers["retry-after"]
    assert listed["total"] == 0
    assert not list((srv.app.state.settings.data_dir / "incoming").iterdir())
    assert isinstance(blob_store(srv.app.state.settings), S3BlobStore)


def test_a_missing_bucket_is_unavailable_not_internal(s3, start_server):  # noqa: F811
    srv = start_server(blob_url="s3://no-such-bucket/p", s3_endpoint=s3.endpoint,
                       rate_limit_enabled=False)
    tenant = live.make_tenant(srv)
    with tenant.as_key() as client:
        run_id = client.post("/api/runs", json={"status": "running"}).json()["id"]
        response = upload(client, run_id, "screenshot", media("png"), "u.png")
    error_of(response, "UNAVAILABLE", 503)
