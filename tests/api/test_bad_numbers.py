"""Bad numbers answer VALIDATION_ERROR naming the field, never 500 (issue 22 section 4)."""

from __future__ import annotations

import json

import pytest

BIG = 2**63


def _field_error(response, field: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    fields = [error["details"].get("field")] + [e.get("field") for e in
                                                error["details"].get("errors", [])]
    assert any(f and field in f for f in fields), error


@pytest.fixture
def run_id(tenant):
    with tenant.as_key() as client:
        return client.post("/api/runs", json={"status": "running", "runTitle": "n"}).json()["id"]


def _result(**fields) -> dict:
    return {"title": "t", "fullTitle": "a t", "status": "passed", "duration": 1, **fields}


@pytest.mark.parametrize("field", ["duration", "totalTests", "passedTests", "failedTests",
                                   "skippedTests", "flakyTests"])
@pytest.mark.parametrize("value", [BIG, -BIG - 1, 10**30])
def test_run_counts_beyond_64_bits(tenant, run_id, field, value):
    with tenant.as_key() as client:
        _field_error(client.patch(f"/api/runs/{run_id}", json={field: value}), field)


@pytest.mark.parametrize("field", ["duration", "lineNumber", "retries", "attempt"])
def test_result_numbers_beyond_64_bits(tenant, run_id, field):
    with tenant.as_key() as client:
        single = client.post("/api/tests", json={"runId": run_id, **_result(**{field: BIG})})
        batch = client.post(f"/api/runs/{run_id}/tests/batch",
                            json={"tests": [_result(), _result(**{field: BIG})]})
        step = client.post("/api/tests", json={"runId": run_id, **_result(
            steps=[{"title": "s", "duration": BIG}])})
    _field_error(single, field)
    _field_error(batch, field)
    _field_error(step, "duration")


def test_integer_valued_floats_are_integers(tenant, run_id):
    with tenant.as_key() as client:
        patched = client.patch(f"/api/runs/{run_id}", json={"duration": 5.0,
                                                             "totalTests": 2.0})
        created = client.post("/api/tests", json={"runId": run_id, **_result(
            duration=5.0, lineNumber=12.0)})
        fractional = client.patch(f"/api/runs/{run_id}", json={"duration": 5.5})
    assert patched.status_code == 200, patched.text
    assert patched.json()["duration"] == 5 and isinstance(patched.json()["duration"], int)
    assert created.status_code == 201, created.text
    _field_error(fractional, "duration")


@pytest.mark.parametrize("report,content_type", [
    (('<?xml version="1.0"?><testsuite name="s" tests="1" time="1e16">'
     '<testcase classname="a.B" name="slow" time="1e16"/></testsuite>'), "application/xml"),
    (('<?xml version="1.0"?><testsuite name="s" tests="1">'
     '<testcase classname="a.B" name="slow" time="1e300"/></testsuite>'), "application/xml"),
    (json.dumps({"results": {"tool": {"name": "t"}, "summary": {
        "tests": 1, "passed": 1, "failed": 0, "skipped": 0, "pending": 0, "other": 0,
        "start": 0, "stop": 1e300},
        "tests": [{"name": "slow", "status": "passed", "duration": 1e300}]}}),
     "application/json"),
    (json.dumps({"results": {"tool": {"name": "t"}, "summary": {
        "tests": 1, "passed": 1, "failed": 0, "skipped": 0, "pending": 0, "other": 0,
        "start": 0, "stop": 1},
        "tests": [{"name": "big", "status": "passed", "duration": 2**64}]}}),
     "application/json"),
])
def test_reports_with_huge_durations_never_answer_500(tenant, report, content_type):
    with tenant.as_key() as client:
        response = client.post("/api/runs/import", content=report.encode(),
                               headers={"Content-Type": content_type})
    assert response.status_code in (201, 400), response.text
    if response.status_code == 400:
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert "duration" in error["message"] or "time" in error["message"], error
    else:
        assert 0 <= response.json()["duration"] < BIG


@pytest.mark.parametrize("secret", ["whsec_" + "é" * 40, "whsec_ééé" + "A" * 40])
def test_a_non_ascii_webhook_secret_is_refused(tenant, secret):
    body = {"projectId": tenant.project_id, "url": "https://93.184.216.34/hook",
            "events": ["run.completed"]}
    with tenant.as_user() as client:
        _field_error(client.post("/api/webhooks", json={**body, "secret": secret}), "secret")
        hook = client.post("/api/webhooks", json=body).json()
        _field_error(client.patch(f"/api/webhooks/{hook['id']}", json={"secret": secret}),
                     "secret")


@pytest.mark.parametrize("headers", [{"X-Name": "café"}, {"X-Name": "a\r\nInjected: 1"},
                                     {"Bad Name": "v"}, {"X-Ünï": "v"}])
def test_a_webhook_header_that_cannot_be_sent_is_refused_at_registration(tenant, headers):
    body = {"projectId": tenant.project_id, "url": "https://93.184.216.34/hook",
            "events": ["run.completed"]}
    with tenant.as_user() as client:
        _field_error(client.post("/api/webhooks", json={**body, "headers": headers}),
                     "headers")
        hook = client.post("/api/webhooks", json=body).json()
        _field_error(client.patch(f"/api/webhooks/{hook['id']}", json={"headers": headers}),
                     "headers")
