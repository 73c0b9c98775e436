"""Engine creation and the rules both databases share.

SQLite runs in WAL mode with a busy timeout, and write transactions start with
`BEGIN IMMEDIATE` so two writers queue instead of failing with "database is locked" when a
read transaction tries to upgrade. PostgreSQL connections that sat idle in the pool are checked
before use, and a connection found broken while in use invalidates the whole pool, so the server
recovers by itself after the database comes back (the request that found it answers
UNAVAILABLE, which is retryable).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

WRITE = {"redline_write": True}


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    """Pool sizing: every server or worker process holds up to pool_size + max_overflow
    connections; keep (processes x that) under PostgreSQL's max_connections (100 by default)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=max_overflow)
        _configure_sqlite(engine)
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


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # The driver must not open transactions by itself: we emit BEGIN below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection):
        immediate = conn.get_execution_options().get("redline_write")
        # Straight to the driver: every request begins a transaction, and a statement through
        # SQLAlchemy costs several times what SQLite takes to run BEGIN.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


_write_locks: dict[int, threading.Lock] = {}


def sqlite_write_lock(engine: Engine) -> threading.Lock | None:
    """One lock per SQLite database in this process, taken around request write transactions.

    SQLite admits one writer; without this, concurrent writers poll its busy handler with
    growing sleeps, and an unlucky request waits seconds (a long p99). With it they queue in
    order inside the process; other processes still queue on the busy timeout."""
    if not is_sqlite(engine):
        return None
    return _write_locks.setdefault(id(engine), threading.Lock())


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
