"""Importing real reports over HTTP (`POST /api/runs/import`).

Every fixture under tests/fixtures/reports was written by a real runner (see its README); the
imported run's counts must equal what that runner itself printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from redline.server.tables import runs, test_cases, test_results

FIXTURES = Path(__file__).parent.parent / "fixtures" / "reports"
EXPECTATIONS = sorted(FIXTURES.glob("*/*.expected.json")) + sorted(
    FIXTURES.glob("*.expected.json"))


def fixture_files(expected: dict) -> list[Path]:
    path = FIXTURES / expected["fixture"]
    return sorted(path.glob("*.xml")) if path.is_dir() else [path]


def import_files(client, files: list[Path], **params):
    if len(files) == 1:
        content_type = "application/xml" if files[0].suffix == ".xml" else "application/json"
        return client.post("/api/runs/import", params=params, content=files[0].read_bytes(),
                           headers={"content-type": content_type})
    return client.post("/api/runs/import", params=params,
                       files=[("file", (f.name, f.read_bytes())) for f in files])


def counts_of(run: dict) -> dict:
    return {"total": run["totalTests"], "passed": run["passedTests"],
            "failed": run["failedTests"], "skipped": run["skippedTests"],
            "flaky": run["flakyTests"]}


@pytest.mark.parametrize("expectation", EXPECTATIONS, ids=lambda p: p.name.split(".")[0])
def test_imported_counts_equal_what_the_runner_printed(tenant, expectation):
    expected = json.loads(expectation.read_text())
    with tenant.as_key() as client:
        response = import_files(client, fixture_files(expected), branch="main",
                                commitSha="abc123")
    assert response.status_code == 201, response.text
    run = response.json()
    printed = dict(expected["counts"])
    # What the format itself cannot carry (declared and explained in the fixture's file):
    # Playwright's junit without includeRetries writes flaky as passed, jest-junit todo too.
    for loss in expected["format_losses"]:
        printed[loss["from"]] -= loss["count"]
        printed[loss["to"]] += loss["count"]
    assert counts_of(run) == printed, expected["runner_summary"]
    assert run["imported"]["tests"] == printed["total"]
    if (run["shardTotal"] or 1) > 1:  # one shard of several: the run waits for the rest
        assert run["status"] == "running"
    else:
        assert run["status"] == ("failed" if printed["failed"] else "passed")
    assert run["branch"] == "main" and run["commitSha"] == "abc123"
    passed, total = printed["passed"], printed["total"]
    assert run["passRate"] == round(passed / total * 100, 2)


def test_a_surefire_folder_is_one_run(tenant):
    files = sorted((FIXTURES / "junit" / "surefire").glob("*.xml"))
    with tenant.as_key() as client:
        run = import_files(client, files).json()
    assert run["imported"]["files"] == len(files)


def test_playwright_metadata_fills_the_run(tenant):
    with tenant.as_key() as client:
        run = import_files(client, [FIXTURES / "playwright-json" / "playwright.json"]).json()
        failed = client.get("/api/tests", params={"runId": run["id"], "status": "failed"}).json()
        flaky = client.get("/api/tests", params={"runId": run["id"], "status": "flaky"}).json()
        detail = client.get(f"/api/tests/{flaky['data'][0]['id']}").json()
        suites = client.get("/api/test-suites", params={"runId": run["id"]}).json()
    assert run["playwrightVersion"] and run["duration"] > 0
    assert failed["data"][0]["error"]["message"]
    assert detail["variant"] and detail["retries"] >= 1 and detail["isFlaky"] is True
    assert suites["data"], "describe blocks become the suite tree"


def test_importing_the_same_report_twice_reuses_the_test_cases(server, tenant):
    report = [FIXTURES / "junit" / "pytest-xunit2.xml"]
    with tenant.as_key() as client:
        first = import_files(client, report).json()
        second = import_files(client, report).json()
    with server.engine.connect() as conn:
        cases = conn.execute(select(func.count()).select_from(test_cases).where(
            test_cases.c.project_id == tenant.project_id)).scalar_one()
        results = conn.execute(select(func.count()).select_from(test_results).where(
            test_results.c.run_id.in_([first["id"], second["id"]]))).scalar_one()
    assert first["id"] != second["id"]
    assert results == 2 * first["totalTests"]
    assert cases <= first["totalTests"]  # same-named parametrised tests share no case twice


def test_a_malformed_report_stores_nothing_and_says_where(server, tenant):
    good = (FIXTURES / "junit" / "pytest-xunit2.xml").read_bytes()
    broken = good[: len(good) * 2 // 3]  # cut mid-file: the first results parse fine
    with server.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(runs)).scalar_one()
    with tenant.as_key() as client:
        response = client.post("/api/runs/import", content=broken,
                               headers={"content-type": "application/xml"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"]["reason"] == "malformed_report"
    assert error["details"]["line"] >= 1
    with server.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == before


def test_malformed_json_names_the_json_path(tenant):
    with tenant.as_key() as client:
        response = client.post("/api/runs/import", params={"format": "playwright-json"},
                               content=b'{"config": {}, "suites": [{"title": 5, "specs": [',
                               headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["reason"] == "malformed_report"


@pytest.mark.parametrize("attack", [
    (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
     b'<testsuite><testcase name="&b;"/></testsuite>'),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
     b'<testsuite><testcase name="&e;"/></testsuite>'),
    (b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">'
     b'<testsuite><testcase name="x"/></testsuite>'),
], ids=["billion-laughs", "external-entity", "external-dtd"])
def test_hostile_xml_is_refused(tenant, attack):
    with tenant.as_key() as client:
        response = client.post("/api/runs/import", content=attack,
                               headers={"content-type": "application/xml"})
    assert response.status_code == 400
    assert "passwd" not in response.text or "root:" not in response.text


def test_a_report_over_the_cap_is_refused(migrated_url, tmp_path):
    from tests.support import live

    with live.LiveServer.start(migrated_url, tmp_path, max_import_bytes=1000) as srv:
        tenant = live.make_tenant(srv)
        with tenant.as_key() as client:
            response = client.post("/api/runs/import", content=b"<testsuite>" + b" " * 2000,
                                   headers={"content-type": "application/xml"})
    assert response.status_code == 413


def test_appending_to_an_open_run(tenant):
    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        first = import_files(client, [FIXTURES / "junit" / "jest-junit.xml"], runId=run["id"])
        second = import_files(client, [FIXTURES / "junit" / "vitest-junit.xml"], runId=run["id"])
        assert first.json()["status"] == "running"  # an appended run stays open
        total = first.json()["imported"]["tests"] + second.json()["imported"]["tests"]
        assert second.json()["totalTests"] == total
        done = client.patch(f"/api/runs/{run['id']}", json={"status": "passed"}).json()
    assert done["status"] == "failed"  # jest's failures make it failed, whatever was asked


def test_shards_of_one_build_make_one_run(tenant):
    report = FIXTURES / "playwright-json" / "playwright-shard-1-of-2.json"
    with tenant.as_key() as client:
        first = import_files(client, [report], ciBuildId="build-7", shardCurrent=1,
                             shardTotal=2).json()
        assert first["status"] == "running"  # one shard of two is not the whole run
        second = import_files(client, [report], ciBuildId="build-7", shardCurrent=2,
                              shardTotal=2).json()
    assert second["id"] == first["id"]
    assert second["totalTests"] == 2 * first["totalTests"]
    assert second["status"] in ("passed", "failed")


def test_no_report_is_a_validation_error(tenant):
    with tenant.as_key() as client:
        response = client.post("/api/runs/import", content=b"",
                               headers={"content-type": "application/xml"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "file"


def test_an_unknown_format_is_refused(tenant):
    with tenant.as_key() as client:
        response = client.post("/api/runs/import", params={"format": "tap"}, content=b"ok 1",
                               headers={"content-type": "text/plain"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "format"


def test_importing_into_another_tenants_run_is_not_found(tenant, other_tenant):
    with other_tenant.as_key() as client:
        theirs = client.post("/api/runs", json={"status": "running"}).json()
    with tenant.as_key() as client:
        response = import_files(client, [FIXTURES / "junit" / "jest-junit.xml"],
                                runId=theirs["id"])
    assert response.status_code == 404


def test_output_with_a_nul_character_is_kept(server, tenant):
    """A test that prints binary puts U+0000 in its output, and a runner's JSON report carries
    it (as \\u0000). PostgreSQL's text cannot hold it: there it becomes U+FFFD, in the text
    columns and inside the JSON ones; SQLite keeps it as it came. The import goes through."""
    from tests.imports.synthetic import playwright_report

    body = playwright_report(10).replace(b"attempt 1\\n", b"attempt 1\\u0000\\n")
    body = body.replace(b"Received: 1", b"Received: 1\\u0000")
    with tenant.as_key() as client:
        response = client.post("/api/runs/import", content=body,
                               headers={"content-type": "application/json"})
        assert response.status_code == 201, response.text
        assert response.json()["imported"]["tests"] == 10
        listed = client.get("/api/tests", params={"runId": response.json()["id"],
                                                  "limit": 50}).json()["data"]
        details = [client.get(f"/api/tests/{t['id']}").json() for t in listed]
    nul = "\ufffd" if server.engine.dialect.name == "postgresql" else "\x00"
    printed = [d["stdout"] for d in details if d["stdout"]]  # (a skipped test prints nothing)
    assert len(printed) >= 8 and all(f"attempt 1{nul}" in text for text in printed)
    failed = [d for d in details if d["error"] and "Received: 1" in d["error"]["message"]]
    assert failed and all(f"Received: 1{nul}" in d["error"]["message"] for d in failed)
