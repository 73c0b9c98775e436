"""One unit of work per request: its database connection, opened when first needed, and
finished (committed or rolled back) in one place, the `UnitOfWorkMiddleware`.

The rules, and why:

- A read request's connection is opened by its first use and given back as soon as the
  response starts: nothing of the database is held while the response travels.
- A write request's transaction is opened by the `Db` dependency (or, for the endpoints that
  stream a large body, by the endpoint once the body has arrived: `open_write`), never by
  authentication, which reads on a short connection of its own (`reading`). So a write
  transaction, and on SQLite its one writer's lock, is never open while the request waits on
  the network for its body; and the middleware commits before the response is sent.
- SQLite admits one writer. Writers of this process take turns on an asyncio semaphore
  (`WriterTurns`) before their transaction begins: the wait is on the event loop, so no
  worker thread is held while waiting, and the writer whose turn it is always finds a thread
  for its endpoint. A turn not given within `write_wait_seconds` answers 503 UNAVAILABLE with
  `Retry-After`. Other processes (a `redline worker`) queue on SQLite's own busy timeout.
- The few writes a request commits apart from its own transaction (its idempotency claim,
  an upload's guard job: `write_apart`) take a writer turn too. No request's thread ever waits
  for SQLite's lock behind a writer of this process.
- Commit and rollback run in threads of their own small pool (`FINISHER_THREADS`), never in
  the endpoints' pool, so a full endpoint pool cannot keep a writer from finishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine

from redline.server.db import WRITE, is_sqlite
from redline.server.http_errors import ApiError

log = logging.getLogger("redline.server")
T = TypeVar("T")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Threads that commit, roll back and close connections, apart from the endpoints' threadpool.
FINISHER_THREADS = 16
_finishers: anyio.CapacityLimiter | None = None


def _finisher_limiter() -> anyio.CapacityLimiter:
    global _finishers
    if _finishers is None:  # made on the event loop, at its first use
        _finishers = anyio.CapacityLimiter(FINISHER_THREADS)
    return _finishers


# Bookkeeping writes a request leaves behind (a credential's last use, at most once a minute):
# one thread, fire and forget, so they never take a finisher's place or delay a response.
_bookkeeping = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redline-bookkeeping")


class WriterTurns:
    """SQLite's one writer, as turns taken on the event loop (see the module's docstring).

    One per application; its semaphore belongs to the event loop that serves it (a test
    client may serve one app from several loops in turn)."""

    def __init__(self, wait_seconds: float):
        self.wait_seconds = wait_seconds
        self._semaphore: anyio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore, self._loop = anyio.Semaphore(1), loop
        with anyio.move_on_after(self.wait_seconds) as waited:
            await self._semaphore.acquire()
        if waited.cancelled_caught:
            raise ApiError("UNAVAILABLE", f"The database had no turn for this write within "
                           f"{self.wait_seconds:g} s: the server is busy",
                           {"dependency": "database", "reason": "write_wait"},
                           {"Retry-After": "2"})

    def give_back(self) -> None:
        assert self._semaphore is not None
        self._semaphore.release()


class UnitOfWork:
    """One request's database work. Made by the middleware; endpoints reach its connection
    through the `Db` dependency, never by finishing it themselves."""

    def __init__(self, engine: Engine, write: bool, turns: WriterTurns | None):
        self.engine = engine
        self.write = write
        self.turns = turns  # SQLite's writer turns; None on PostgreSQL
        self.after_finish: list[Callable[[], None]] = []
        self._conn: Connection | None = None
        self._holds_turn = False

    @property
    def opened(self) -> bool:
        return self._conn is not None

    async def open_write(self) -> Connection:
        """The write transaction, begun once this request's writer turn has come."""
        if self._conn is None:
            if self.turns is not None and not self._holds_turn:
                await self.turns.take()
                self._holds_turn = True
            await anyio.to_thread.run_sync(self.connection)
        assert self._conn is not None
        return self._conn

    def connection(self) -> Connection:
        """The request's connection, opened here if no one has yet. A read begins a read
        transaction (SQLite: one snapshot) or none (PostgreSQL: each statement at READ
        COMMITTED); a write begins its write transaction (SQLite: `BEGIN IMMEDIATE`)."""
        if self._conn is None:
            if self.write and self.turns is not None and not self._holds_turn:
                raise RuntimeError("a SQLite write opens its transaction with `open_write`")
            conn = self.engine.connect()
            if self.write:
                conn = conn.execution_options(**WRITE)
            elif conn.dialect.name == "postgresql":
                # BEGIN and ROLLBACK would be two round trips for nothing.
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.begin()
            self._conn = conn
        return self._conn

    async def write_apart(self, work: Callable[[Connection], T]) -> T:
        """`work` in a short write transaction of its own, committed at once whatever becomes
        of the request's (on SQLite in a writer turn of its own)."""
        assert not self._holds_turn, "a request's own turn would wait for itself"
        if self.turns is not None:
            await self.turns.take()
        try:
            return await anyio.to_thread.run_sync(self._write_apart, work,
                                                  limiter=_finisher_limiter())
        finally:
            if self.turns is not None:
                self.turns.give_back()

    def _write_apart(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            return work(conn)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection to read who is calling: the request's own when it is a read or its
        write transaction has begun already, else a short one of its own, so that
        authentication never begins the write transaction."""
        if not self.write or self._conn is not None:
            yield self.connection()
            return
        with self.engine.connect() as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    async def finish(self, commit: bool,
                     before_commit: Callable[[Connection], None] | None = None) -> None:
        """Commit (after `before_commit`, in the same transaction) or roll back, close, give
        the writer turn back, then leave the bookkeeping to its thread."""
        try:
            if self._conn is not None:
                await anyio.to_thread.run_sync(self._finish, commit, before_commit,
                                               limiter=_finisher_limiter())
        finally:
            if self._holds_turn:
                self._holds_turn = False
                assert self.turns is not None
                self.turns.give_back()
            after_finish, self.after_finish = self.after_finish, []
            for callback in after_finish:
                _bookkeeping.submit(_logged, callback)

    def _finish(self, commit: bool, before_commit) -> None:
        conn = self._conn
        try:
            if conn is None:
                return
            if commit:
                if before_commit is not None:
                    before_commit(conn)
                conn.commit()
            else:
                conn.rollback()
        finally:
            if conn is not None:
                conn.close()
            self._conn = None


def _logged(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # bookkeeping must never fail a request
        log.exception("bookkeeping after a request failed")


def writer_turns(engine: Engine, wait_seconds: float) -> WriterTurns | None:
    return WriterTurns(wait_seconds) if is_sqlite(engine) else None
