"""Test intelligence: scores, history, verdicts with quarantine, error groups, trends and run
comparison, checked against expectations computed by hand on sequences of runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from redline.server.intelligence import scoring, stats
from redline.server.intelligence.fingerprint import fingerprint
from redline.server.intelligence.stats import recompute_case, stored_case
from redline.server.kit.clock import utcnow
from redline.server.tables import test_cases

W1, W2 = 0.5 ** 0.1, 0.5 ** 0.2  # weights of the 2nd and 3rd newest results


def test_fingerprints_ignore_numbers_ids_paths_and_times_but_keep_frames():
    a = {"message": "Timeout 30000ms exceeded waiting for #row-17 at 2026-03-01T10:00:00Z",
         "stack": "Error: x\n    at login (/tmp/pw-123/tests/login.spec.ts:42:5)"}
    b = {"message": "Timeout 5000ms exceeded waiting for #row-99 at 2026-04-02T11:30:00Z",
         "stack": "Error: x\n    at login (/tmp/pw-987/tests/login.spec.ts:44:9)"}
    other_frame = {**a, "stack": "Error: x\n    at logout (/tmp/pw-1/tests/login.spec.ts:1:1)"}
    assert fingerprint(a) == fingerprint(b) != fingerprint(other_frame)
    assert fingerprint(None) is None


# -- over the API --------------------------------------------------------------------------

def report(client, outcomes: dict[str, str], commit: str = "c1", branch: str = "main",
           finish: str = "passed") -> dict:
    """A complete run with one result per test name."""
    run = client.post("/api/runs", json={"status": "running", "commitSha": commit,
                                         "branch": branch}).json()
    tests = [{"title": name, "fullTitle": f"Suite > {name}", "filePath": "tests/app.spec.ts",
              "status": status, "duration": 100,
              **({"error": {"message": f"expected 1 got {len(name)} in /tmp/x{len(name)}"}}
                 if status == "failed" else {})} for name, status in outcomes.items()]
    client.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": tests})
    client.patch(f"/api/runs/{run['id']}", json={"status": finish})
    return client.get(f"/api/runs/{run['id']}").json()


def case_of(client, name: str) -> dict:
    cases = client.get("/api/test-cases", params={"search": name}).json()["data"]
    return next(c for c in cases if c["title"] == name)


def test_scores_over_a_sequence_of_runs(tenant):
    with tenant.as_key() as client:
        report(client, {"steady": "passed", "wobbly": "passed", "dead": "failed"}, "c1")
        report(client, {"steady": "passed", "wobbly": "failed", "dead": "failed"}, "c1")
        report(client, {"steady": "passed", "wobbly": "flaky", "dead": "failed"}, "c2")
        wobbly, steady, dead = (case_of(client, n) for n in ("wobbly", "steady", "dead"))
        page = client.get("/api/flakiness").json()
    # wobbly, newest first: flaky (evidence), failed on c1 (older pass on c1: evidence), passed
    assert wobbly["flakinessScore"] == round((1 + W1) / (1 + W1 + W2), 4)
    assert (wobbly["totalRuns"], wobbly["flakyRuns"], wobbly["status"]) == (3, 2, "flaky")
    assert steady["flakinessScore"] == 0.0 and steady["status"] == "stable"
    assert dead["status"] == "broken" and dead["failureRate"] == 1.0
    assert [t["testTitle"] for t in page["data"]] == ["wobbly"]
    assert page["summary"]["totalFlakyTests"] == 1
    assert page["data"][0]["totalRuns"] == 3 and page["data"][0]["flakyRuns"] == 2


def test_a_case_explains_its_score(tenant):
    with tenant.as_key() as client:
        report(client, {"t": "passed"}, "c1")
        second = report(client, {"t": "failed"}, "c1")
        third = report(client, {"t": "flaky"}, "c2")
        case = client.get(f"/api/test-cases/{case_of(client, 't')['id']}").json()
    assert [(e["runId"], e["kind"]) for e in case["evidence"]] == [
        (third["id"], "retry"), (second["id"], "same-commit")]
    assert [f["runId"] for f in case["failedIn"]] == [second["id"]]
    assert "0.5 ** (i / 10)" in case["scoreFormula"]


def test_an_outage_run_does_not_make_tests_flaky(tenant):
    with tenant.as_key() as client:
        names = [f"t{i}" for i in range(10)]
        report(client, {n: "passed" for n in names}, "c1")
        outage = report(client, {**{n: "failed" for n in names[:9]}, "t9": "flaky"}, "c1")
        t0, t9 = case_of(client, "t0"), case_of(client, "t9")
    assert outage["failedTests"] == 9
    assert t0["flakinessScore"] == 0.0 and t9["flakinessScore"] == 0.0


def test_history_is_the_last_twenty_with_a_branch_filter(tenant):
    with tenant.as_key() as client:
        runs = [report(client, {"h": "passed" if i % 3 else "failed"},
                       branch="main" if i % 2 else "dev") for i in range(22)]
        result_id = client.get("/api/tests", params={"runId": runs[-1]["id"]}).json()[
            "data"][0]["id"]
        history = client.get(f"/api/tests/{result_id}/history").json()
        dev = client.get(f"/api/tests/{result_id}/history", params={"branch": "dev"}).json()
    assert history["total"] == 20 and len(history["data"]) == 20
    assert [h["runId"] for h in history["data"]] == [r["id"] for r in reversed(runs)][:20]
    assert set(history["data"][0]) == {"runId", "testId", "status", "duration", "branch",
                                       "commitSha", "createdAt"}
    assert {h["branch"] for h in dev["data"]} == {"dev"} and dev["total"] == 11


def test_quarantine_before_a_run_makes_its_failure_not_count(tenant):
    with tenant.as_key() as client:
        report(client, {"q": "passed", "ok": "passed"})
        case = case_of(client, "q")
        # a run that started before the quarantine: its failure counts
        early = client.post("/api/runs", json={"status": "running"}).json()
        quarantined = client.post("/api/flakiness", json={
            "testId": case["id"], "isQuarantined": True, "reason": "races the DB",
            "owner": "jane@example.com"}).json()
        client.post(f"/api/runs/{early['id']}/tests/batch", json={"tests": [
            {"title": "q", "fullTitle": "Suite > q", "filePath": "tests/app.spec.ts",
             "status": "failed", "duration": 1}]})
        client.patch(f"/api/runs/{early['id']}", json={"status": "failed"})
        early = client.get(f"/api/runs/{early['id']}").json()
        later = report(client, {"q": "failed", "ok": "passed"}, finish="failed")
        detail = client.get(f"/api/test-cases/{case['id']}").json()
    assert quarantined["isQuarantined"] is True and quarantined["quarantinedBy"] == tenant.user_id
    assert early["verdict"] == "failed" and early["quarantinedFailures"] == 0
    assert later["status"] == "failed"  # what happened is still recorded...
    assert later["verdict"] == "passed" and later["quarantinedFailures"] == 1  # ...CI passes
    assert detail["quarantine"]["reason"] == "races the DB"
    assert detail["quarantineHistory"][0]["by"] == tenant.user_id


def test_quarantine_lifts_by_itself_at_its_expiry(server, tenant):
    with tenant.as_key() as client:
        report(client, {"temp": "passed"})
        case = case_of(client, "temp")
        expires = (utcnow() + timedelta(hours=1)).isoformat() + "Z"
        client.post("/api/flakiness", json={"testId": case["id"], "isQuarantined": True,
                                            "expiresAt": expires})
        assert case_of(client, "temp")["isQuarantined"] is True
        with server.engine.begin() as conn:
            conn.execute(update(test_cases).where(test_cases.c.id == case["id"]).values(
                quarantine_expires_at=utcnow() - timedelta(seconds=1)))
        assert case_of(client, "temp")["isQuarantined"] is False
        listed = client.get("/api/flakiness", params={"quarantined": True}).json()
    assert listed["total"] == 0


def test_automatic_quarantine_follows_the_settings_and_yields_to_people(tenant):
    with tenant.as_user() as owner:
        owner.patch(f"/api/projects/{tenant.project_id}/settings",
                    json={"flakinessThreshold": 0.3, "autoQuarantineEnabled": True})
    with tenant.as_key() as client:
        for i in range(4):
            outcome = "flaky" if i % 2 else "passed"
            report(client, {"auto": outcome, "twin": outcome, "calm": "passed"},
                   commit=f"c{i}")
        assert case_of(client, "auto")["isQuarantined"] is False  # 4 results: not yet
        report(client, {"auto": "flaky", "twin": "flaky", "calm": "passed"}, commit="c9")
        case = case_of(client, "auto")
        assert case["isQuarantined"] is True and case["quarantine"]["reason"] == "auto"
        # several cases crossing the threshold in one run are quarantined together
        assert case_of(client, "twin")["quarantine"]["reason"] == "auto"
        assert case_of(client, "calm")["isQuarantined"] is False
        client.post("/api/flakiness", json={"testId": case["id"], "isQuarantined": False})
        report(client, {"auto": "flaky"}, commit="c10")
        assert case_of(client, "auto")["isQuarantined"] is False  # the person's call stands


def test_a_changed_threshold_judges_a_case_with_evidence_at_its_next_run(tenant):
    """A case's status is written when a run of it is applied, by the threshold of that
    moment: after the project's threshold changes, a case with evidence in its window is
    judged by the new one at its next run. Stable and broken do not depend on it."""
    settings = f"/api/projects/{tenant.project_id}/settings"
    with tenant.as_key() as client:
        report(client, {"wobbly": "flaky", "dead": "failed"}, "c1")
        report(client, {"wobbly": "passed", "dead": "failed"}, "c2")
        assert case_of(client, "wobbly")["status"] == "flaky"  # W1 / (1 + W1): 0.48
    with tenant.as_user() as owner:
        owner.patch(settings, json={"flakinessThreshold": 0.9})
    with tenant.as_key() as client:
        report(client, {"wobbly": "passed", "dead": "failed"}, "c3")
        wobbly, dead = case_of(client, "wobbly"), case_of(client, "dead")
    assert wobbly["flakinessScore"] == round(W2 / (1 + W1 + W2), 4)  # 0.31
    assert (wobbly["status"], dead["status"]) == ("stable", "broken")
    with tenant.as_user() as owner:
        owner.patch(settings, json={"flakinessThreshold": 0.1})
    with tenant.as_key() as client:
        report(client, {"wobbly": "passed", "dead": "passed"}, "c4")
        wobbly, dead = case_of(client, "wobbly"), case_of(client, "dead")
    assert wobbly["flakinessScore"] >= 0.1 and wobbly["status"] == "flaky"
    assert dead["status"] == "stable"


def test_no_automatic_quarantine_when_disabled(tenant):
    with tenant.as_user() as owner:
        owner.patch(f"/api/projects/{tenant.project_id}/settings",
                    json={"autoQuarantineEnabled": False})
    with tenant.as_key() as client:
        for i in range(6):
            report(client, {"never": "flaky"}, commit=f"c{i}")
        assert case_of(client, "never")["isQuarantined"] is False


def test_failures_are_grouped_by_their_normalised_error(tenant):
    with tenant.as_key() as client:
        run = report(client, {"a": "failed", "bb": "failed", "ccc": "passed"}, finish="failed")
        groups = client.get("/api/errors").json()
    assert groups["total"] == 1
    [group] = groups["data"]
    assert group["affectedTests"] == 2 and group["occurrences"] == 2
    assert group["message"].startswith("expected 1 got") and run["failedTests"] == 2


def test_trends_per_day_and_per_run_and_the_slowest_tests(tenant):
    with tenant.as_key() as client:
        report(client, {"x": "passed", "y": "failed"}, branch="main", finish="failed")
        report(client, {"x": "passed", "y": "passed"}, branch="main")
        report(client, {"x": "flaky", "y": "passed"}, branch="dev")
        by_run = client.get(f"/api/projects/{tenant.project_id}/trends",
                            params={"groupBy": "run", "branch": "main"}).json()
        by_day = client.get(f"/api/projects/{tenant.project_id}/trends").json()
    assert [p["passRate"] for p in by_run["points"]] == [50.0, 100.0]
    [today] = by_day["points"]
    assert (today["runs"], today["totalTests"], today["passedTests"], today["flakyTests"]) == (
        3, 6, 4, 1)
    assert {t["fullTitle"] for t in by_day["slowestTests"]} == {"Suite > x", "Suite > y"}


def test_comparing_two_runs(tenant):
    with tenant.as_key() as client:
        base = report(client, {"fixed": "failed", "still": "failed", "fine": "passed",
                               "gone": "passed"}, finish="failed")
        head = report(client, {"fixed": "passed", "still": "failed", "fine": "failed",
                               "fresh": "passed"}, finish="failed")
        diff = client.get(f"/api/runs/{head['id']}/compare", params={"base": base["id"]}).json()
    names = {k: [i["fullTitle"].split(" > ")[1] for i in v] for k, v in diff.items()
             if isinstance(v, list)}
    assert names == {"newFailures": ["fine"], "fixed": ["fixed"], "stillFailing": ["still"],
                     "newTests": ["fresh"], "removedTests": ["gone"]}
    assert diff["summary"]["newFailures"] == 1


def test_a_result_id_resolves_to_its_case(tenant):
    with tenant.as_key() as client:
        run = report(client, {"r": "passed"})
        result_id = client.get("/api/tests", params={"runId": run["id"]}).json()["data"][0]["id"]
        by_result = client.get(f"/api/test-cases/{result_id}").json()
        quarantined = client.post("/api/flakiness", json={"testId": result_id,
                                                          "isQuarantined": True}).json()
    assert by_result["id"].startswith("tc_") and quarantined["testId"] == by_result["id"]


def test_incremental_statistics_equal_a_recomputation_from_scratch(server, tenant):
    with tenant.as_key() as client:
        statuses = ["passed", "failed", "flaky", "passed", "skipped", "failed", "passed"]
        for i in range(12):
            report(client, {f"t{j}": statuses[(i + j) % len(statuses)] for j in range(6)},
                   commit=f"c{i // 3}")
    with server.engine.connect() as conn:
        rows = conn.execute(select(test_cases).where(
            test_cases.c.project_id == tenant.project_id)).all()
        assert len(rows) == 6
        for row in rows:
            fresh = recompute_case(conn, row.id)
            # the window in its bucket's slot, its figures in its row, the rest in test_cases
            kept = stored_case(conn, row.id)
            assert set(fresh) >= {"window_state", "avg_duration", "last_run_at", "status",
                                  "flakiness_score", "total_runs", "last_flaky_at"}
            assert fresh == kept


def test_a_first_import_of_many_tests_stores_what_a_recomputation_gives(server, tenant):
    """A first import writes its new tests' first figures in bulk (by COPY on PostgreSQL
    from 500 rows on): each case's stored statistics equal a recomputation from its one
    result."""
    statuses = ["passed", "failed", "flaky", "passed", "skipped", "passed", "passed"]
    outcomes = {f"bulk{i:03d}": statuses[i % len(statuses)] for i in range(700)}
    with tenant.as_key() as client:
        report(client, outcomes)
        flaky = client.get("/api/flakiness").json()["summary"]["totalFlakyTests"]
    with server.engine.connect() as conn:
        rows = conn.execute(select(test_cases.c.id, test_cases.c.title).where(
            test_cases.c.project_id == tenant.project_id)).all()
        checked = 0
        for case_id, title in rows:
            kept = stored_case(conn, case_id)
            if outcomes[title] == "skipped":
                assert kept is None  # never ran: no figures
                continue
            assert kept == recompute_case(conn, case_id), title
            checked += 1
    assert len(rows) == 700 and checked == 600 and flaky == 100


def test_passes_after_a_failure_keep_it_in_the_counts(server, tenant):
    """A pass that follows a pass, with no failure leaving the window, takes the quiet path
    (only its window's slot is written, not its figures): a failure still in the window keeps
    its count and its time, as a recomputation gives them."""
    with tenant.as_key() as client:
        for number, status in enumerate(["passed", "failed", "passed", "passed", "passed"]):
            report(client, {"t": status}, commit=f"c{number}")  # a commit each: no re-run
        case = case_of(client, "t")
    assert (case["status"], case["totalRuns"], case["failedRuns"], case["failureRate"],
            case["lastStatus"]) == ("stable", 5, 1, 0.2, "passed")
    with server.engine.connect() as conn:
        fresh = recompute_case(conn, case["id"])
        kept = stored_case(conn, case["id"])
    assert fresh["last_failed_at"] is not None
    assert kept == fresh


@pytest.mark.parametrize("sort", ["flakiness", "failure-rate", "duration", "title"])
def test_test_cases_sort_and_filter(tenant, sort):
    with tenant.as_key() as client:
        client.post("/api/runs", json={"status": "running"})
        report(client, {"alpha": "failed", "beta": "passed"}, finish="failed")
        listed = client.get("/api/test-cases", params={"sort": sort}).json()
        broken = client.get("/api/test-cases", params={"status": "new"}).json()
    assert listed["total"] == 2 and broken["total"] == 0


def test_a_test_reads_new_until_it_runs(server, tenant):
    """A test that only skipped (or was only reported, its run still open) is `new`, in its
    own view and in the lists' status filter; its first pass makes it `stable`, as a
    recomputation says, though its first pass wrote no status (it was created with it)."""
    with tenant.as_key() as client:
        report(client, {"ran": "passed", "skips": "skipped"})
        new = client.get("/api/test-cases", params={"status": "new"}).json()
        stable = client.get("/api/test-cases", params={"status": "stable"}).json()
        skips = case_of(client, "skips")
        report(client, {"ran": "passed", "skips": "passed"}, commit="c2")
        after = client.get("/api/test-cases", params={"status": "stable"}).json()
        flakiness = client.get("/api/flakiness").json()
    assert [c["title"] for c in new["data"]] == ["skips"] and new["total"] == 1
    assert [c["title"] for c in stable["data"]] == ["ran"] and stable["total"] == 1
    assert (skips["status"], skips["totalRuns"]) == ("new", 0)
    assert sorted(c["title"] for c in after["data"]) == ["ran", "skips"]
    assert flakiness["total"] == 0
    with server.engine.connect() as conn:
        for case_id in (c["id"] for c in after["data"]):
            assert stored_case(conn, case_id)["status"] == recompute_case(conn, case_id)[
                "status"] == "stable"


def test_windows_kept_in_buckets_by_file_read_back_in_every_sort(server, tenant):
    """The windows of a test file's cases share buckets of 256 slots: a file of 300 cases
    takes two. Whichever bucket a window is in, the lists sort by what it says: by duration
    (slowest first, ties by case id), by failure rate (the cases that never ran last), and the
    slowest tests of the trends; and each window is what a recomputation gives."""
    from redline.server.tables import window_buckets

    def run(outcomes: dict[str, tuple[str, str, int]]) -> None:
        made = client.post("/api/runs", json={"status": "running", "commitSha": "c1"}).json()
        client.post(f"/api/runs/{made['id']}/tests/batch", json={"tests": [
            {"title": name, "fullTitle": f"S > {name}", "filePath": file, "status": status,
             "duration": duration} for name, (file, status, duration) in outcomes.items()]})
        client.patch(f"/api/runs/{made['id']}", json={"status": "passed"})

    big = {f"big{n:03}": ("tests/big.spec.ts", "passed", n) for n in range(300)}
    small = {"sfail": ("tests/small.spec.ts", "failed", 5000),
             "spass": ("tests/small.spec.ts", "passed", 5000),
             "sskip": ("tests/small.spec.ts", "skipped", 0)}  # never runs: no window
    with tenant.as_key() as client:
        run({**big, **small})
        run({**big, **small, "sfail": ("tests/small.spec.ts", "passed", 5000)})
        cases = client.get("/api/test-cases", params={"sort": "title", "limit": 500}).json()
        ids = {c["title"]: c["id"] for c in cases["data"]}
        by_duration = client.get("/api/test-cases",
                                 params={"sort": "duration", "limit": 4}).json()
        by_failures = client.get("/api/test-cases",
                                 params={"sort": "failure-rate", "limit": 500}).json()
        trends = client.get(f"/api/projects/{tenant.project_id}/trends").json()
    assert cases["total"] == 303
    top = sorted(["sfail", "spass"], key=ids.get)  # 5,000 ms both: by id
    assert [c["title"] for c in by_duration["data"]] == [*top, "big299", "big298"]
    assert [(c["avgDuration"], c["totalRuns"]) for c in by_duration["data"]] == [
        (5000, 2), (5000, 2), (299, 2), (298, 2)]
    assert by_duration["total"] == 303
    failures = [c["title"] for c in by_failures["data"]]
    assert failures[0] == "sfail" and failures[-1] == "sskip"
    assert failures[1:-1] == sorted(failures[1:-1], key=ids.get)
    assert [t["testId"] for t in trends["slowestTests"]] == [
        ids[name] for name in [*top, *(f"big{n}" for n in range(299, 291, -1))]]
    with server.engine.connect() as conn:
        parts = conn.execute(select(window_buckets.c.part, window_buckets.c.slots).where(
            window_buckets.c.project_id == tenant.project_id,
            window_buckets.c.file_path == "tests/big.spec.ts")
            .order_by(window_buckets.c.part)).all()
        assert [tuple(p) for p in parts] == [(0, 256), (1, 44)]
        for name in ("big000", "big299", "sfail"):
            assert stored_case(conn, ids[name]) == recompute_case(conn, ids[name])
        assert stored_case(conn, ids["sskip"]) is None


def test_new_tests_fill_their_files_last_bucket_then_open_the_next(server, tenant):
    """New tests of a file take the free slots of its last bucket, then a new one: 250 tests,
    then 10 more, make buckets of 256 and 4; each window reads back as recomputed."""
    from redline.server.tables import window_buckets

    def run(count: int) -> None:
        made = client.post("/api/runs", json={"status": "running", "commitSha": "c1"}).json()
        client.post(f"/api/runs/{made['id']}/tests/batch", json={"tests": [
            {"title": f"t{n:03}", "fullTitle": f"S > t{n:03}", "filePath": "tests/f.spec.ts",
             "status": "passed", "duration": n} for n in range(count)]})
        client.patch(f"/api/runs/{made['id']}", json={"status": "passed"})

    with tenant.as_key() as client:
        run(250)
        run(260)
        ids = {c["title"]: c["id"] for c in client.get(
            "/api/test-cases", params={"sort": "title", "limit": 500}).json()["data"]}
    with server.engine.connect() as conn:
        parts = conn.execute(select(window_buckets.c.part, window_buckets.c.slots).where(
            window_buckets.c.project_id == tenant.project_id).order_by(
            window_buckets.c.part)).all()
        assert [tuple(p) for p in parts] == [(0, 256), (1, 4)]
        for name in ("t000", "t249", "t250", "t255", "t256", "t259"):
            assert stored_case(conn, ids[name]) == recompute_case(conn, ids[name]), name


def test_two_results_of_one_test_in_one_run_count_in_arrival_order(server, tenant):
    """A run may hold two results of one test (a failure, then its passing re-run): its window
    takes them in the order they arrived, as a recomputation from the stored results does
    (they sort by id in arrival order, even minted in one millisecond), whether the run's
    results are handed from the import to its statistics, read back in the transaction that
    stored them, or read back apart; a case that only skipped has no window."""
    from redline.server.db import WRITE
    from redline.server.imports.parsers.model import ParsedResult
    from redline.server.results import service as results
    from redline.server.runs import service as runs

    def result(name: str, status: str, duration: int) -> ParsedResult:
        return ParsedResult(title=name, full_title=f"S > {name}", file_path="tests/m.spec.ts",
                            line_number=1, suite_path=["S"], variant=None, status=status,
                            duration_ms=duration)

    def import_run(number: int, outcomes: list[tuple[str, str]], completed: str):
        handed = [] if completed == "handed over" else None
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            run_id = runs.new_run(conn, tenant.project_id, {
                "source": "import", "branch": "main", "commit_sha": f"c{number // 2}"})
            results.ingest(conn, run_id, tenant.project_id,
                           [result(name, status, 10 * number + len(name))
                            for name, status in outcomes], handed)
            runs.refresh_counts(conn, run_id)
            if completed != "apart":
                runs.finish(conn, run_id, outcomes=handed)
        if completed == "apart":
            with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                runs.finish(conn, run_id)

    cycle = ["passed", "failed", "passed", "flaky", "passed", "passed", "failed"]
    for number in range(9):
        outcomes = [(f"t{j}", cycle[(number + j) % len(cycle)]) for j in range(5)]
        outcomes += [("rerun", "failed"), ("rerun", "passed"), ("skips", "skipped")]
        import_run(number, outcomes, ["handed over", "apart", "read back"][number % 3])
    with server.engine.connect() as conn:
        cases = conn.execute(select(test_cases.c.id, test_cases.c.title).where(
            test_cases.c.project_id == tenant.project_id)).all()
        assert len(cases) == 7
        for case in cases:
            if case.title == "skips":
                assert stored_case(conn, case.id) is None
            else:
                assert stored_case(conn, case.id) == recompute_case(conn, case.id), case.title
        assert stored_case(conn, next(c.id for c in cases if c.title == "rerun"))[
            "last_status"] == "passed"


def test_the_flakiness_list_holds_the_cases_with_evidence_and_the_quarantined(tenant):
    """The list: the cases with flaky evidence in their window and those quarantined now,
    by score; `minScore` over every case (0 takes them all); the summary over the project."""
    with tenant.as_key() as client:
        report(client, {"wobbly": "flaky", "calm": "passed", "parked": "passed"})
        parked = case_of(client, "parked")
        client.post("/api/flakiness", json={"testId": parked["id"], "isQuarantined": True,
                                            "reason": "owner on leave"})
        listed = client.get("/api/flakiness").json()
        every = client.get("/api/flakiness", params={"minScore": 0}).json()
        high = client.get("/api/flakiness", params={"minScore": 0.5}).json()
        free = client.get("/api/flakiness", params={"quarantined": False}).json()
    assert [t["testTitle"] for t in listed["data"]] == ["wobbly", "parked"]
    assert listed["total"] == 2 and listed["data"][0]["flakinessScore"] == 1.0
    assert listed["summary"] == {"totalFlakyTests": 1, "quarantinedTests": 1,
                                 "averageFlakinessScore": 1.0, "threshold": 0.3}
    assert every["total"] == 3 and every["data"][0]["testTitle"] == "wobbly"
    assert [t["testTitle"] for t in high["data"]] == ["wobbly"]
    assert [t["testTitle"] for t in free["data"]] == ["wobbly"]


def test_a_case_takes_the_tags_of_its_newest_result(tenant):
    def run_with(tags, status="passed"):
        run = client.post("/api/runs", json={"status": "running", "commitSha": "c1"}).json()
        client.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": [
            {"title": "tagged", "fullTitle": "Suite > tagged", "filePath": "t.spec.ts",
             "status": status, "duration": 5, "tags": tags}]})
        client.patch(f"/api/runs/{run['id']}", json={"status": "passed"})

    with tenant.as_key() as client:
        run_with(["smoke"])
        assert [c["title"] for c in client.get(
            "/api/test-cases", params={"tag": "smoke"}).json()["data"]] == ["tagged"]
        # a skipped result leaves the window alone but still brings its tags
        run_with(["nightly"], status="skipped")
        case = case_of(client, "tagged")
        assert client.get("/api/test-cases", params={"tag": "smoke"}).json()["data"] == []
        assert [c["title"] for c in client.get(
            "/api/test-cases", params={"tag": "nightly"}).json()["data"]] == ["tagged"]
    assert case["totalRuns"] == 1


def test_tags_follow_the_newest_result_as_it_arrives(tenant):
    """Tags are the test's, not a statistic: they change when a result brings new ones, before
    its run completes, and the newest of several results in one batch wins."""
    def result(tags):
        return {"title": "tagged", "fullTitle": "Suite > tagged", "filePath": "t.spec.ts",
                "status": "passed", "duration": 5, "tags": tags}

    with tenant.as_key() as client:
        run = client.post("/api/runs", json={"status": "running"}).json()
        client.post(f"/api/runs/{run['id']}/tests/batch", json={"tests": [result(["a"])]})
        assert case_of(client, "tagged")["tags"] == ["a"]
        client.post(f"/api/runs/{run['id']}/tests/batch",
                    json={"tests": [result(["b"]), result(["c", "d"])]})
        assert case_of(client, "tagged")["tags"] == ["c", "d"]
        assert case_of(client, "tagged")["totalRuns"] == 0  # the run is still running


def test_imports_of_new_tests_at_once_give_each_its_own_slot(server, tenant):
    """Two imports storing new tests of the same file at once, each in its own transaction:
    the second starts while the first holds its new cases' slots uncommitted (in the file's
    bucket an earlier import opened, then in a new one). Every case gets
    a slot of its own (on PostgreSQL the second waits for the first's places; SQLite has one
    writer), and each window reads back as recomputed."""
    import threading
    import time

    from redline.server.db import WRITE
    from redline.server.imports.parsers.model import ParsedResult
    from redline.server.results import service as results
    from redline.server.runs import service as runs

    first_placed, second_starting = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def import_run(prefix: str, count: int = 300) -> None:
        try:
            if prefix == "b":
                first_placed.wait(timeout=30)
                second_starting.set()
            with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                run_id = runs.new_run(conn, tenant.project_id, {"commit_sha": prefix})
                outcomes: list[tuple] = []
                results.ingest(conn, run_id, tenant.project_id, [
                    ParsedResult(title=f"{prefix}{n}", full_title=f"S > {prefix}{n}",
                                 file_path="tests/same.spec.ts", line_number=n,
                                 suite_path=["S"], variant=None, status="passed",
                                 duration_ms=n) for n in range(count)], outcomes)
                if prefix == "a":
                    first_placed.set()
                    second_starting.wait(timeout=30)
                    time.sleep(0.3)  # the second is at its first write by now
                runs.refresh_counts(conn, run_id)
                runs.finish(conn, run_id, outcomes=outcomes)
        except BaseException as exc:  # noqa: BLE001 (reported by the test's thread below)
            failures.append(exc)
            first_placed.set()

    import_run("earlier", 10)
    threads = [threading.Thread(target=import_run, args=(prefix,)) for prefix in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    with server.engine.connect() as conn:
        places = conn.execute(select(test_cases.c.id, test_cases.c.bucket_id,
                                     test_cases.c.slot).where(
            test_cases.c.project_id == tenant.project_id)).all()
        assert len(places) == 610
        assert len({(p.bucket_id, p.slot) for p in places}) == 610
        for case in places[::97]:
            assert stored_case(conn, case.id) == recompute_case(conn, case.id)


def _junit_suite(files: int, per_file: int, round_: int) -> bytes:
    """A JUnit report of `files` files of `per_file` testcases each, some failing, some
    changing their minds on a commit over the rounds."""
    cases = []
    for f in range(files):
        for n in range(per_file):
            failing = (n + round_) % 13 == 0 or (n % 29 == 0 and round_ % 2)
            body = '<failure message="boom">assert 1 == 2</failure>' if failing else ""
            cases.append(f'<testcase classname="tests.test_big_{f}" name="test_{n}" '
                         f'file="tests/test_big_{f}.py" time="0.0{n % 10}">{body}</testcase>')
    return (f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="big" '
            f'tests="{len(cases)}">{"".join(cases)}</testsuite></testsuites>').encode()


def test_a_suite_spanning_several_buckets_per_file_imports_again_and_again(
        server, tenant, monkeypatch):
    """Issue 21: a run whose loaded buckets outgrow what `apply_run` keeps between writes
    (16 MiB, about 48,000 cases; lowered here so that a few thousand cases cross it many times
    per run) writes every bucket it changed. A suite of 4 files of 600 tests each (three
    buckets per file) imported three times: every import completes, and every case's stored
    statistics equal a recomputation from its results."""
    monkeypatch.setattr(stats, "BUCKET_BYTES", 3 * scoring.BUCKET_SLOTS * scoring.SLOT)
    monkeypatch.setattr(stats, "WRITE_CHUNK", 250)
    with tenant.as_key() as client:
        for round_ in range(3):
            answer = client.post("/api/runs/import", params={"commitSha": f"c{round_ % 2}"},
                                 content=_junit_suite(4, 600, round_),
                                 headers={"content-type": "application/xml"})
            assert answer.status_code in (200, 201), answer.text
            assert answer.json()["totalTests"] == 2400
    with server.engine.connect() as conn:
        rows = conn.execute(select(test_cases.c.id, test_cases.c.bucket_id).where(
            test_cases.c.project_id == tenant.project_id)).all()
        assert len(rows) == 2400 and len({row.bucket_id for row in rows}) == 12
        for case_id, _bucket in rows[::7]:
            kept = stored_case(conn, case_id)
            assert kept is not None and kept["total_runs"] == 3
            assert kept == recompute_case(conn, case_id)


def test_windows_whose_writes_were_lost_are_rebuilt_from_their_results(
        server, tenant, monkeypatch):
    """What issue 21's bug left behind (migration 0018 repairs it with
    `stats.rebuild_windows`): cases whose window was never written while their figures were
    (a first import), and cases whose window missed a run. Rebuilt from their results, each
    case's statistics equal a recomputation again, the others are left as they are, and the
    suite imports again."""
    from redline.server.db import WRITE
    from redline.server.intelligence.repository import statistics_store
    from redline.server.intelligence.scoring import WindowCodec, commit_key

    monkeypatch.setattr(stats, "BUCKET_BYTES", 3 * scoring.BUCKET_SLOTS * scoring.SLOT)
    monkeypatch.setattr(stats, "WRITE_CHUNK", 250)

    def import_suite(round_: int) -> None:
        answer = client.post("/api/runs/import", params={"commitSha": f"c{round_ % 2}"},
                             content=_junit_suite(2, 300, round_),
                             headers={"content-type": "application/xml"})
        assert answer.status_code in (200, 201), answer.text

    with tenant.as_key() as client:
        for round_ in range(2):
            import_suite(round_)
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            cases = conn.execute(select(test_cases.c.id, test_cases.c.bucket_id,
                                        test_cases.c.slot).where(
                test_cases.c.project_id == tenant.project_id).order_by(test_cases.c.id)).all()
            store = statistics_store(conn)
            buckets = store.buckets_by_id(sorted({case.bucket_id for case in cases}))
            never_written, stale = cases[::50], cases[7::50]
            for case in never_written:
                WindowCodec.clear_slot(buckets[case.bucket_id], case.slot)
            one_run = WindowCodec.first_result("passed", commit_key("c0"), False, 5, 0.3).window
            for case in stale:
                WindowCodec.put_slot(buckets[case.bucket_id], case.slot, one_run, 1)
            store.write_buckets(buckets)
            ids = [case.id for case in cases]
            assert stats.rebuild_windows(conn, ids) == len(never_written) + len(stale)
            assert stats.rebuild_windows(conn, ids) == 0
        import_suite(2)
    with server.engine.connect() as conn:
        for case in cases[::7] + never_written + stale:
            kept = stored_case(conn, case.id)
            assert kept is not None and kept["total_runs"] == 3
            assert kept == recompute_case(conn, case.id)
