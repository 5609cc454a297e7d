"""Engine, sessions and transaction scope; SQLite gets WAL, and its writers queue at the write gate."""

from __future__ import annotations

import contextvars
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from idp_bridge.store.gate import GatedConnection, WriteGate, gate_for
from idp_bridge.store.sql import is_sqlite

# Whether the transaction about to begin will write. On SQLite a writing transaction waits at the write
# gate and starts with BEGIN IMMEDIATE, so that concurrent writers queue instead of failing with SQLITE_BUSY
# when a read lock is upgraded mid-transaction; that queue is what makes seat limits and single redemption
# hold on SQLite.
_write_intent: contextvars.ContextVar[bool] = contextvars.ContextVar("write_intent", default=True)

log = logging.getLogger(__name__)

# SQLite checkpoints its WAL inside whichever commit pushes the log past wal_autocheckpoint pages, and that
# commit then waits for the copy and the fsyncs (15-120 ms). A background thread per engine checkpoints
# instead; connections keep a far higher threshold only as a bound for when that thread cannot keep up.
CHECKPOINT_INTERVAL_SECONDS = 1.0
AUTOCHECKPOINT_FALLBACK_PAGES = 10000
_checkpointers: weakref.WeakKeyDictionary[Engine, WalCheckpointer] = weakref.WeakKeyDictionary()
_gates: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()
_files: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def json_dumps(value: Any) -> str:
    """JSON columns are encoded with orjson: several times faster than json.dumps on bulk writes."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# What a failing database raises through the store: SQLAlchemy's errors, and SQLite's own from a driver
# connection the store could not translate (a failed ROLLBACK on a broken connection).
DATABASE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, sqlite3.Error)


def embedded(url: str) -> bool:
    """Whether a database URL names the embedded SQLite backend."""
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings each backend needs."""
    parsed = make_url(url)
    kwargs.setdefault("json_serializer", json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False,
                                                  "factory": GatedConnection}, **kwargs)
        path = parsed.database or ""
        in_memory = path in ("", ":memory:") or path.startswith("file:") or "memory" in str(parsed.query)
        if not in_memory:
            _create_private(path)
            _files[engine] = os.path.abspath(path)
        _configure_sqlite(engine, None if in_memory else WalCheckpointer(path), gate_for(None if in_memory else path))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    if kwargs.get("poolclass") is NullPool:
        kwargs.pop("pool_size")
        kwargs.pop("max_overflow")
    return create_engine(url, **kwargs)


