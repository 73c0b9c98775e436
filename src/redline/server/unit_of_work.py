"""One unit of work per request: its database connection, opened when first needed, and
finished (committed or rolled back) in one place, the `UnitOfWorkMiddleware`.

The rules, and why:

- Connections are taken on the event loop, never in a worker thread. A request takes a
  *slot* (`Slots`, as many as the connection pool holds) before it opens a connection, and
  gives it back when it closes it; it never holds two. So a worker thread never waits for
  the pool while the requests that hold its connections wait for a thread.
- A read request's connection is opened by its first use (`read`, or the `Db` dependency)
  and given back as soon as its response starts: nothing is held while the response travels.
- A write's transaction is begun by the `Db` dependency (or, for the endpoints that stream a
  large body, by the endpoint once the body has arrived), never by authentication, which reads
  on a short connection of its own (`read`). So no write transaction, and on SQLite no write
  lock, is open while a request waits on the network for its body; the middleware commits
  before the response is sent.
- SQLite admits one writer. The writers of a process take turns (`WriterTurns`) on the event
  loop before their transaction begins, so the writer whose turn it is always finds a thread
  for its endpoint. A turn (or a slot) not given in time answers 503 UNAVAILABLE with
  `Retry-After`. Other processes (a `redline worker`) queue on SQLite's own busy timeout.
- The few writes a request commits apart from its own transaction (its idempotency claim, an
  upload's guard job: `write_apart`) take a slot and a turn too.
- Commit and rollback run in threads of their own small pool (`FINISHER_THREADS`), never in
  the endpoints' pool, so a full endpoint pool cannot keep a request from finishing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine

from redline.server.db import WRITE, is_sqlite
from redline.server.http_errors import ApiError

log = logging.getLogger("redline.server")
T = TypeVar("T")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SLOT_WAIT_SECONDS = 30.0

# Threads that commit, roll back and close connections, apart from the endpoints' threadpool.
FINISHER_THREADS = 16
_finishers: anyio.CapacityLimiter | None = None


def _finisher_limiter() -> anyio.CapacityLimiter:
    global _finishers
    if _finishers is None:  # made on the event loop, at its first use
        _finishers = anyio.CapacityLimiter(FINISHER_THREADS)
    return _finishers


class _LoopSemaphore:
    """A semaphore of the event loop that serves the app, given up after `wait_seconds` with
    503 UNAVAILABLE (a test client may serve one app from several loops in turn)."""

    def __init__(self, size: int, wait_seconds: float, what: str):
        self.size = size
        self.wait_seconds = wait_seconds
        self.what = what
        self._semaphore: anyio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore, self._loop = anyio.Semaphore(self.size), loop
        with anyio.move_on_after(self.wait_seconds) as waited:
            await self._semaphore.acquire()
        if waited.cancelled_caught:
            raise ApiError("UNAVAILABLE", f"The database had no {self.what} for this request "
                           f"within {self.wait_seconds:g} s: the server is busy",
                           {"dependency": "database", "reason": f"{self.what}_wait"},
                           {"Retry-After": "2"})

    def give_back(self) -> None:
        assert self._semaphore is not None
        self._semaphore.release()


class Slots(_LoopSemaphore):
    """A process's requests that hold a connection at once: as many as its pool holds."""

    def __init__(self, size: int, wait_seconds: float = SLOT_WAIT_SECONDS):
        super().__init__(size, wait_seconds, "connection")


class WriterTurns(_LoopSemaphore):
    """SQLite's one writer, as turns taken on the event loop."""

    def __init__(self, wait_seconds: float):
        super().__init__(1, wait_seconds, "write")


