"""The SDK's run, result and test-intelligence methods against the real server: runs (verdict,
comparison, previous run of a branch), batches, imports, results, steps, history, suites, test
cases, flakiness, quarantine, error groups and trends, on runs imported from real reports."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from redline.sdk import AsyncClient, Client, models
from redline.sdk import exceptions as errors
from tests.clients import reports
from tests.clients.peers import FaultProxy

MISSING_RUN = "run_01HZZZZZZZZZZZZZZZZZZZZZZZ"


def ci(triage, **options) -> Client:
    return Client(triage.server_url, api_key=triage.tenant.key, from_env=False, **options)


def by_title(items, suffix: str):
    [found] = [i for i in items if (i.full_title or "").endswith(suffix)]
    return found


def test_runs_carry_the_verdict_and_list_newest_first(triage):
    runs = triage.runs
    with ci(triage) as client:
        head = client.runs.get(runs["head"].id)
        assert (head.status, head.verdict, head.quarantined_failures) == ("failed", "failed", 0)
        assert head.is_finished and head.outcome == "failed" and head.completed_at
        assert runs["base"].imported.format == "junit" and runs["base"].imported.tests == 3
        assert runs["pw"].imported.format == "playwright-json"
        listed = client.runs.list(limit=2)
        assert [r.id for r in listed] == [runs["rerun"].id, runs["head"].id]
        assert listed.total == 5 and listed.next_cursor
        assert all(r.verdict and r.quarantined_failures == 0 for r in listed)
        every = [r.id for r in client.runs.iter(limit=2)]
        assert every == [runs[n].id for n in ("rerun", "head", "base", "reruns", "pw")]
        assert [r.id for r in client.runs.list(branch="main", status="passed")] == \
            [runs["rerun"].id]
        with pytest.raises(errors.ValidationError):
            client.runs.list(status="sleeping")  # not a status any run has


def test_compare_and_the_previous_run_of_a_branch(triage):
    runs = triage.runs
    with ci(triage) as client:
        assert client.runs.previous(runs["head"].id).id == runs["base"].id
        assert client.runs.previous(client.runs.get(runs["rerun"].id)).id == runs["head"].id
        assert client.runs.previous(runs["base"].id) is None  # the branch's first run
        diff = client.runs.compare(runs["head"].id, runs["base"].id)
        assert isinstance(diff, models.Comparison)
        assert (diff.run_id, diff.base_run_id) == (runs["head"].id, runs["base"].id)
        assert [i.full_title.rsplit(".", 1)[-1] for i in diff.new_failures] == ["test_a"]
        assert [(i.status, i.base_status) for i in diff.new_failures] == [("failed", "passed")]
        assert [i.full_title.rsplit(".", 1)[-1] for i in diff.fixed] == ["test_b"]
        assert [i.full_title.rsplit(".", 1)[-1] for i in diff.new_tests] == ["test_d"]
        assert diff.summary == {"newFailures": 1, "fixed": 1, "stillFailing": 0,
                                "newTests": 1, "removedTests": 0}
        assert client.compare(runs["base"].id, runs["head"].id).run_id == runs["head"].id
        with pytest.raises(errors.NotFoundError):
            client.runs.compare(runs["head"].id, MISSING_RUN)


def test_report_a_run_in_batches_and_complete_it(tenant):
    with Client(tenant.server.url, api_key=tenant.key, from_env=False) as client:
        run = client.runs.create(branch="batch", commit_sha="b1")
        assert run.status == "running" and run.verdict is None
        batch = client.runs.add_tests(run.id, [
            {"title": "ok", "full_title": "Batch > ok", "file_path": "batch.spec.ts",
             "status": "passed", "duration": 3},
            {"title": "ko", "fullTitle": "Batch > ko", "filePath": "batch.spec.ts",
             "status": "failed", "duration": 4, "error": {"message": "boom"}}])
        assert isinstance(batch, models.BatchResult)
        assert (batch.run_id, batch.created, len(batch.ids)) == (run.id, 2, 2)
        appended = client.runs.import_report(reports.junit({"test_x": "passed"}).encode(),
                                             run_id=run.id)
        assert (appended.id, appended.imported.tests, appended.status) == \
            (run.id, 1, "running")
        done = client.runs.update(run.id, status="failed")
        assert isinstance(done, models.RunUpdated)
        assert (done.status, done.total_tests, done.failed_tests) == ("failed", 3, 1)
        finished = client.runs.get(run.id)
        assert (finished.verdict, finished.quarantined_failures) == ("failed", 0)
    with Client(tenant.server.url, token=tenant.token, from_env=False) as admin:
        assert admin.runs.delete(run.id).success  # needs project:admin, which CI keys lack


def test_results_steps_history_and_suites(triage):
    runs = triage.runs
    with ci(triage) as client:
        failed = client.tests.list(run_id=runs["pw"].id, status="failed", limit=100)
        assert failed.total == runs["pw"].failed_tests == len(failed.data)
        assert all(t.error and t.error.message for t in failed)
        # a Playwright test with nested test.step calls
        nested = client.tests.list(run_id=runs["pw"].id, search="nested step").data
        assert nested, "the Playwright fixture has a test that fails inside a nested step"
        detail = client.tests.get(nested[0].id)
        assert detail.variant in ("chromium", "firefox") and detail.attempt >= 1
        assert detail.error.location and detail.line_number
        steps = client.tests.steps(nested[0].id)
        assert isinstance(steps, models.StepList) and len(steps) >= 1
        depths = [depth for depth, _ in steps.walk()]
        assert max(depths) >= 1, "nested steps keep their nesting"
        assert any(step.status == "failed" for _, step in steps.walk())
        # history: test_a across the three runs of main, newest first
        head_a = by_title(client.tests.list(run_id=runs["head"].id).data, "test_a")
        history = client.tests.history(head_a.id)
        assert isinstance(history, models.History)
        assert [(h.run_id, h.status) for h in history] == [
            (runs["rerun"].id, "passed"), (runs["head"].id, "failed"),
            (runs["base"].id, "passed")]
        assert history.data[1].test_id == head_a.id and history.total == 3
        assert [h.commit_sha for h in client.tests.history(head_a.test_case_id)] == \
            ["m2", "m2", "m1"]
        assert client.tests.history(head_a.id, branch="nope").data == []
        suites = client.test_suites.list(runs["pw"].id)
        assert isinstance(suites, models.SuiteTree)
        tree = {suite.title: suite for suite in suites}
        assert {c.title for c in tree["Checkout"].children} >= {"without a card",
                                                                "with a saved card"}
        assert max(depth for depth, _ in suites.walk()) == 1
        with pytest.raises(errors.NotFoundError):
            client.tests.history("test_01HZZZZZZZZZZZZZZZZZZZZZZZ")


def test_test_cases_with_their_evidence(triage):
    runs = triage.runs
    with ci(triage) as client:
        cases = client.test_cases.list(search="tests/test_app.py", sort="title")
        assert [c.title for c in cases] == ["test_a", "test_b", "test_c", "test_d"]
        test_a = cases.data[0]
        assert isinstance(test_a, models.TestCase)
        assert (test_a.status, test_a.total_runs, test_a.failed_runs) == ("flaky", 3, 1)
        assert test_a.flakiness_score > 0 and not test_a.is_quarantined
        detail = client.test_cases.get(test_a.id)
        assert isinstance(detail, models.TestCaseDetail)
        assert {e.kind for e in detail.evidence} == {"same-commit"}
        assert {e.commit_sha for e in detail.evidence} == {"m2"}
        assert [f.run_id for f in detail.failed_in] == [runs["head"].id]
        assert "flakinessScore" in detail.score_formula
        # a result id resolves to its case
        result = by_title(client.tests.list(run_id=runs["base"].id).data, "test_b")
        assert client.test_cases.get(result.id).id == result.test_case_id
        flaky = client.test_cases.list(status="flaky", limit=500)
        assert test_a.id in {c.id for c in flaky}
        assert all(c.status == "flaky" for c in flaky)
        paged = [c.id for c in client.test_cases.iter(file=reports.FILE, limit=3)]
        assert len(paged) == 4
        with pytest.raises(errors.ValidationError):
            client.test_cases.list(status="sometimes")


def test_flakiness_and_error_groups(triage):
    with ci(triage) as client:
        report = client.flakiness.list(limit=2)
        assert isinstance(report, models.FlakinessPage)
        assert report.summary.threshold == 0.3 and report.summary.total_flaky_tests >= 1
        scores = [t.flakiness_score for t in client.flakiness.iter(limit=2)]
        assert len(scores) == report.total and scores == sorted(scores, reverse=True)
        assert all(t.test_id.startswith("tc_") and t.test_case_id == t.test_id
                   for t in report)
        high = client.flakiness.list(min_score=0.99)
        assert all(t.flakiness_score >= 0.99 for t in high)
        assert client.flakiness.list(quarantined=True).data == []
        groups = client.errors.list(limit=3)
        assert groups.total >= 3 and len(groups) == 3
        assert all(isinstance(g, models.ErrorGroup) and g.fingerprint and g.occurrences >= 1
                   for g in groups)
        counts = [g.occurrences for g in client.errors.iter(limit=5)]
        assert len(counts) == groups.total and counts == sorted(counts, reverse=True)
        assert client.errors.list(since=datetime.now(UTC) + timedelta(days=1)).total == 0
        assert client.errors.list(since="2000-01-01T00:00:00Z").total == groups.total


def test_trends_per_day_and_per_run(triage):
    runs = triage.runs
    with ci(triage) as client:
        per_run = client.trends.get(group_by="run", branch="main")
        assert isinstance(per_run, models.Trends)
        assert [p.key for p in per_run.points] == [runs[n].id for n in ("base", "head",
                                                                        "rerun")]
        assert [p.failed_tests for p in per_run.points] == [1, 1, 0]
        per_day = client.trends.get(days=7)
        assert per_day.group_by == "day" and sum(p.runs for p in per_day.points) == 5
        assert per_day.slowest_tests and per_day.slowest_tests[0].test_id.startswith("tc_")
        with pytest.raises(errors.ValidationError):
            client.trends.get(group_by="week")


def test_quarantine_with_reason_owner_and_expiry(tenant, tmp_path):
    """A quarantined case's failure no longer fails the verdict of a later run."""
    report = tmp_path / "r.xml"
    with Client(tenant.server.url, api_key=tenant.key, from_env=False) as client:
        report.write_text(reports.junit({"test_q": "failed", "test_ok": "passed"}))
        first = client.runs.import_report(report, branch="main")
        assert first.verdict == "failed"
        result = by_title(client.tests.list(run_id=first.id, status="failed").data, "test_q")
        expires = datetime.now(UTC) + timedelta(days=7)
        done = client.flakiness.quarantine(result.id, reason="flaky on CI", owner="alice",
                                           expires_at=expires)
        assert isinstance(done, models.QuarantineResult)
        assert (done.test_id, done.is_quarantined, done.reason, done.owner) == \
            (result.test_case_id, True, "flaky on CI", "alice")
        assert done.expires_at.startswith(expires.strftime("%Y-%m-%dT%H:%M"))
        assert done.quarantined_by == tenant.user_id
        case = client.test_cases.get(result.test_case_id)
        assert case.is_quarantined and case.quarantine.owner == "alice"
        assert [e.action for e in case.quarantine_history] == ["quarantine"]
        assert [t.test_id for t in client.flakiness.list(quarantined=True)] == [case.id]
        second = client.runs.import_report(report, branch="main")
        assert (second.status, second.verdict, second.quarantined_failures) == \
            ("failed", "passed", 1)
        assert client.runs.wait(second.id, raise_on_failure=True).outcome == "passed"
        released = client.flakiness.unquarantine(case.id, reason="fixed")
        assert released.is_quarantined is False
        assert [e.action for e in client.test_cases.get(case.id).quarantine_history] == \
            ["unquarantine", "quarantine"]
        third = client.runs.import_report(report, branch="main")
        assert third.verdict == "failed"
        with pytest.raises(errors.ValidationError):
            client.flakiness.quarantine(case.id, expires_at="2001-01-01T00:00:00Z")
        with pytest.raises(errors.NotFoundError):
            client.flakiness.quarantine("tc_01HZZZZZZZZZZZZZZZZZZZZZZZ")


