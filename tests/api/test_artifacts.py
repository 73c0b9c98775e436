"""Artifacts over HTTP on a real server: uploads (caps while streaming, formats from the
bytes, names that never become paths), linking to Playwright attachments, tenancy, roles,
deletion through the outbox, and Redline's signed links (RELIABILITY.md section 3)."""

from __future__ import annotations

import io
import json
import socket
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import insert, select

from redline.server.artifacts import formats, signing
from redline.server.artifacts.blobs import blob_store
from redline.server.kit.clock import utcnow
from redline.server.tables import artifacts, jobs, test_results
from tests.api.test_artifacts_support import (
    CAPS,
    FORMAT_OF,
    MIME,
    MiB,
    error_of,
    fetch,
    file_of_size,
    media,
    raw_multipart,
    small_zip,
    upload,
)
from tests.support import live

REPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "reports"


@pytest.fixture
def run_id(tenant) -> str:
    with tenant.as_key() as client:
        return client.post("/api/runs", json={"status": "running"}).json()["id"]


@pytest.fixture
def test_id(tenant, run_id) -> str:
    with tenant.as_key() as client:
        return client.post("/api/tests", json={"runId": run_id, "title": "t",
                                               "fullTitle": "S > t", "status": "failed",
                                               "duration": 5}).json()["id"]


def stored_files(server) -> set[str]:
    root = Path(blob_store(server.app.state.settings).root)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def artifact_row(server, artifact_id: str):
    with server.engine.connect() as conn:
        return conn.execute(select(artifacts).where(artifacts.c.id == artifact_id)).first()


def delete_blob_jobs(server, key: str) -> list:
    with server.engine.connect() as conn:
        return [job for job in conn.execute(select(jobs).where(
            jobs.c.kind == "artifacts.delete_blob")) if key in (
                [job.payload.get("storageKey")] + list(job.payload.get("storageKeys") or []))]


def run_delete_blob(server, payload: dict) -> None:
    """What a worker does with the job: the handler registered for its kind."""
    from redline.server.worker.registry import handler_for

    handler_for("artifacts.delete_blob")(SimpleNamespace(engine=server.engine, settings=server.app.state.settings,
                                worker_id="test"), payload)


# -- uploads ------------------------------------------------------------------------------------

def test_an_upload_answers_the_references_shape(server, tenant, run_id, test_id):
    content = media("png", 5000)
    with tenant.as_key() as client:
        response = upload(client, run_id, "screenshot", content, "shot.png", testId=test_id,
                          projectId=tenant.project_id)
        assert response.status_code == 201, response.text
        body = response.json()
        # the reference's fields, and which run and test the artifact is linked to (issue 23)
        assert set(body) == {"id", "type", "fileName", "fileSize", "mimeType", "url",
                             "expiresAt", "createdAt", "projectId", "runId", "testId",
                             "testStatus"}
        assert (body["runId"], body["testId"]) == (run_id, test_id)
        assert body["id"].startswith("artifact_")
        assert (body["type"], body["fileName"], body["fileSize"], body["mimeType"]) == (
            "screenshot", "shot.png", 5000, "image/png")
        assert body["expiresAt"].endswith("Z") and body["createdAt"].endswith("Z")
        got = client.get(f"/api/artifacts/{body['id']}").json()
    assert got["testId"] == test_id and got["runId"] == run_id
    assert got["testStatus"] == "failed"
    row = artifact_row(server, body["id"])
    assert row.storage_key == f"{tenant.project_id}/{run_id}/{body['id']}"
    assert fetch(server, body["url"]).content == content


@pytest.mark.parametrize("kind", list(CAPS))
def test_each_type_at_its_cap_is_accepted_and_one_byte_over_is_refused(tenant, run_id, kind,
                                                                       tmp_path):
    cap = CAPS[kind]
    at_cap = file_of_size(kind, cap, tmp_path / "at")
    over = file_of_size(kind, cap + 1, tmp_path / "over")
    with tenant.as_key() as client:
        with open(at_cap, "rb") as handle:
            response = upload(client, run_id, kind, handle, f"at-cap.{FORMAT_OF[kind]}")
        assert response.status_code == 201, response.text
        assert response.json()["fileSize"] == cap
        with open(over, "rb") as handle:
            response = upload(client, run_id, kind, handle, f"over.{FORMAT_OF[kind]}")
    error = error_of(response, "PAYLOAD_TOO_LARGE", 413)
    assert error["details"]["limit"] == cap and error["details"]["type"] == kind


