"""A multipart write (report import, artifact upload) sent again with its idempotency key is
the same request byte for byte, so the server replays it instead of refusing it with
IDEMPOTENCY_BODY_MISMATCH (issue 22: 19 of 20 concurrent same-key imports got 409)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from redline.sdk import Client
from redline.sdk._base import Call, Upload

REPORT = (b'<?xml version="1.0"?><testsuite name="s" tests="1">'
          b'<testcase classname="a.B" name="one" time="0.1"/></testsuite>')


def test_a_retry_of_a_multipart_write_sends_the_same_bytes(tmp_path):
    path = tmp_path / "report.xml"
    path.write_bytes(REPORT)
    with Client("http://127.0.0.1:9", api_key="rl_live_x", from_env=False) as client:
        call = Call("POST", "/api/runs/import", params={"projectId": "proj_x"},
                    files=[Upload("file", path)], data={"note": "n"})
        attempts = []
        for _ in range(2):
            kwargs, handles = client._request_kwargs(call, "key-1")
            attempts.append(httpx.Request(**kwargs))
            for request in attempts[-1:]:
                request.read()
            for handle in handles:
                handle.close()
        other, handles = client._request_kwargs(call, "key-2")
        for handle in handles:
            handle.close()
    assert attempts[0].headers["content-type"] == attempts[1].headers["content-type"]
    assert attempts[0].content == attempts[1].content
    assert other["headers"]["Content-Type"] != attempts[0].headers["content-type"]


def test_concurrent_same_key_imports_make_one_run_and_replay_it(server, tenant, tmp_path):
    path = tmp_path / "report.xml"
    path.write_bytes(REPORT)
    with Client(server.url, api_key=tenant.key, from_env=False, max_retries=0) as client:
        def send(_):
            try:
                return client.runs.import_report(path, idempotency_key="same-import-key").id
            except Exception as exc:  # noqa: BLE001 - counted below
                return getattr(exc, "code", type(exc).__name__)

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(send, range(10)))
        again = client.runs.import_report(path, idempotency_key="same-import-key").id
    assert "IDEMPOTENCY_BODY_MISMATCH" not in answers
    run_ids = {a for a in answers if a.startswith("run_")}
    assert run_ids == {again}, answers
    assert set(answers) <= {again, "CONFLICT"}
