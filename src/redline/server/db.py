"""Engine creation and the rules both databases share.

SQLite runs in WAL mode with a busy timeout, and write transactions start with
`BEGIN IMMEDIATE` so two writers queue instead of failing with "database is locked" when a
read transaction tries to upgrade. PostgreSQL connections that sat idle in the pool are checked
before use, and a connection found broken while in use invalidates the whole pool, so the server
recovers by itself after the database comes back (the request that found it answers
UNAVAILABLE, which is retryable).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

WRITE = {"redline_write": True}

log = logging.getLogger("redline.db")


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 10, *,
                checkpoint_in_background: bool = False) -> Engine:
    """Pool sizing: every server or worker process holds up to pool_size + max_overflow
    connections; keep (processes x that) under PostgreSQL's max_connections (100 by default).

    `checkpoint_in_background` (SQLite, the server): commits leave the WAL to a
    `SqliteCheckpointer` thread (see there) that the caller starts."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=max_overflow)
        _configure_sqlite(engine, checkpoint_in_background)
    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow,
                               pool_timeout=10, connect_args={"connect_timeout": 5})
        _ping_idle_connections(engine)
    return engine


# Pinging every checkout (SQLAlchemy's pool_pre_ping) cost two round trips per request, about
# a third of a keyed GET on PostgreSQL. A connection in steady use is checked by that use.
PING_AFTER_IDLE_SECONDS = 10.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def stamp(_dbapi_connection, record):
        record.info["redline_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy):
        idle_since = record.info.get("redline_idle_since", 0.0)
        if time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:
            # The pool drops this connection and checks out (or opens) another.
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


SQLITE_CACHE_KIB = 16 * 1024  # each connection's page cache at most


def _configure_sqlite(engine: Engine, checkpoint_in_background: bool) -> None:
    # a plain file (not memory, not a "file:" URI the checkpointer's connection would misread)
    if (checkpoint_in_background and engine.url.database not in (None, "", ":memory:")
            and not engine.url.query.get("uri")):
        _checkpointers[engine] = SqliteCheckpointer(engine.url.database)
    else:
        checkpoint_in_background = False

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # The driver must not open transactions by itself: we emit BEGIN below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Sorts that outgrow the page cache spill to memory, not to temporary files:
        # a run's statistics sort its results with their windows (3.5 MB for 5,000 cases),
        # 11 ms with the spill in a file, 8 ms in memory.
        cursor.execute("PRAGMA temp_store=MEMORY")
        # A page cache of 16 MB per connection, not SQLite's default 2 MB: an import's
        # transaction dirties more pages than 2 MB hold (a 5,000-result run's statistics
        # rewrite 1.7 MB of buckets alone, beside the results and their indexes), and what
        # no longer fits is spilled to the WAL mid-transaction and read back. At 1M results,
        # the statistics added 41% and 59% to such an import with 2 MB in two runs here, 11
        # to 20% with 16 or 32 MB. The cache grows only as pages are touched.
        cursor.execute(f"PRAGMA cache_size={-SQLITE_CACHE_KIB}")
        if checkpoint_in_background:
            cursor.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_SAFETY_NET_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection):
        # A write takes SQLite's write lock at once: a read transaction that upgrades later
        # fails at once (SQLITE_BUSY) when another writer committed in between.
        immediate = conn.get_execution_options().get("redline_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# SQLite copies the WAL back into the database file (a checkpoint, with an fsync) in the commit
# that takes the WAL past 1,000 pages (4 MB): with imports of thousands of results, nearly
# every import's commit, 25-30 ms of a 10,000-test import here. The server checkpoints in a
# thread of its own instead (SQLite releases the GIL while it copies); a commit still
# checkpoints itself past the safety net, should that thread fall behind.
# The net counts the WAL's frames, copied or not, and the WAL starts over only at a write
# transaction that begins once all of it is copied: under imports back to back that never
# happens, and the WAL grows by each import (38 MB for 5,000 results at 1M results) until a
# commit crosses the net and copies what the thread has not yet, 150-250 ms. At 25,000 pages
# (100 MB) that was every third such import; at 100,000 (400 MB of WAL file at most, reused
# once it starts over), one in ten.
CHECKPOINT_SAFETY_NET_PAGES = 100_000
CHECKPOINT_INTERVAL_SECONDS = 0.5

_checkpointers: weakref.WeakKeyDictionary[Engine, SqliteCheckpointer] = \
    weakref.WeakKeyDictionary()


class SqliteCheckpointer:
    """Checkpoints one SQLite database's WAL every `interval` seconds in a daemon thread, on a
    connection of its own. PASSIVE: it never waits for (or blocks) readers and writers; what a
    reader still needs is copied at a later pass."""

    def __init__(self, path: str, interval: float = CHECKPOINT_INTERVAL_SECONDS):
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def checkpoint(self) -> tuple[int, int, int]:
        """One pass: (busy, frames in the WAL, frames copied), as SQLite reports them."""
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            return connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            connection.close()

    def start(self) -> SqliteCheckpointer:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="redline-checkpoint",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint()
            except sqlite3.Error:  # busy or gone for a moment: the next pass tries again
                log.debug("background checkpoint failed", exc_info=True)


def background_checkpointer(engine: Engine) -> SqliteCheckpointer | None:
    """The checkpointer of an engine made with `checkpoint_in_background`, for its owner to
    start and stop; None for other engines."""
    return _checkpointers.get(engine)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def is_nul_in_text(exc: BaseException) -> bool:
    """Is this PostgreSQL refusing a NUL character (from a path, a query or a JSON string:
    SQLite stores them, PostgreSQL's text and jsonb cannot)? A bad request, not a fault of
    the server. The driver's own error (psycopg refuses one in a text value before sending
    it; the server one escaped in JSON as \\u0000), or SQLAlchemy's wrapping of it."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    name = type(orig).__name__
    if name == "DataError":
        return "NUL (0x00)" in str(orig)
    if name == "UntranslatableCharacter":
        diag = getattr(orig, "diag", None)
        return "\\u0000" in f"{orig} {getattr(diag, 'message_detail', '') or ''}"
    return False


def is_unavailable(exc: BaseException) -> bool:
    """Does this database error mean the database cannot be reached (rather than a bug)?"""
    if isinstance(exc, PoolTimeout):  # every connection busy: overloaded, not broken
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(marker in text for marker in (
        "connection refused", "could not connect", "server closed the connection",
        "terminating connection", "connection is closed", "the database system is",
        "database is locked", "unable to open database", "connection timeout",
        "timeout expired", "no connection to the server", "connection to server",
        "consuming input failed", "disk i/o error",
    ))


def migrate(url: str) -> None:
    """Bring the database to the newest schema (Alembic `upgrade head`)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