def test_while_the_type_is_unknown_the_detected_formats_cap_holds(tenant, run_id):
    """The file first, its `type` after it: a PNG is held to the screenshot cap as it
    streams."""
    png = media("png", 5 * MiB + 1)
    body, headers = raw_multipart([(b'form-data; name="file"; filename="big.png"', png),
                                   (b'form-data; name="type"', b"screenshot"),
                                   (b'form-data; name="runId"', run_id.encode())])
    with tenant.as_key() as client:
        response = client.post("/api/upload", content=body, headers=headers)
    assert error_of(response, "PAYLOAD_TOO_LARGE", 413)["details"]["limit"] == 5 * MiB


def test_a_trace_whose_type_comes_after_it_is_held_to_the_trace_cap(tenant, run_id, tmp_path):
    data = file_of_size("trace", 50 * MiB + 1, tmp_path / "t.zip").read_bytes()
    body, headers = raw_multipart([(b'form-data; name="file"; filename="t.zip"', data),
                                   (b'form-data; name="type"', b"trace"),
                                   (b'form-data; name="runId"', run_id.encode())])
    with tenant.as_key() as client:
        response = client.post("/api/upload", content=body, headers=headers)
    error = error_of(response, "PAYLOAD_TOO_LARGE", 413)
    assert error["details"]["limit"] == 50 * MiB


