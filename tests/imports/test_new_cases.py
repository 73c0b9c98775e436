"""New test cases at ingestion (issue 21): an import that creates its cases knows them as it
built them, without reading them back, unless a concurrent import made some of them first.
Real database (SQLite or PostgreSQL, `REDLINE_TEST_DB`)."""

from __future__ import annotations

from sqlalchemy import func, select

from redline.server.db import WRITE
from redline.server.imports.parsers.model import ParsedResult
from redline.server.intelligence.stats import recompute_case, stored_case
from redline.server.results import repository
from redline.server.results import service as results
from redline.server.runs import service as runs
from redline.server.tables import test_cases, test_results


def _result(name: str, status: str = "passed") -> ParsedResult:
    return ParsedResult(title=name, full_title=f"Race > {name}", file_path="tests/race.spec.ts",
                        line_number=1, suite_path=["Race"], variant=None, status=status,
                        duration_ms=5)


def _import(server, project_id: str, names: list[str]) -> str:
    with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        run_id = runs.new_run(conn, project_id, {"source": "import", "commit_sha": "c1"})
        outcomes: list = []
        results.ingest(conn, run_id, project_id, [_result(name) for name in names], outcomes)
        runs.refresh_counts(conn, run_id)
        runs.finish(conn, run_id, outcomes=outcomes)
    return run_id


def test_a_case_made_by_a_concurrent_import_is_the_one_its_results_point_at(
        server, tenant, monkeypatch):
    """The lookup of a chunk misses a case that another import commits before this one
    inserts it (simulated: the first lookup of each chunk hides it). The insert skips the
    duplicate, sees that not all of its rows went in, and reads back which case won: the
    results point at the existing case, no second case of that identity exists, and every
    window equals a recomputation."""
    _import(server, tenant.project_id, ["raced"])
    real_lookup = repository.IngestionWriter.known_cases
    hidden_once: list[bool] = []

    def lookup_missing_the_concurrent_case(self, project_id, identities):
        found = real_lookup(self, project_id, identities)
        if not hidden_once:  # the lookup before the concurrent import's commit
            hidden_once.append(True)
            return {}
        return found

    monkeypatch.setattr(repository.IngestionWriter, "known_cases",
                        lookup_missing_the_concurrent_case)
    run_id = _import(server, tenant.project_id, ["raced", "fresh one", "fresh two"])
    assert hidden_once == [True]
    with server.engine.connect() as conn:
        cases = dict(conn.execute(select(test_cases.c.title, test_cases.c.id).where(
            test_cases.c.project_id == tenant.project_id)).all())
        assert sorted(cases) == ["fresh one", "fresh two", "raced"]
        pointed = dict(conn.execute(select(test_results.c.title, test_results.c.test_case_id)
                                    .where(test_results.c.run_id == run_id)).all())
        assert pointed == cases
        assert conn.execute(select(func.count()).select_from(test_results).where(
            test_results.c.test_case_id == cases["raced"])).scalar() == 2
        for case_id in cases.values():
            assert stored_case(conn, case_id) == recompute_case(conn, case_id)


def test_insert_cases_answers_whether_every_row_went_in(server, tenant):
    """`insert_cases` skips a case whose identity exists (a concurrent import's) and says so,
    so that only then are the chunk's cases read back."""
    _import(server, tenant.project_id, ["first"])
    with server.engine.connect().execution_options(**WRITE) as conn, conn.begin() as tx:
        existing = conn.execute(select(test_cases).where(
            test_cases.c.project_id == tenant.project_id)).first()
        fresh = repository.NewCase.of(
            id="tc_insert_answer_fresh", project_id=tenant.project_id, identity="f" * 40,
            file_path="t.py", full_title="fresh", title="fresh", variant=None, tags="[]",
            created_at=repository.ingestion_writer(conn).driver_time(existing.created_at),
            bucket_id=existing.bucket_id, slot=99,
            status="stable")
        again = fresh._replace(id="tc_insert_answer_again", identity=existing.identity)
        assert repository.insert_cases(conn, [fresh]) is True
        assert repository.insert_cases(conn, [again, fresh._replace(
            id="tc_insert_answer_other", identity="e" * 40)]) is False
        assert conn.execute(select(func.count()).select_from(test_cases).where(
            test_cases.c.project_id == tenant.project_id)).scalar() == 3
        tx.rollback()