class UnitOfWork:
    """One request's database work. Made by the middleware; endpoints reach its connection
    through the `Db` dependency, or `read`, never by finishing it themselves."""

    def __init__(self, engine: Engine, write: bool, slots: Slots,
                 turns: WriterTurns | None):
        self.engine = engine
        self.write = write
        self.slots = slots
        self.turns = turns  # SQLite's writer turns; None on PostgreSQL
        # Bookkeeping (a credential's last use, at most once a minute): written apart, after
        # the request's transaction, whatever became of it.
        self.after_finish: list[Callable[[Connection], None]] = []
        self._conn: Connection | None = None
        self._holds_slot = False
        self._holds_turn = False

    @property
    def opened(self) -> bool:
        return self._conn is not None

    async def open_read(self) -> Connection:
        """The request's connection: a read transaction (SQLite: one snapshot), or none on
        PostgreSQL (each statement at READ COMMITTED)."""
        if self._conn is None:
            await self._take_slot()
            await anyio.to_thread.run_sync(self._open, False)
        assert self._conn is not None
        return self._conn

    async def open_write(self) -> Connection:
        """The request's write transaction, begun once its writer turn has come."""
        if self._conn is None:
            await self._take_slot()
            await self._take_turn()
            await anyio.to_thread.run_sync(self._open, True)
        assert self._conn is not None
        return self._conn

    def connection(self) -> Connection:
        """The connection opened by `open_read` or `open_write` (the `Db` dependency)."""
        if self._conn is None:
            raise RuntimeError("the request's connection is opened by the Db dependency")
        return self._conn

    async def read(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` in a worker thread, to read: on the request's connection, or,
        for a write whose transaction has not begun, on a short one of its own (who is
        calling is read before the write transaction begins)."""
        if self._conn is None and self.write:
            await self._take_slot()
            try:
                return await anyio.to_thread.run_sync(self._read_apart, work)
            finally:
                self._give_slot()
        if self._conn is None:  # a read's first use: opened in the same thread call
            await self._take_slot()
            return await anyio.to_thread.run_sync(self._open_and_read, work)
        return await anyio.to_thread.run_sync(work, self._conn)

    async def write_apart(self, work: Callable[[Connection], T]) -> T:
        """`work` in a short write transaction of its own, committed at once whatever becomes
        of the request's."""
        assert self._conn is None, "a request's own transaction would wait for this one"
        await self._take_slot()
        try:
            await self._take_turn()
            try:
                return await anyio.to_thread.run_sync(self._write_apart, work,
                                                      limiter=_finisher_limiter())
            finally:
                self._give_turn()
        finally:
            self._give_slot()

    async def finish(self, commit: bool,
                     before_commit: Callable[[Connection], None] | None = None) -> None:
        """Commit (after `before_commit`, in the same transaction) or roll back, close, give
        the turn and the slot back, then write the bookkeeping."""
        try:
            if self._conn is not None:
                await anyio.to_thread.run_sync(self._finish, commit, before_commit,
                                               limiter=_finisher_limiter())
        finally:
            self._give_turn()
            self._give_slot()
        after_finish, self.after_finish = self.after_finish, []
        for work in after_finish:
            try:
                await self.write_apart(work)
            except Exception:  # bookkeeping must never fail a request
                log.warning("bookkeeping after a request failed", exc_info=True)

    # -- in worker threads ---------------------------------------------------------------

    def _open(self, write: bool) -> None:
        conn = self.engine.connect()
        if write:
            conn = conn.execution_options(**WRITE)
        elif conn.dialect.name == "postgresql":
            # BEGIN and ROLLBACK would be two round trips for nothing.
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.begin()
        self._conn = conn

    def _open_and_read(self, work: Callable[[Connection], T]) -> T:
        self._open(False)
        assert self._conn is not None
        return work(self._conn)

    def _read_apart(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            try:
                return work(conn)
            finally:
                conn.rollback()

    def _write_apart(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            return work(conn)

    def _finish(self, commit: bool, before_commit) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            if commit:
                if before_commit is not None:
                    before_commit(conn)
                conn.commit()
            else:
                conn.rollback()
        finally:
            conn.close()
            self._conn = None

    # -- slots and turns, on the event loop -----------------------------------------------

    async def _take_slot(self) -> None:
        if not self._holds_slot:
            await self.slots.take()
            self._holds_slot = True

    def _give_slot(self) -> None:
        if self._holds_slot and self._conn is None:
            self._holds_slot = False
            self.slots.give_back()

    async def _take_turn(self) -> None:
        if self.turns is not None and not self._holds_turn:
            await self.turns.take()
            self._holds_turn = True

    def _give_turn(self) -> None:
        if self._holds_turn and self._conn is None:
            self._holds_turn = False
            assert self.turns is not None
            self.turns.give_back()


def writer_turns(engine: Engine, wait_seconds: float) -> WriterTurns | None:
    return WriterTurns(wait_seconds) if is_sqlite(engine) else None