def test_the_cap_stops_the_upload_before_the_body_has_been_sent(server, tenant, run_id):
    """A raw socket sends 6 MiB of a body announced as 150 MiB, then waits: the 413 arrives
    while the client has not finished, so the server never reads the rest."""
    head = (b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n')
    length = 150 * MiB
    request = (f"POST /api/upload?type=screenshot&runId={run_id} HTTP/1.1\r\n"
               f"Host: 127.0.0.1\r\nX-API-Key: {tenant.key}\r\n"
               f"Content-Type: multipart/form-data; boundary=bnd\r\n"
               f"Content-Length: {length}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(request + head + media("png", 64))
        for _ in range(6):
            sock.sendall(b"\0" * MiB)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize("kind,content,detected", [
    ("screenshot", b"<html><script>alert(1)</script></html>" + b" " * 100, None),
    ("screenshot", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>' + b" " * 64,
     None),
    ("screenshot", media("webm"), "webm"),
    ("screenshot", b"", None),
    ("video", media("png"), "png"),
    ("video", small_zip(), "zip"),
    ("trace", media("jpeg"), "jpeg"),
    ("report", media("mp4"), "mp4"),
    ("report", b"MZ\x90\x00" + b"\0" * 100, None),
])
def test_a_file_whose_bytes_are_not_its_type_is_refused(tenant, run_id, kind, content,
                                                        detected):
    with tenant.as_key() as client:
        response = upload(client, run_id, kind, content, f"lies.{FORMAT_OF[kind]}")
    error = error_of(response, "VALIDATION_ERROR", 400)
    assert error["details"]["field"] == "file"
    assert error["details"]["reason"] == "type_mismatch"
    assert error["details"]["detected"] == detected


@pytest.mark.parametrize("kind,fmt", [("screenshot", f) for f in ("png", "jpeg", "webp", "gif")]
                         + [("video", f) for f in ("webm", "mp4", "avi", "mov")]
                         + [("trace", "zip"), ("report", "zip")])
def test_every_accepted_format_is_recognised_from_its_bytes(tenant, run_id, kind, fmt):
    content = small_zip() if fmt == "zip" else media(fmt, 400)
    with tenant.as_key() as client:
        response = upload(client, run_id, kind, content, "no-extension")
    assert response.status_code == 201, response.text
    assert response.json()["mimeType"] == MIME[fmt]


def test_fields_are_checked(tenant, run_id):
    png = media("png")
    no_file, no_file_headers = raw_multipart([(b'form-data; name="type"', b"screenshot"),
                                              (b'form-data; name="runId"', run_id.encode())])
    with tenant.as_key() as client:
        cases = [
            (client.post("/api/upload", content=no_file, headers=no_file_headers),
             "VALIDATION_ERROR", "file"),
            (upload(client, run_id, None, png), "VALIDATION_ERROR", "type"),
            (upload(client, run_id, "picture", png), "VALIDATION_ERROR", "type"),
            (upload(client, None, "screenshot", png), "VALIDATION_ERROR", "runId"),
            (upload(client, run_id, "screenshot", png, colour="red"), "VALIDATION_ERROR",
             "colour"),
            (client.post("/api/upload", params={"runId": run_id}, json={"type": "x"}),
             "VALIDATION_ERROR", "Content-Type"),
            (client.post("/api/upload", params={"type": "trace"},
                         data={"type": "video", "runId": run_id}, files={"file": png}),
             "VALIDATION_ERROR", "type"),
        ]
        body, headers = raw_multipart([(b'form-data; name="file"; filename="a.png"', png)])
        truncated = client.post("/api/upload", params={"type": "screenshot", "runId": run_id},
                                content=body[:-20], headers=headers)
        two_files, headers = raw_multipart([(b'form-data; name="file"; filename="a.png"', png),
                                            (b'form-data; name="file"; filename="b.png"', png)])
        two = client.post("/api/upload", params={"type": "screenshot", "runId": run_id},
                          content=two_files, headers=headers)
    for response, code, field in cases:
        assert error_of(response, code, 400)["details"]["field"] == field, response.text
    assert error_of(truncated, "VALIDATION_ERROR", 400)["details"]["reason"] == (
        "malformed_multipart")
    assert error_of(two, "VALIDATION_ERROR", 400)["details"]["reason"] == "too_many"


def test_fields_may_come_as_query_parameters_in_any_order(tenant, run_id, test_id):
    png = media("png")
    body, headers = raw_multipart([(b'form-data; name="file"; filename="q.png"', png)])
    with tenant.as_key() as client:
        response = client.post("/api/upload", params={"type": "screenshot", "runId": run_id,
                                                      "testId": test_id}, content=body,
                               headers=headers)
        assert response.status_code == 201, response.text
        assert client.get(f"/api/artifacts/{response.json()['id']}").json()["testId"] == test_id


@pytest.mark.parametrize("name", ["../../etc/passwd", "..%2f..%2fetc%2fpasswd",
                                  "%2e%2e/%2e%2e/etc/passwd", "/abs/path.png", "..\\..\\x.png",
                                  "..\\", "a%00.png", "a\x00.png", "．．／．．／etc／passwd",
                                  "..", "C:\\Windows\\win.ini", "~/.ssh/id_rsa"])
def test_uploaded_names_never_become_paths(server, tenant, run_id, name):
    before = stored_files(server)
    png = media("png")
    # RFC 5987 encoding carries every character, NUL and all, exactly as given
    disposition = (b"form-data; name=\"file\"; filename*=UTF-8''"
                   + b"".join(b"%%%02X" % c for c in name.encode()))
    body, headers = raw_multipart([(b'form-data; name="type"', b"screenshot"),
                                   (b'form-data; name="runId"', run_id.encode()),
                                   (disposition, png)])
    with tenant.as_key() as client:
        response = client.post("/api/upload", content=body, headers=headers)
    assert response.status_code == 201, response.text
    artifact = response.json()
    shown = artifact["fileName"]
    assert "/" not in shown and "\\" not in shown and "\x00" not in shown and shown not in (
        ".", "..", "")
    key = f"{tenant.project_id}/{run_id}/{artifact['id']}"
    assert artifact_row(server, artifact["id"]).storage_key == key
    assert stored_files(server) - before == {key}
    assert fetch(server, artifact["url"]).content == png
    if "．" in name:
        assert shown == name  # fullwidth dots and slashes are just characters of a name


@pytest.mark.parametrize("raw_name", ["evil\r\nSet-Cookie: pwned=1\r\nX-A: \".png",
                                      'quote"in"name.png', "tab\tand\u2028sep\u202e.png",
                                      "line\nbreak.png"])
def test_a_filename_with_line_breaks_or_quotes_splits_no_header(server, tenant, run_id,
                                                                  raw_name):
    png = media("png")
    disposition = (b"form-data; name=\"file\"; filename*=UTF-8''"
                   + b"".join(b"%%%02X" % c for c in raw_name.encode()))
    body, headers = raw_multipart([(b'form-data; name="type"', b"screenshot"),
                                   (b'form-data; name="runId"', run_id.encode()),
                                   (disposition, png)])
    with tenant.as_key() as client:
        response = client.post("/api/upload", content=body, headers=headers)
    assert response.status_code == 201, response.text
    shown = response.json()["fileName"]
    assert not any(c in shown for c in "\r\n\t\"'\u2028\u202e")
    served = fetch(server, response.json()["url"])
    assert served.status_code == 200 and served.content == png
    assert "set-cookie" not in served.headers and "x-a" not in served.headers
    disposition_header = served.headers["content-disposition"]
    assert "\r" not in disposition_header and "\n" not in disposition_header
    assert disposition_header.count('"') == 2


def test_the_content_disposition_header_is_safe_for_any_stored_name():
    """Defence in depth: even a name that was never cleaned cannot break the header."""
    header = formats.content_disposition("attachment", 'a"\r\nSet-Cookie: x=1;.html')
    assert "\r" not in header and "\n" not in header and header.count('"') == 2
    assert header.startswith('attachment; filename="') and "filename*=UTF-8''" in header
    assert formats.content_disposition("inline", "ä ö.png").endswith(
        "filename*=UTF-8''%C3%A4%20%C3%B6.png")


# -- linking to Playwright attachments ------------------------------------------------------------

def _playwright_report() -> dict:
    report = json.loads((REPORTS / "playwright-json" / "playwright.json").read_text())
    specs = []

    def walk(suite):
        specs.extend(suite.get("specs", []))
        for child in suite.get("suites", []):
            walk(child)

    for suite in report["suites"]:
        walk(suite)
    # one attachment whose base name no other test has
    first = specs[0]["tests"][0]["results"][0]
    first.setdefault("attachments", []).append(
        {"name": "screenshot", "contentType": "image/png",
         "path": "/ci/test-results/only-here-chromium/unique-shot-1.png"})
    return report


def test_uploads_are_linked_to_the_playwright_test_that_recorded_them(server, tenant):
    with tenant.as_key() as client:
        imported = client.post("/api/runs/import", content=json.dumps(_playwright_report()),
                               headers={"content-type": "application/json"})
        assert imported.status_code == 201, imported.text
        run = imported.json()["id"]
        with server.engine.connect() as conn:
            results = conn.execute(select(test_results.c.id, test_results.c.status,
                                          test_results.c.extra)
                                   .where(test_results.c.run_id == run)).all()

        def owner_of(path_end: str) -> list[tuple[str, str]]:
            return [(r.id, r.status) for r in results
                    if any((a.get("path") or "").endswith(path_end)
                           for a in (r.extra or {}).get("attachments", []))]

        unique = owner_of("/unique-shot-1.png")
        assert len(unique) == 1
        by_name = upload(client, run, "screenshot", media("png"), "unique-shot-1.png")
        # error-context.md is every failed test's: only its folder says which
        shared = [r for r in results if any((a.get("path") or "").endswith("error-context.md")
                                            for a in (r.extra or {}).get("attachments", []))]
        assert len(shared) > 1
        folder_path = next(a["path"] for a in shared[0].extra["attachments"]
                           if a["path"].endswith("error-context.md"))
        folder = "/".join(folder_path.split("/")[-2:])
        by_folder = upload(client, run, "screenshot", media("png"), folder)
        ambiguous = upload(client, run, "screenshot", media("png"), "error-context.md")
        unknown = upload(client, run, "screenshot", media("png"), "nobody-has-this.png")
        got = {name: client.get(f"/api/artifacts/{r.json()['id']}").json() for name, r in [
            ("by_name", by_name), ("by_folder", by_folder), ("ambiguous", ambiguous),
            ("unknown", unknown)]}
    assert (got["by_name"]["testId"], got["by_name"]["testStatus"]) == unique[0]
    assert got["by_folder"]["testId"] == shared[0].id
    assert got["by_folder"]["fileName"] == "error-context.md"
    assert got["ambiguous"]["testId"] is None
    assert got["unknown"]["testId"] is None


# -- listing, reading, deleting ---------------------------------------------------------------------

def test_list_by_run_or_test_with_pages(tenant, run_id, test_id):
    with tenant.as_key() as client:
        ids = [upload(client, run_id, "screenshot", media("png"), f"{i}.png",
                      testId=test_id if i < 2 else None).json()["id"] for i in range(3)]
        upload(client, run_id, "trace", small_zip(), "trace.zip")
        by_run = client.get("/api/artifacts", params={"runId": run_id, "limit": 2}).json()
        rest = client.get("/api/artifacts", params={"runId": run_id,
                                                   "cursor": by_run["nextCursor"]}).json()
        by_test = client.get("/api/artifacts", params={"testId": test_id}).json()
        traces = client.get("/api/artifacts", params={"runId": run_id, "type": "trace"}).json()
        neither = client.get("/api/artifacts")
    assert by_run["total"] == 4 and [a["id"] for a in by_run["data"]] == ids[:2]
    assert [a["id"] for a in rest["data"]][:1] == ids[2:]
    assert [a["id"] for a in by_test["data"]] == ids[:2]
    assert [a["type"] for a in traces["data"]] == ["trace"]
    assert all(a["url"] and a["expiresAt"] for a in by_run["data"])
    error_of(neither, "VALIDATION_ERROR", 400)


def test_delete_removes_the_row_and_queues_the_blob_in_the_same_transaction(server, tenant,
                                                                             run_id):
    png = media("png")
    with tenant.as_key() as client:
        created = upload(client, run_id, "screenshot", png, "d.png").json()
        key = artifact_row(server, created["id"]).storage_key
        assert delete_blob_jobs(server, key) == []  # the upload's guard was cancelled
        response = client.delete(f"/api/artifacts/{created['id']}")
        assert response.json() == {"success": True, "message": "Artifact deleted successfully"}
        error_of(client.get(f"/api/artifacts/{created['id']}"), "NOT_FOUND", 404)
        error_of(client.delete(f"/api/artifacts/{created['id']}"), "NOT_FOUND", 404)
    queued = delete_blob_jobs(server, key)
    assert len(queued) == 1 and queued[0].status == "queued"
    assert key in stored_files(server)  # the worker removes it, not the request
    error_of(fetch(server, created["url"]), "NOT_FOUND", 404)
    run_delete_blob(server, queued[0].payload)
    assert key not in stored_files(server)
    run_delete_blob(server, queued[0].payload)  # idempotent: twice is fine


def test_the_blob_job_keeps_blobs_that_rows_point_at(server, tenant, run_id):
    from redline.server.artifacts import service

    with tenant.as_key() as client:
        kept = upload(client, run_id, "screenshot", media("png"), "k.png").json()
    kept_key = artifact_row(server, kept["id"]).storage_key
    # an upload that died after writing its blob: only the guard job knows the blob
    orphan_key = f"{tenant.project_id}/{run_id}/artifact_01HZZZZZZZZZZZZZZZZZZZORPH"
    blob_store(server.app.state.settings).put(orphan_key, io.BytesIO(b"orphan"))
    orphan = service.StoredUpload("artifact_01HZZZZZZZZZZZZZZZZZZZORPH", "screenshot", "png",
                                  orphan_key)
    with server.engine.begin() as conn:
        service.guard_blob(conn, orphan)
    guard = orphan.guard_job
    with server.engine.connect() as conn:
        job = conn.execute(select(jobs).where(jobs.c.id == guard)).first()
    assert job.run_after > utcnow() + service.GUARD_DELAY - timedelta(minutes=1)
    run_delete_blob(server, {"storageKeys": [kept_key, orphan_key]})
    files = stored_files(server)
    assert kept_key in files and orphan_key not in files
    assert fetch(server, kept["url"]).status_code == 200


def test_a_viewer_reads_artifacts_but_cannot_upload_or_delete(tenant, run_id):
    with tenant.as_key() as client:
        created = upload(client, run_id, "screenshot", media("png"), "v.png").json()
    viewer_token, _ = live.add_member(tenant, "viewer")
    with tenant.server.client(Authorization=f"Bearer {viewer_token}") as viewer:
        assert viewer.get(f"/api/artifacts/{created['id']}").status_code == 200
        assert viewer.get("/api/artifacts", params={"runId": run_id}).json()["total"] == 1
        refused = upload(viewer, run_id, "screenshot", media("png"), "v.png",
                         projectId=tenant.project_id)
        gone = viewer.delete(f"/api/artifacts/{created['id']}")
    for response in (refused, gone):
        error = error_of(response, "AUTH_FORBIDDEN", 403)
        assert error["details"]["required"] == ["artifacts:write"]


@pytest.mark.parametrize("credential", ["personal token", "project API key"])
def test_other_tenants_artifacts_are_not_found_on_every_route(tenant, other_tenant, credential):
    """Tenant B's artifact, run and test ids answer exactly like ids that do not exist."""
    with other_tenant.as_key() as client:
        b_run = client.post("/api/runs", json={"status": "running"}).json()["id"]
        b_test = client.post("/api/tests", json={"runId": b_run, "title": "t", "fullTitle": "t",
                                                 "status": "passed", "duration": 1}).json()["id"]
        b_art = upload(client, b_run, "screenshot", media("png"), "b.png").json()
    with tenant.as_key() as client:
        own_run = client.post("/api/runs", json={"status": "running"}).json()["id"]
    missing = {"artifact": "artifact_01HZZZZZZZZZZZZZZZZZZZZZZZ",
               "run": "run_01HZZZZZZZZZZZZZZZZZZZZZZZ", "test": "test_01HZZZZZZZZZZZZZZZZZZZZZZZ",
               "project": "proj_01HZZZZZZZZZZZZZZZZZZZZZZZ"}
    theirs = {"artifact": b_art["id"], "run": b_run, "test": b_test,
              "project": other_tenant.project_id}

    def calls(ids, client):
        png = media("png")
        return [
            client.get(f"/api/artifacts/{ids['artifact']}"),
            client.delete(f"/api/artifacts/{ids['artifact']}"),
            client.get("/api/artifacts", params={"runId": ids["run"]}),
            client.get("/api/artifacts", params={"testId": ids["test"]}),
            upload(client, ids["run"], "screenshot", png, "x.png"),
            upload(client, own_run, "screenshot", png, "x.png", testId=ids["test"]),
            client.post("/api/upload", params={"runId": ids["run"]}),  # before any body
            client.post("/api/upload", params={"projectId": ids["project"]}),
        ]

    client = tenant.as_user() if credential == "personal token" else tenant.as_key()
    with client:
        for mine, real in zip(calls(missing, client), calls(theirs, client)):
            assert real.status_code == 404, real.text
            normal = {k: v for k, v in real.json()["error"].items() if k != "requestId"}
            expected = {k: v for k, v in mine.json()["error"].items() if k != "requestId"}
            text = json.dumps(normal)
            for kind, value in theirs.items():
                text = text.replace(value, missing[kind])
            assert json.loads(text) == expected
    with other_tenant.as_key() as client:  # nothing of B's changed
        assert client.get(f"/api/artifacts/{b_art['id']}").status_code == 200
        assert client.get("/api/artifacts", params={"runId": b_run}).json()["total"] == 1


# -- signed links -------------------------------------------------------------------------------

@pytest.fixture
def artifact(tenant, run_id) -> dict:
    content = media("png", 100_000)
    with tenant.as_key() as client:
        created = upload(client, run_id, "screenshot", content, "link.png").json()
    return {**created, "content": content}


def test_a_link_serves_the_exact_bytes_again_and_again_until_it_expires(server, artifact):
    for _ in range(3):  # like an S3 presigned URL: any number of uses before expiry
        response = fetch(server, artifact["url"])
        assert response.status_code == 200
        assert response.content == artifact["content"]
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(artifact["content"]))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert response.headers["content-disposition"].startswith("inline; ")
    assert response.headers["x-request-id"].startswith("req_")
    head = fetch(server, artifact["url"], "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(artifact["content"]))
    ranged = fetch(server, artifact["url"], headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == artifact["content"][10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(artifact['content'])}"
    tail = fetch(server, artifact["url"], headers={"Range": "bytes=-5"})
    assert tail.content == artifact["content"][-5:]
    whole = fetch(server, artifact["url"], headers={"Range": "bytes=999999999-"})
    assert whole.status_code == 200 and whole.content == artifact["content"]


def test_a_link_is_refused_one_second_after_it_expires(server, tenant, artifact):
    with tenant.as_key() as client:
        minted = client.get(f"/api/artifacts/{artifact['id']}", params={"expiresIn": 1}).json()
    exp = int(httpx.URL(minted["url"]).params["exp"])
    assert fetch(server, minted["url"]).status_code == 200 or time.time() > exp
    while time.time() < exp + 1.05:
        time.sleep(0.1)
    error = error_of(fetch(server, minted["url"]), "AUTH_FORBIDDEN", 403)
    assert error["details"]["reason"] == "link_expired"


def test_expiry_is_exact_to_the_second():
    secret = b"k"
    query = signing.signed_query(secret, "artifact_1", "proj_1", 1000, "inline", "image/png")
    params = signing.parse_params(list(httpx.URL("/?" + query).params.multi_items()))
    signing.verify(secret, "GET", "artifact_1", "proj_1", params, "image/png", now=1000)
    with pytest.raises(signing.BadLink, match="expired"):
        signing.verify(secret, "GET", "artifact_1", "proj_1", params, "image/png", now=1001)


def test_links_live_one_hour_by_default_and_at_most_seven_days(tenant, artifact):
    with tenant.as_key() as client:
        longest = client.get(f"/api/artifacts/{artifact['id']}",
                             params={"expiresIn": 604800}).json()
        too_long = client.get(f"/api/artifacts/{artifact['id']}", params={"expiresIn": 604801})
    now = time.time()
    assert abs(int(httpx.URL(artifact["url"]).params["exp"]) - now - 3600) < 30
    assert abs(int(httpx.URL(longest["url"]).params["exp"]) - now - 604800) < 30
    error_of(too_long, "VALIDATION_ERROR", 400)


def test_the_ttl_setting_cannot_exceed_seven_days(tmp_path):
    from pydantic import ValidationError

    from redline.server.config import Settings

    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, artifact_url_ttl_seconds=604801)


def _mutations(url: str, other_id: str) -> dict[str, str]:
    parsed = httpx.URL(url)
    params = dict(parsed.params)
    sig = params["sig"]
    flipped = sig[:5] + ("A" if sig[5] != "A" else "B") + sig[6:]

    def with_params(**changes):
        merged = {**params, **changes}
        return str(parsed.copy_with(params={k: v for k, v in merged.items() if v is not None}))

    return {
        "one signature character": with_params(sig=flipped),
        "signature truncated": with_params(sig=sig[:-1]),
        "exp + 1": with_params(exp=str(int(params["exp"]) + 1)),
        "exp - 1": with_params(exp=str(int(params["exp"]) - 1)),
        "exp far ahead": with_params(exp="99999999999"),
        "disposition": with_params(disposition="attachment"),
        "a param added": with_params(**{"response-content-type": "text/html"}),
        "a harmless-looking param added": with_params(x="1"),
        "exp dropped": with_params(exp=None),
        "disposition dropped": with_params(disposition=None),
        "sig dropped": with_params(sig=None),
        "a param repeated": url + "&exp=" + params["exp"],
        "another artifact's id": url.replace(parsed.path.rsplit("/", 1)[1], other_id),
    }


def test_any_change_to_a_link_is_refused(server, tenant, run_id, artifact):
    with tenant.as_key() as client:
        other = upload(client, run_id, "screenshot", media("png"), "o.png").json()
    for what, url in _mutations(artifact["url"], other["id"]).items():
        response = fetch(server, url)
        error = error_of(response, "AUTH_FORBIDDEN", 403)
        assert error["details"]["reason"] in ("link_signature", "link_parameters"), what
        assert response.content.find(artifact["content"][:64]) < 0
    for method in ("POST", "PUT", "DELETE", "PATCH"):  # the method is signed too
        error_of(fetch(server, artifact["url"], method), "AUTH_FORBIDDEN", 403)
    assert fetch(server, artifact["url"]).status_code == 200


def test_another_tenants_id_in_a_link_never_serves_their_bytes(server, tenant, other_tenant,
                                                               artifact):
    with other_tenant.as_key() as client:
        b_run = client.post("/api/runs", json={"status": "running"}).json()["id"]
        theirs = upload(client, b_run, "screenshot", media("png", 777), "b.png").json()
    mine_to_theirs = artifact["url"].replace(artifact["id"], theirs["id"])
    error_of(fetch(server, mine_to_theirs), "AUTH_FORBIDDEN", 403)
    # and a link of B's stays B's: it works, for B's bytes only
    assert fetch(server, theirs["url"]).content == media("png", 777)


def test_a_deleted_artifacts_links_are_404_and_a_rotated_key_ends_them(server, tenant, artifact,
                                                                       start_server):
    other = start_server(secret_key="a-rotated-secret-key", rate_limit_enabled=False)
    error_of(fetch(other, artifact["url"]), "AUTH_FORBIDDEN", 403)
    with tenant.as_key() as client:
        client.delete(f"/api/artifacts/{artifact['id']}")
    error_of(fetch(server, artifact["url"]), "NOT_FOUND", 404)


def _stored_artifact(server, tenant, run_id, mime_type: str, content: bytes, name: str) -> dict:
    """An artifact stored with a type uploads cannot have (an executed run's output, or a row
    from an older version): serving must be safe whatever is stored."""
    artifact_id = f"artifact_{time.time_ns():026d}"[:35]
    key = f"{tenant.project_id}/{run_id}/{artifact_id}"
    blob_store(server.app.state.settings).put(key, io.BytesIO(content))
    with server.engine.begin() as conn:
        conn.execute(insert(artifacts).values(
            id=artifact_id, project_id=tenant.project_id, run_id=run_id, type="report",
            file_name=name, storage_key=key, file_size=len(content), mime_type=mime_type,
            sha256="0" * 64, created_at=utcnow()))
    with tenant.as_key() as client:
        return client.get(f"/api/artifacts/{artifact_id}").json()


HOSTILE = [
    ("text/html", b"<html><body><script>document.title='pwned';alert(1)</script></body></html>",
     "report.html"),
    ("image/svg+xml", (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
     b"<script>alert(2)</script></svg>"), "chart.svg"),
    ("application/xhtml+xml", (b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)'
     b"</script></html>"), "x.xhtml"),
    ("text/plain", b"<script>alert(1)</script>", "notes.txt"),
]


@pytest.mark.parametrize("mime_type,content,name", HOSTILE)
def test_html_and_svg_are_served_as_sandboxed_downloads(server, tenant, run_id, mime_type,
                                                        content, name):
    stored = _stored_artifact(server, tenant, run_id, mime_type, content, name)
    for _ in range(2):
        url = stored["url"]
        response = fetch(server, url)
        assert response.status_code == 200 and response.content == content
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment; ")
        assert "filename*=UTF-8''" in response.headers["content-disposition"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "sandbox; default-src 'none'"
    # an inline link cannot be forged for them: the disposition is signed and forced
    assert "disposition=attachment" in stored["url"]


def test_an_html_polyglot_png_is_served_only_as_an_image(server, tenant, run_id):
    polyglot = media("png", 64) + b"<html><script>alert(1)</script></html>"
    with tenant.as_key() as client:
        created = upload(client, run_id, "screenshot", polyglot, "poly.html").json()
        download = client.get(f"/api/artifacts/{created['id']}",
                              params={"download": "true"}).json()
    response = fetch(server, created["url"])
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox; default-src 'none'"
    forced = fetch(server, download["url"])
    assert forced.headers["content-disposition"].startswith("attachment; ")


def test_zips_are_downloads(server, tenant, run_id):
    with tenant.as_key() as client:
        created = upload(client, run_id, "trace", small_zip(), "trace.zip").json()
    response = fetch(server, created["url"])
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"trace.zip\"; filename*=UTF-8''trace.zip")


def test_an_upload_retried_with_its_idempotency_key_is_stored_once(tenant, run_id):
    png = media("png", 1000)
    with tenant.as_key() as client:
        first = upload_with_key(client, run_id, png, "same-key-1")
        second = upload_with_key(client, run_id, png, "same-key-1")
        other = upload_with_key(client, run_id, media("png", 999), "same-key-1")
        listed = client.get("/api/artifacts", params={"runId": run_id}).json()
    assert first.status_code == second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    error_of(other, "IDEMPOTENCY_BODY_MISMATCH", 409)
    assert listed["total"] == 1


def upload_with_key(client, run_id: str, content: bytes, key: str):
    body, headers = raw_multipart([(b'form-data; name="type"', b"screenshot"),
                                   (b'form-data; name="runId"', run_id.encode()),
                                   (b'form-data; name="file"; filename="i.png"', content)])
    return client.post("/api/upload", content=body, headers={**headers, "Idempotency-Key": key})