def test_a_personal_token_names_the_project(triage):
    runs = triage.runs
    with Client(triage.server_url, token=triage.tenant.token, from_env=False) as user:
        with pytest.raises(errors.ValidationError):
            user.flakiness.list()  # which project? the server cannot tell
        assert user.trends.get(triage.tenant.project_id, group_by="run").points
        assert user.runs.list(triage.tenant.project_id, branch="main").total == 3
    with Client(triage.server_url, token=triage.tenant.token, from_env=False,
                project_id=triage.tenant.project_id) as user:
        assert user.errors.list().total >= 1
        assert user.runs.previous(runs["head"].id).id == runs["base"].id


def test_an_api_key_implies_the_project_without_asking_who_it_is(triage):
    with FaultProxy(triage.server_url) as proxy, \
            Client(proxy.url, api_key=triage.tenant.key, from_env=False) as client:
        client.flakiness.list()
        client.errors.list()
        client.test_cases.list()
        client.trends.get()  # the project is in the path: asked once from /api/me
        client.trends.get()
        paths = [seen.path.split("?")[0] for seen in proxy.seen]
    assert paths == ["/api/flakiness", "/api/errors", "/api/test-cases", "/api/me",
                     f"/api/projects/{triage.tenant.project_id}/trends",
                     f"/api/projects/{triage.tenant.project_id}/trends"]


