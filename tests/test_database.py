"""How the server uses its database beyond the queries: on SQLite the WAL is copied back into
the database file by a thread of the server's own, not by the commit of whichever request
filled it (db.SqliteCheckpointer), and each connection keeps a larger page cache; on
PostgreSQL a first import gives the planner the statistics its case lookups need."""

from __future__ import annotations

import os
import time
from datetime import datetime

from sqlalchemy import text

from redline.server.db import WRITE, background_checkpointer, make_engine

MEGABYTES = 6  # over the 4 MB (1,000 pages) at which a commit would checkpoint by itself


def _write_megabytes(engine) -> None:
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (data BLOB)")
        conn.exec_driver_sql("INSERT INTO filler VALUES (?)",
                             [(os.urandom(1024),) for _ in range(MEGABYTES * 1024)])


def test_a_commit_leaves_the_wal_to_the_background_checkpointer(tmp_path):
    path = tmp_path / "redline.db"
    engine = make_engine(f"sqlite:///{path}", checkpoint_in_background=True)
    checkpointer = background_checkpointer(engine)
    _write_megabytes(engine)
    assert path.stat().st_size < 1 << 20  # the rows are in the WAL only: the commit did not copy

    busy, frames, copied = checkpointer.checkpoint()
    assert busy == 0 and frames == copied > 1000
    assert path.stat().st_size > MEGABYTES << 20
    engine.dispose()


def test_the_checkpointer_thread_copies_the_wal_by_itself(tmp_path):
    path = tmp_path / "redline.db"
    engine = make_engine(f"sqlite:///{path}", checkpoint_in_background=True)
    checkpointer = background_checkpointer(engine)
    checkpointer.interval = 0.05
    checkpointer.start()
    try:
        _write_megabytes(engine)
        deadline = time.monotonic() + 10
        while path.stat().st_size < MEGABYTES << 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > MEGABYTES << 20
    finally:
        checkpointer.stop()
    with engine.connect() as conn:  # and nothing was lost on the way
        assert conn.execute(text("SELECT count(*) FROM filler")).scalar() == MEGABYTES * 1024
    engine.dispose()


def test_other_engines_keep_sqlites_own_checkpoints(tmp_path):
    """Workers and command-line tools: a commit past 1,000 pages checkpoints as usual."""
    path = tmp_path / "redline.db"
    engine = make_engine(f"sqlite:///{path}")
    assert background_checkpointer(engine) is None
    _write_megabytes(engine)
    assert path.stat().st_size > MEGABYTES << 20
    engine.dispose()


def test_a_commit_past_the_safety_net_copies_the_wal_itself(tmp_path, monkeypatch):
    """Should the thread fall behind, a commit that takes the WAL past the safety net
    (db.CHECKPOINT_SAFETY_NET_PAGES: 100,000 pages, 400 MB; here 4,000) copies it; one below
    it leaves it to the thread. The net counts every frame of the WAL, copied or not: back to
    back imports grow the WAL until one crosses it (see the comment at the constant)."""
    from redline.server import db

    assert db.CHECKPOINT_SAFETY_NET_PAGES == 100_000
    monkeypatch.setattr(db, "CHECKPOINT_SAFETY_NET_PAGES", 4_000)  # 16 MB
    path = tmp_path / "redline.db"
    engine = make_engine(f"sqlite:///{path}", checkpoint_in_background=True)
    _write_megabytes(engine)  # 6 MB of rows, about 2,100 pages: below the net
    assert path.stat().st_size < 1 << 20
    _write_megabytes(engine)  # twice that: past it
    assert path.stat().st_size > 2 * MEGABYTES << 20
    engine.dispose()


def test_each_sqlite_connection_keeps_a_16_mb_page_cache(tmp_path):
    """An import with its statistics dirties more than SQLite's default 2 MB of pages: every
    connection the server opens keeps up to 16 MB (db.SQLITE_CACHE_KIB; bench/README.md)."""
    from redline.server.db import SQLITE_CACHE_KIB

    engine = make_engine(f"sqlite:///{tmp_path / 'redline.db'}")
    with engine.connect() as first, engine.connect() as second:
        sizes = [conn.exec_driver_sql("PRAGMA cache_size").scalar() for conn in (first, second)]
    engine.dispose()
    assert SQLITE_CACHE_KIB == 16 * 1024 and sizes == [-SQLITE_CACHE_KIB] * 2


def test_postgresql_case_lookups_probe_the_unique_index_after_a_first_import(migrated_url):
    """An import looks up its cases by identity, 500 at a time. A new database's cases table
    has no statistics, or ones taken while it was empty, and nothing analyzes it inside an
    import's transaction: the planner may then read every case of the project per identity
    (through any index that starts with project_id). Inserting cases analyzes the table when
    its statistics know of no rows, so the lookups that follow probe the unique (project,
    identity) index."""
    import json

    import pytest
    from sqlalchemy import create_engine

    from redline.server.results import repository

    if not migrated_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL planner question: SQLite looks up by the unique index")
    engine = create_engine(migrated_url)
    with engine.connect() as conn, conn.begin() as transaction:
        moment = "'2026-01-01 00:00:00'"
        conn.exec_driver_sql(f"INSERT INTO teams (id, name, created_at, updated_at) "
                             f"VALUES ('team_lookup', 't', {moment}, {moment})")
        conn.exec_driver_sql(
            "INSERT INTO projects (id, team_id, name, data_retention_days, flakiness_threshold, "
            "auto_quarantine_enabled, settings_updated_at, created_at, updated_at) VALUES "
            f"('proj_lookup', 'team_lookup', 'p', 90, 0.3, true, {moment}, {moment}, {moment})")
        # a new database's table, analyzed (or vacuumed) while it was still empty
        conn.exec_driver_sql("UPDATE pg_class SET reltuples = 0, relpages = 1 "
                             "WHERE relname = 'test_cases'")
        conn.exec_driver_sql("DELETE FROM pg_statistic WHERE starelid = 'test_cases'::regclass")
        identities = [f"{n:040x}" for n in range(5000)]
        repository.insert_cases(conn, [(f"tc_lookup_{n}", "proj_lookup", identity, "t.py",
                                         f"t {n}", f"t {n}", None, None, datetime(2026, 1, 1),
                                         1, n, "stable")
                                        for n, identity in enumerate(identities)])
        assert conn.exec_driver_sql("SELECT reltuples FROM pg_class "
                                    "WHERE relname = 'test_cases'").scalar() >= 5000

        chunk = identities[1000:1000 + repository.LOOKUP_CHUNK]
        plan = json.dumps(conn.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) {repository._PG_CASE_LOOKUP}", (chunk, "proj_lookup")
        ).scalar())
        assert "uq_test_cases_project_id_identity" in plan
        found = repository.known_cases(conn, "proj_lookup", [*chunk, "not-a-case"])
        assert {identity: (case.id, case.tags, case.bucket_id, case.slot)
                for identity, case in found.items()} == {
            identity: (f"tc_lookup_{1000 + n}", None, 1, 1000 + n)
            for n, identity in enumerate(chunk)}
        transaction.rollback()
    engine.dispose()
