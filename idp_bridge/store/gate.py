"""The SQLite write gate: one lock, per database file, for every writing transaction of every thread and process.

SQLite lets one transaction write at a time and makes the others wait in its busy handler, which sleeps in
growing steps (1, 2, 5, 10 ms ...) and so turns contention into tail latency. Every writing transaction on a
SQLite engine of this package instead waits here, before its BEGIN IMMEDIATE: on a thread lock, which wakes
the next writer of the process as soon as the holder ends, then on an exclusive flock of a file beside the
database, which does the same across processes. The gate is taken by the engine's `begin` listener
(store.db) and let go by the driver connection when its transaction ends (GatedConnection), so no writer
can bypass it and none holds it past its COMMIT or ROLLBACK.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

# As long as SQLite's own busy timeout (store.db): a writer that waits longer fails as SQLite would have.
TIMEOUT_SECONDS = 30.0
LOCK_SUFFIX = "-writers.lock"


class GateTimeout(sqlite3.OperationalError):
    """The gate stayed taken for the whole timeout: reported as SQLite reports a busy database."""


class WriteGate:
    """Mutual exclusion of writers to one SQLite database: threads by a lock, processes by a file lock.

    The lock file is opened for each hold rather than kept open: a disk that turned read-only then refuses
    the writer at once (PermissionError), before any SQLite statement.
    """

    def __init__(self, lock_path: str | None) -> None:
        self.lock_path = lock_path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def acquire(self, timeout: float = TIMEOUT_SECONDS) -> None:
        """Wait for the gate; GateTimeout after `timeout` seconds, OSError when the lock file cannot be opened."""
        if not self._lock.acquire(timeout=timeout):
            raise GateTimeout("database is locked (the write gate stayed taken)")
        if self.lock_path is None:
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except BaseException:
            self._lock.release()
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            self._lock.release()
            raise
        self._fd = fd

    def release(self) -> None:
        """Let the next writer in (any thread may release: a connection can be closed from another one)."""
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.close(fd)  # closing the only descriptor of the lock releases the flock
        finally:
            self._lock.release()

    def locked(self) -> bool:
        """Whether a writer of this process holds the gate."""
        return self._lock.locked()

    @contextmanager
    def held(self, timeout: float = TIMEOUT_SECONDS) -> Iterator[None]:
        """The gate, for the block."""
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()

    def _after_fork(self) -> None:
        # The child has only the forking thread: a lock another thread held stays held in the child forever,
        # and the parent's open lock descriptor would share the parent's flock.
        self._lock = threading.Lock()
        self._fd = None


_gates: dict[str, WriteGate] = {}
_gates_lock = threading.Lock()
_all: weakref.WeakSet[WriteGate] = weakref.WeakSet()


def gate_for(database: str | None) -> WriteGate:
    """The gate of a SQLite database file (shared by every engine of this process on that file).

    An in-memory database gets a gate of its own with no lock file: no other process can open it.
    """
    if database is None:
        private = WriteGate(None)
        _all.add(private)
        return private
    path = os.path.abspath(database)
    with _gates_lock:
        gate = _gates.get(path)
        if gate is None:
            gate = _gates[path] = WriteGate(path + LOCK_SUFFIX)
            _all.add(gate)
        return gate


def _reset_after_fork() -> None:
    for gate in list(_all):
        gate._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


class GatedConnection(sqlite3.Connection):
    """A SQLite driver connection that gives the write gate back as soon as its transaction ends.

    store.db makes every connection of a SQLite engine one of these and sets its `gate`.
    """

    gate: WriteGate | None = None
    holding: bool = False

    def begin_write(self) -> None:
        """Wait for the gate, then BEGIN IMMEDIATE (SQLite's own write lock, now uncontended in this process)."""
        gate = self.gate
        if gate is None:
            self.execute("BEGIN IMMEDIATE")
            return
        try:
            gate.acquire()
        except OSError as exc:
            # A lock file that cannot be created or opened (a read-only disk) refuses the write like SQLite would.
            raise sqlite3.OperationalError(f"cannot take the write lock {gate.lock_path}: {exc.strerror}") from exc
        self.holding = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._let_go()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._let_go_unless_in_transaction()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._let_go_unless_in_transaction()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._let_go()

    def _let_go_unless_in_transaction(self) -> None:
        # A COMMIT that failed (SQLITE_BUSY, a full disk) leaves the transaction open: the gate stays taken until
        # the rollback that follows.
        try:
            open_transaction = self.in_transaction
        except sqlite3.Error:
            open_transaction = False
        if not open_transaction:
            self._let_go()

    def _let_go(self) -> None:
        if self.holding:
            self.holding = False
            assert self.gate is not None
            self.gate.release()
