"""`redline demo`: a sample team built from the real report fixtures, backdated over weeks."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import create_engine

from redline.server.auth import Principal
from redline.server.demo import fill_demo
from redline.server.intelligence import service as intelligence
from redline.server.kit.clock import parse_iso, utcnow
from redline.server.kit.pagination import PageRequest
from redline.server.runs import service as runs


def test_the_demo_fills_branches_weeks_flaky_and_quarantined_tests(migrated_url):
    email = f"demo-{secrets.token_hex(4)}@example.com"
    made = fill_demo(migrated_url, email=email, days=14)
    assert made["runs"] > 40 and made["results"] > 1500
    engine = create_engine(migrated_url)
    principal = Principal("user", made["userId"])
    page = PageRequest(500, 0, "t", b"t")
    try:
        with engine.connect() as conn:
            web_project = made["projectIds"][0]
            listed = runs.list_runs(conn, principal, web_project, None, None, page)["data"]
            branches = {r["branch"] for r in listed}
            assert {"main", "feature/checkout-v2", "release/1.4"} <= branches
            oldest = min(parse_iso(r["createdAt"]) for r in listed)
            assert oldest < utcnow() - timedelta(days=12)  # backdated, not all "now"
            assert any(r["status"] == "running" for r in listed)
            assert {"passed", "failed"} <= {r["status"] for r in listed}
            flaky = intelligence.flakiness(conn, principal, web_project, None, None, page)
            assert flaky["summary"]["totalFlakyTests"] >= 1
            assert flaky["summary"]["quarantinedTests"] >= 1
            cases = intelligence.list_cases(conn, principal, web_project, "broken", None, None,
                                            None, "flakiness", page)["data"]
            assert cases, "a test that fails every time on its branch is broken"
            trends = intelligence.trends(conn, principal, web_project, "day", None, 30)
            assert len(trends["points"]) >= 13
    finally:
        engine.dispose()


def test_the_demo_gives_failed_tests_screenshots_in_the_blob_store(migrated_url, tmp_path):
    from redline.server.artifacts.blobs import blob_store
    from redline.server.config import Settings
    from redline.server.tables import artifacts

    settings = Settings(database_url=migrated_url, data_dir=tmp_path, secret_key="x")
    made = fill_demo(migrated_url, email=f"shots-{secrets.token_hex(4)}@example.com", days=7,
                     settings=settings)
    assert made["screenshots"] > 0
    engine = create_engine(migrated_url)
    try:
        with engine.connect() as conn:
            from sqlalchemy import select

            rows = conn.execute(select(artifacts).where(
                artifacts.c.project_id == made["projectIds"][0])).all()
    finally:
        engine.dispose()
    assert len(rows) == made["screenshots"]
    assert all(r.test_id and r.mime_type == "image/png" for r in rows)
    with blob_store(settings).open_seekable(rows[0].storage_key) as stored:
        assert stored.read(8) == b"\x89PNG\r\n\x1a\n"
