"""Group commit: many threads' small writes, few short transactions, each caller waiting for its own commit."""

from __future__ import annotations

import _thread
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 256
TIMEOUT_SECONDS = 30.0
# How long the writer keeps its connection once nothing waits: across the short gaps of a steady stream of
# small batches it then skips the pool's checkout and pre-ping (a round trip on PostgreSQL) each time.
KEEP_CONNECTION_SECONDS = 1.0


@dataclass
class _Ticket:
    """Released by the writer once the item's transaction has ended; `error` says how it ended."""

    done: _thread.LockType = field(default_factory=_thread.allocate_lock)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.done.acquire()


class GroupCommit(Generic[T]):
    """Callers block until the transaction holding their item has committed, so returning still means durable.

    One writer thread per process writes whatever all callers submitted as one transaction (what arrives
    while it commits forms the next), so commit cost is paid per batch, not per item. `turn` is entered around
    each transaction: a lock shared with this process's other writers, or a file lock shared across processes.
    """

    def __init__(self, engine: Engine, write: Callable[[Connection, list[T]], None], *, name: str,
                 turn: Callable[[], AbstractContextManager[object]] = nullcontext, max_batch: int = MAX_BATCH,
                 timeout: float = TIMEOUT_SECONDS) -> None:
        self.engine = engine
        self.write = write
        self.name = name
        self.turn = turn
        self.max_batch = max_batch
        self.timeout = timeout
        self._pending: list[tuple[T, _Ticket]] = []
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, item: T) -> None:
        """Return once the item is committed; raise what the write raised."""
        ticket = _Ticket()
        with self._cond:
            self._pending.append((item, ticket))
            # A forked process inherits this object but not its thread.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        if not ticket.done.acquire(timeout=self.timeout):
            raise TimeoutError(f"{self.name}: not committed within {self.timeout:g} s")
        if ticket.error is not None:
            raise ticket.error

    def _take(self) -> list[tuple[T, _Ticket]]:
        with self._cond:
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            return batch

    def _run(self) -> None:
        # Kept between batches, so a busy writer skips the pool's checkout (and pre-ping) each time; given back
        # once nothing has waited for KEEP_CONNECTION_SECONDS.
        conn: Connection | None = None
        while True:
            with self._cond:
                while not self._pending:
                    if conn is None:
                        self._cond.wait()
                    elif not self._cond.wait(KEEP_CONNECTION_SECONDS) and not self._pending:
                        break
            if conn is not None and not self._pending:
                conn.close()
                conn = None
                continue
            batch: list[tuple[T, _Ticket]] = []
            error: BaseException | None = None
            try:
                with self.turn():
                    # Taken only once it is our turn, so whatever arrived meanwhile joins this transaction.
                    batch = self._take()
                    if conn is None:
                        conn = self.engine.connect()
                    with conn.begin():
                        self.write(conn, [item for item, _ in batch])
            except Exception as exc:
                log.exception("%s: writing %d items failed", self.name, len(batch))
                error = exc
                if conn is not None:
                    conn.close()  # a broken connection is not reused
                    conn = None
            for _, ticket in batch:
                ticket.error = error
                ticket.done.release()


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    """An exclusive flock on `path`, held for the block; waiters wake as soon as the holder lets go."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def sqlite_writers_lock(engine: Engine) -> Callable[[], AbstractContextManager[object]]:
    """For a file-backed SQLite database: a file lock beside it for group-commit writers of every process.

    Writers waiting on it wake as soon as the holder commits, where SQLite's busy handler would sleep 1, 2,
    5, 10… ms between retries and turn lock contention into tail latency. Elsewhere: no lock (PostgreSQL
    row inserts do not contend).
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return nullcontext
    path = database + "-writers.lock"
    return lambda: file_lock(path)
