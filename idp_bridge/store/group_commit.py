"""Group commit: many threads' small writes, few short transactions, each caller waiting for its own commit.

The one writer behind the inbound webhooks' inbox, the outbound deliveries' success log and the provisioning
stamps: batching, a kept connection, backoff with `Unavailable` (a 503 with Retry-After for senders) while the
database cannot write, and on PostgreSQL, for writes that are one statement, autocommit.
"""

from __future__ import annotations

import _thread
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError

from idp_bridge.store import sql

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 256
TIMEOUT_SECONDS = 30.0
# How long the writer keeps its connection once nothing waits: across the short gaps of a steady stream of
# small batches it then skips the pool's checkout and pre-ping (a round trip on PostgreSQL) each time.
KEEP_CONNECTION_SECONDS = 1.0
# After a failure the store is left alone for BACKOFF_FIRST_SECONDS, doubled after each further failure up to
# BACKOFF_MAX_SECONDS: a read-only, full or unreachable store costs one attempt and one log line per step,
# while the senders (IdPs retry on 503) carry the events until it can take them again.
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 15.0
# Failures that say the store cannot write now (read-only or full disk, lock file, lost connection), as opposed
# to a fault in what was written.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (OSError, OperationalError, InterfaceError, InternalError)


class Unavailable(Exception):
    """The store cannot take writes now; try again after `retry_after` seconds."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"{name}: the database cannot take writes now; retry in {retry_after:.1f} s")
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """The Retry-After value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


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
    while it waits for the write gate or commits forms the next), so commit cost is paid per batch, not per item.
    On SQLite the transaction's BEGIN waits at the write gate shared with every other writer (store.gate);
    `turn` is entered around each attempt (a hook for fault injection). `one_statement` says that `write`
    issues a single statement, atomic on its own: on PostgreSQL it then runs in autocommit, without the BEGIN
    and COMMIT round trips. When the store cannot write, every waiting caller gets `Unavailable` at once, and
    so does every caller until the backoff has passed; the next submission after it tries again.
    """

    def __init__(self, engine: Engine, write: Callable[[Connection, list[T]], None], *, name: str,
                 turn: Callable[[], AbstractContextManager[object]] = nullcontext, max_batch: int = MAX_BATCH,
                 timeout: float = TIMEOUT_SECONDS, backoff_first: float = BACKOFF_FIRST_SECONDS,
                 backoff_max: float = BACKOFF_MAX_SECONDS, one_statement: bool = False) -> None:
        if one_statement and not sql.is_sqlite(engine):
            # SQLite keeps its transaction: its BEGIN is where a writer waits at the write gate.
            engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.engine = engine
        self.write = write
        self.name = name
        self.turn = turn
        self.max_batch = max_batch
        self.timeout = timeout
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.failures = 0  # consecutive failed attempts; 0 while writing works
        self._retry_at = 0.0  # monotonic time before which no write is attempted
        self._pending: list[tuple[T, _Ticket]] = []
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, item: T) -> None:
        """Return once the item is committed; raise what the write raised, or Unavailable while backing off."""
        ticket = _Ticket()
        with self._cond:
            if self.failures:
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    raise Unavailable(self.name, wait)
            self._pending.append((item, ticket))
            # A forked process inherits this object but not its thread.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        if not ticket.done.acquire(timeout=self.timeout):
            raise TimeoutError(f"{self.name}: not committed within {self.timeout:g} s")
        error = ticket.error
        if isinstance(error, _Refused):
            raise Unavailable(self.name, error.retry_after) from error.cause
        if error is not None:
            raise error

    def _take(self) -> list[tuple[T, _Ticket]]:
        with self._cond:
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            return batch

    def _take_all(self) -> list[tuple[T, _Ticket]]:
        with self._cond:
            batch, self._pending = self._pending, []
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
            taken = False
            try:
                with self.turn():
                    if conn is None:
                        conn = self.engine.connect()
                    with conn.begin():
                        # Taken only once the transaction holds the write gate, so whatever arrived meanwhile
                        # joins it.
                        batch, taken = self._take(), True
                        self.write(conn, [item for item, _ in batch])
            except Exception as exc:
                if conn is not None:
                    if isinstance(exc, UNAVAILABLE_ERRORS):
                        # Neither this writer nor the pool reuses it: opened while the disk was read-only, a SQLite
                        # connection stays read-only for good; a lost PostgreSQL one stays lost.
                        conn.invalidate()
                    conn.close()
                    conn = None
                if not taken:
                    # The turn itself failed (e.g. its lock file cannot be created): everything waiting for it
                    # is answered now, or the loop would retry it at once, forever.
                    batch = self._take_all()
                if isinstance(exc, UNAVAILABLE_ERRORS):
                    error = self._back_off(exc, len(batch))
                    batch += self._take_all()  # whatever arrived during the attempt fails alike
                else:
                    log.exception("%s: writing %d items failed", self.name, len(batch))
                    error = exc
            else:
                if self.failures:
                    log.warning("%s: writing again after %d failed attempts", self.name, self.failures)
                    with self._cond:
                        self.failures = 0
            for _, ticket in batch:
                ticket.error = error
                ticket.done.release()

    def _back_off(self, exc: BaseException, items: int) -> _Refused:
        """Start the next backoff step and log it once; returns what the waiting callers are told."""
        with self._cond:
            delay = min(self.backoff_max, self.backoff_first * 2 ** min(self.failures, 32))
            self.failures += 1
            self._retry_at = time.monotonic() + delay
        # One line per step and no traceback: an outage logs a bounded amount.
        log.error("%s: writing %d items failed (%s); refusing writes for %.1f s", self.name, items, describe(exc),
                  delay)
        return _Refused(exc, delay)


class _Refused(Exception):
    """How the writer tells its waiting callers that the store is unavailable (each raises its own Unavailable)."""

    def __init__(self, cause: BaseException, retry_after: float) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retry_after = retry_after


def describe(exc: BaseException) -> str:
    """The driver's own error, one line: a SQLAlchemy error's text would carry the statement and every row."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = " ".join(str(cause).split())[:300]
    return f"{type(cause).__module__}.{type(cause).__qualname__}: {text}"