def test_the_async_client_triages_too(triage):
    runs = triage.runs

    async def go():
        async with AsyncClient(triage.server_url, api_key=triage.tenant.key,
                               from_env=False) as client:
            previous, diff, trends, flaky, case_ids = await asyncio.gather(
                client.runs.previous(runs["head"].id),
                client.runs.compare(runs["head"].id, runs["base"].id),
                client.trends.get(group_by="run"),
                client.flakiness.list(),
                _collect(client.test_cases.iter(file=reports.FILE, limit=2)))
            return previous, diff, trends, flaky, case_ids

    previous, diff, trends, flaky, case_ids = asyncio.run(go())
    assert previous.id == runs["base"].id
    assert diff.summary["newFailures"] == 1
    assert len(trends.points) == 5
    assert flaky.summary.total_flaky_tests >= 1
    assert len(case_ids) == 4


async def _collect(iterator):
    return [item.id async for item in iterator]


def test_raw_answers_the_servers_json_and_helpers_still_answer_models(triage):
    runs = triage.runs
    with ci(triage, raw=True) as client:
        page = client.runs.list(limit=2)
        assert isinstance(page, dict) and page["nextCursor"] and len(page["data"]) == 2
        assert [r["id"] for r in client.runs.iter(limit=2)] == \
            [runs[n].id for n in ("rerun", "head", "base", "reruns", "pw")]
        head = client.runs.get(runs["head"].id)
        assert head["verdict"] == "failed" and head["quarantinedFailures"] == 0
        with triage.tenant.as_key() as http:
            assert head == http.get(f"/api/runs/{runs['head'].id}").json()  # as sent
        previous = client.runs.previous(head)
        assert isinstance(previous, models.Run) and previous.id == runs["base"].id
        assert isinstance(client.runs.wait(runs["head"].id), models.Run)
        assert client.trends.get(group_by="run")["groupBy"] == "run"