def _create_private(path: str) -> None:
    """Create the SQLite file owner-only (0600) before SQLite would create it with the umask's mode.

    Its -wal and -shm files take the database file's mode. An existing file keeps the mode it has.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        pass  # a missing directory or a read-only place: SQLite reports it clearly on connect


def _configure_sqlite(engine: Engine, checkpointer: WalCheckpointer | None, gate: WriteGate) -> None:
    _gates[engine] = gate

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        if isinstance(dbapi_conn, GatedConnection):
            dbapi_conn.gate = gate
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if checkpointer is not None:
            cur.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_FALLBACK_PAGES}")
            checkpointer.start()
        cur.close()

    if checkpointer is not None:
        _checkpointers[engine] = checkpointer
        event.listen(engine, "engine_disposed", lambda _engine: checkpointer.stop())
        weakref.finalize(engine, checkpointer.stop)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight on the driver connection: a statement execution through SQLAlchemy costs several times the
        # BEGIN itself. A writer waits at the gate first (store.gate). Errors (SQLITE_BUSY past the busy timeout,
        # a lock file a read-only disk refuses) still surface as SQLAlchemy's.
        write = _write_intent.get()
        conn.info[_READER] = not write
        driver = conn.connection.dbapi_connection
        try:
            if not write:
                driver.execute("BEGIN")
            elif isinstance(driver, GatedConnection):
                driver.begin_write()
            else:
                driver.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            sql = "BEGIN IMMEDIATE" if write else "BEGIN"
            raise DBAPIError.instance(sql, None, exc, sqlite3.Error, dialect=conn.dialect) from exc

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse_write_in_reader(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # A reader cannot become a writer safely: once another connection has committed since its first read,
        # SQLite refuses the upgrade at once ("database is locked"), busy timeout or not. Failing every such
        # write, not only the ones that meet a concurrent writer, makes the path show up in any test.
        if conn.info.get(_READER) and conn.in_transaction() and statement.lstrip()[:7].upper().startswith(_WRITES):
            raise WriteInReadTransaction(
                "a write inside a transaction begun as read-only; run it under db.writing() or outside read_only()")


_READER = "idp_bridge.reader"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class WriteInReadTransaction(RuntimeError):
    """A statement that writes ran in a SQLite transaction declared read-only (it would fail under contention)."""


def gate_of(engine: Engine) -> WriteGate | None:
    """The write gate of a SQLite engine made by make_engine (None for PostgreSQL)."""
    return _gates.get(engine)


def database_file(engine: Engine) -> str | None:
    """The database file of a file-backed SQLite engine made by make_engine (None for PostgreSQL and in-memory)."""
    return _files.get(engine)


def checkpointer_of(engine: Engine) -> WalCheckpointer | None:
    """The WAL checkpointer of a file-backed SQLite engine (None for PostgreSQL and in-memory SQLite)."""
    return _checkpointers.get(engine)


class WalCheckpointer:
    """Checkpoints one SQLite database's WAL every interval from a daemon thread, off every request's path.

    PASSIVE never waits for readers or writers; what it cannot copy now is copied on a later round.
    """

    def __init__(self, path: str, interval: float = CHECKPOINT_INTERVAL_SECONDS) -> None:
        self.path = os.path.abspath(path)
        self.interval = interval
        self.rounds = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread unless it runs (called on every new connection; after dispose it starts again)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="sqlite-checkpoint",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def checkpoint(self) -> None:
        """One PASSIVE checkpoint on a short-lived connection that may not create the file."""
        conn = sqlite3.connect(f"file:{quote(self.path)}?mode=rw", uri=True, timeout=5, check_same_thread=False)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
        self.rounds += 1

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.checkpoint()
            except sqlite3.Error as exc:
                log.debug("WAL checkpoint of %s skipped: %s", self.path, exc)


@contextmanager
def writing() -> Iterator[None]:
    """Within this block, new SQLite transactions take the write lock up front (however the request declared)."""
    token = _write_intent.set(True)
    try:
        yield
    finally:
        _write_intent.reset(token)


@contextmanager
def read_only() -> Iterator[None]:
    """Within this block, new SQLite transactions take no write lock."""
    token = _write_intent.set(False)
    try:
        yield
    finally:
        _write_intent.reset(token)


@contextmanager
def bare_connection(engine: Engine) -> Iterator[Any]:
    """A pooled driver (DBAPI) connection for standalone statements, with no SQLAlchemy Connection around it.

    On SQLite a statement runs in the driver's own implicit read transaction (it issues no BEGIN: see
    _on_connect), which takes no write lock, so only reads belong there; on PostgreSQL in autocommit, which
    spares the BEGIN and COMMIT or ROLLBACK round trips, so each statement commits on its own. Back in the pool
    the connection is as it was checked out.
    """
    raw = engine.raw_connection()
    try:
        if is_sqlite(engine):
            yield raw.dbapi_connection
            return
        driver = raw.driver_connection
        driver.autocommit = True  # type: ignore[union-attr]
        try:
            yield raw.dbapi_connection
        finally:
            driver.autocommit = False  # type: ignore[union-attr]
    finally:
        raw.close()


def set_write_intent(write: bool) -> contextvars.Token[bool]:
    """Declare whether the coming transaction writes (request scope uses the HTTP method)."""
    return _write_intent.set(write)


def reset_write_intent(token: contextvars.Token[bool]) -> None:
    _write_intent.reset(token)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()



# The key of the transaction-scoped advisory lock every schema migration of a PostgreSQL database takes
# (migrations/env.py), so processes started together (workers, servers, a migration Job) migrate one at a time.
MIGRATION_LOCK_KEY = 774411


@contextmanager
def migrating(connection: Connection) -> Iterator[None]:
    """What a schema migration on `connection` needs around its transaction.

    SQLite: foreign keys off. Alembic's batch mode changes a SQLite table by copying it to a new one and dropping
    the old, and dropping a parent table with foreign keys on would delete (ON DELETE CASCADE) every row that
    refers to it: a downgrade that drops a column of `organizations` would empty `members`. The pragma works
    only outside a transaction, so it is set on the driver connection before the migration begins and set back
    after. PostgreSQL: nothing here; the migration's transaction takes the advisory lock (`migration_lock_sql`).
    """
    if not is_sqlite(connection):
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def migration_lock_sql(connection: Connection) -> str | None:
    """The statement that makes a migration's transaction wait for any other migration, where one is needed."""
    return None if is_sqlite(connection) else f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
