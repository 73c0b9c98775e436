"""Schemathesis against the app's own OpenAPI (RELIABILITY.md section 9): examples, coverage,
fuzzing and stateful phases with every check, as an owner and as a viewer.

One check is left out, with its reason: `positive_data_acceptance` expects every schema-valid
request to be accepted, but a `cursor` is a token signed by the server and an `If-Match` must
name the current version; no generator can make valid ones, and refusing forged ones is the
point (tested by hand in test_error_contract.py and test_tenant_isolation.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import live

ST = Path(sys.executable).parent / "st"
EXCLUDED_PATHS = ["--exclude-path", "/api/setup", "--exclude-path", "/api/auth/logout",
                  # executed runs are not in this version: 501 UNSUPPORTED by design
                  "--exclude-path-regex", "^/api/plans"]


BIG = 2**63  # beyond a 64-bit column (issue 22: each answered 500 once)
ASCII_ONLY = "whsec_" + "é" * 40


def _example(operation: dict, media: str, name: str, value) -> None:
    content = operation["requestBody"]["content"][media]
    content.setdefault("examples", {})[name] = {"value": value}


def _path_example(operation: dict, value: str) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            parameter["example"] = value


def hostile_schema(server, tenant: live.Tenant, tmp_path: Path) -> Path:
    """The server's OpenAPI with the inputs of issue 22 section 4 as explicit examples, aimed
    at real ids so that they reach the code that stores them; a 500 on any fails
    `not_a_server_error`. Schemathesis sends an example only while the schema accepts it:
    those the schema now refuses (a non-ASCII secret or header) come back into play if that
    refusal is ever lost, which is when they could answer 500 again."""
    with tenant.as_key() as client:
        run_id = client.post("/api/runs", json={"status": "running", "runTitle": "st"}).json()["id"]
    with tenant.as_user() as client:
        webhook_id = client.post("/api/webhooks", json={
            "projectId": tenant.project_id, "url": "https://93.184.216.34/hook",
            "events": ["run.completed"]}).json()["id"]
    schema = httpx.get(f"{server.url}/api/openapi.json").json()
    paths = schema["paths"]
    result = {"title": "t", "fullTitle": "a t", "status": "passed", "duration": 1}
    patch_run = paths["/api/runs/{run_id}"]["patch"]
    _path_example(patch_run, run_id)
    for field in ("duration", "totalTests", "passedTests", "failedTests", "skippedTests",
                  "flakyTests"):
        _example(patch_run, "application/json", f"{field} 2^63", {field: BIG})
    _example(patch_run, "application/json", "integer-valued float", {"duration": 5.0})
    create_test = paths["/api/tests"]["post"]
    for field in ("duration", "lineNumber"):
        _example(create_test, "application/json", f"{field} 2^63",
                 {"runId": run_id, **result, field: BIG})
    _example(create_test, "application/json", "step duration 2^63",
             {"runId": run_id, **result, "steps": [{"title": "s", "duration": BIG}]})
    _example(create_test, "application/json", "integer-valued float",
             {"runId": run_id, **result, "duration": 5.0, "lineNumber": 3.0})
    batch = paths["/api/runs/{run_id}/tests/batch"]["post"]
    _path_example(batch, run_id)
    _example(batch, "application/json", "duration 2^63",
             {"tests": [result, {**result, "duration": BIG}]})
    imports = paths["/api/runs/import"]["post"]
    for parameter in imports["parameters"]:
        if parameter["name"] == "projectId":
            parameter["example"] = tenant.project_id
    _example(imports, "application/xml", "JUnit time 1e16",
             '<?xml version="1.0"?><testsuite name="s" tests="1" time="1e16">'
             '<testcase classname="a.B" name="slow" time="1e16"/></testsuite>')
    # (the raw JSON body is described as a binary string: as an object, the example goes on
    # the wire as the JSON report itself)
    imports["requestBody"]["content"]["application/json"]["schema"] = {"type": "object"}
    _example(imports, "application/json", "CTRF duration 1e300", {"results": {
        "tool": {"name": "t"}, "summary": {"tests": 1, "passed": 1, "failed": 0,
                                           "skipped": 0, "pending": 0, "other": 0,
                                           "start": 0, "stop": 1e300},
        "tests": [{"name": "slow", "status": "passed", "duration": 1e300}]}})
    create_hook = paths["/api/webhooks"]["post"]
    hook = {"projectId": tenant.project_id, "url": "https://93.184.216.34/hook",
            "events": ["run.completed"]}
    _example(create_hook, "application/json", "non-ASCII secret",
             {**hook, "secret": ASCII_ONLY})
    _example(create_hook, "application/json", "non-ASCII header value",
             {**hook, "headers": {"X-Name": "café"}})
    update_hook = paths["/api/webhooks/{webhook_id}"]["patch"]
    _path_example(update_hook, webhook_id)
    _example(update_hook, "application/json", "non-ASCII secret", {"secret": ASCII_ONLY})
    _example(update_hook, "application/json", "non-ASCII header value",
             {"headers": {"X-Name": "café"}})
    path = tmp_path / "openapi-hostile.json"
    path.write_text(json.dumps(schema))
    return path


def run_schemathesis(server, token: str, tmp_path: Path, max_examples: int = 25,
                     schema: Path | None = None):
    source = str(schema) if schema is not None else f"{server.url}/api/openapi.json"
    command = [str(ST), "run", source, "--url", server.url,
               "-H", f"Authorization: Bearer {token}", "--checks", "all",
               "--exclude-checks", "positive_data_acceptance",
               # one worker: hypothesis hit a SystemError in its AST cache with two threads
               "--max-examples", str(max_examples), "--seed", "42", "--workers", "1",
               "--report", "junit", "--report-dir", str(tmp_path), *EXCLUDED_PATHS]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "NO_COLOR": "1"})
    return result


@pytest.mark.slow
def test_schemathesis_finds_no_failure_as_an_owner(server, tmp_path):
    tenant = live.make_tenant(server)
    result = run_schemathesis(server, tenant.token, tmp_path,
                              schema=hostile_schema(server, tenant, tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Server error" not in output
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) > 500, output[-2000:]
    print(output[-1500:])  # the summary, for the record (-s shows it)


@pytest.mark.slow
def test_schemathesis_finds_no_failure_as_a_viewer(server, tmp_path):
    tenant = live.make_tenant(server)
    viewer_token, _ = live.add_member(tenant, "viewer")
    result = run_schemathesis(server, viewer_token, tmp_path, max_examples=15)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
