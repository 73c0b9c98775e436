"""How the server uses SQLite: the WAL is copied back into the database file by a thread of
the server's own, not by the commit of whichever request filled it (db.SqliteCheckpointer)."""

from __future__ import annotations

import os
import time

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
