"""Rate-limit counters for the invitee pages (Flask-Limiter's fixed windows): shared by every process of the
deployment (database://, the default: in a counter file beside a SQLite database, which is one host's, or in the
PostgreSQL database), in this process only (memory://), or in Redis."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from limits.errors import ConfigurationError
from limits.storage import Storage, storage_from_string
from sqlalchemy import Engine, Float, Integer, bindparam, case, delete, select
from sqlalchemy.exc import SQLAlchemyError

from idp_bridge.errors import ConfigError
from idp_bridge.models import RateLimitCounter
from idp_bridge.store import hostcounters
from idp_bridge.store.compiled import Step, run_now
from idp_bridge.store.db import DATABASE_ERRORS, database_file, read_only
from idp_bridge.store.sql import flavor, table_of

SCHEME = "idp-bridge-memory"
DATABASE_SCHEME = "database"
HOST_SCHEME = "idp-bridge-host"
SWEEP_EVERY_SECONDS = 60.0
SETTING = "rate_limit_storage_url"
MAX_KEY_LENGTH = 255
TABLE = table_of(RateLimitCounter)

log = logging.getLogger(__name__)


def limiter_storage(url: str, engine: Engine) -> tuple[str, dict[str, Any]]:
    """The limits storage URI and constructor options for the setting's value.

    memory:// is served by CounterStorage. database:// on a SQLite file counts in the counter file beside it
    (HostStorage) when that file can be opened, and in the database otherwise (a read-only instance directory).
    """
    if url == "memory://":
        return f"{SCHEME}://", {}
    if urlsplit(url).scheme != DATABASE_SCHEME:
        return url, {}
    database = database_file(engine)
    if database is not None:
        path = hostcounters.path_beside(database)
        try:
            hostcounters.HostCounters(path).close()
        except OSError as exc:
            log.warning("rate-limit counters stay in the database: %s cannot be opened (%s)", path, exc.strerror)
        else:
            return f"{HOST_SCHEME}://", {"path": path}
    return url, {"engine": engine}


def open_storage(url: str, engine: Engine) -> Storage:
    """The storage the setting names, reachable now; a ConfigError naming the setting otherwise."""
    scheme = urlsplit(url).scheme
    try:
        uri, options = limiter_storage(url, engine)
        storage = storage_from_string(uri, **options)
    except ConfigurationError as exc:
        hint = (" (pip install 'idp-bridge[redis]')" if scheme.startswith("redis")
                else "; use database://, memory:// or redis://host:port/db")
        # limits' messages may quote the URL; its password never reaches the log.
        problem = str(exc).replace(url, _redacted(url))
        raise ConfigError(SETTING, f"{_redacted(url)} cannot be used: {problem}{hint}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(SETTING, f"{_redacted(url)} cannot be used: {type(exc).__name__}") from None
    if not isinstance(storage, Storage):
        raise ConfigError(SETTING, f"{_redacted(url)} is not a synchronous storage")
    if isinstance(storage, DatabaseStorage):
        # The deployment's own database, just migrated: whether it takes writes now is /readyz's question.
        return storage
    try:
        reachable = storage.check()
    except Exception:
        reachable = False
    if not reachable:
        raise ConfigError(SETTING, f"{_redacted(url)} does not answer")
    return storage


def _redacted(url: str) -> str:
    """The URL without its password (redis://:secret@host)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


class CounterStorage(Storage):
    """Fixed-window counters in this process, dropped once their window has passed.

    limits' own memory storage starts a new timer thread whenever 10 ms passed without one, to expire
    counters; the request that starts it waits for the thread to come up. Here a counter is dropped when it
    is next touched after its window, and the whole table is swept at most once a minute by the request
    that finds a sweep due, so memory stays bounded by the clients seen in one window.
    """

    STORAGE_SCHEME = [SCHEME]
    clock = staticmethod(time.time)

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._expiries: dict[str, float] = {}
        self._next_sweep = self.clock() + SWEEP_EVERY_SECONDS

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def _live(self, key: str, now: float) -> bool:
        """Whether key's window is still open; a passed window is forgotten (caller holds the lock)."""
        if self._expiries.get(key, 0.0) > now:
            return True
        self._counts.pop(key, None)
        self._expiries.pop(key, None)
        return False

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_SECONDS
        for key in [k for k, expiry in self._expiries.items() if expiry <= now]:
            del self._expiries[key]
            self._counts.pop(key, None)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self.clock()
        with self._lock:
            self._sweep(now)
            if not self._live(key, now):
                self._expiries[key] = now + expiry
            count = self._counts[key] = self._counts.get(key, 0) + amount
            return count

    def get(self, key: str) -> int:
        now = self.clock()
        with self._lock:
            return self._counts.get(key, 0) if self._live(key, now) else 0

    def get_expiry(self, key: str) -> float:
        with self._lock:
            return self._expiries.get(key, self.clock())

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            count = len(self._counts)
            self._counts.clear()
            self._expiries.clear()
            self._next_sweep = self.clock() + SWEEP_EVERY_SECONDS
            return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)
            self._expiries.pop(key, None)


class HostStorage(Storage):
    """Fixed-window counters in a file every process of this host maps (store.hostcounters): database:// on a
    SQLite database, whose deployment is one host, without a write transaction per hit."""

    STORAGE_SCHEME = [HOST_SCHEME]
    clock = staticmethod(time.time)

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, *, path: str | None = None,
                 slots: int = hostcounters.SLOTS, **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        if path is None:
            raise ConfigurationError("host-shared rate limits need the path of their counter file")
        try:
            self.table = hostcounters.HostCounters(path, slots)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"the counter file {path} cannot be opened: {exc}") from None

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        # ValueError: a closed mapping.
        return (OSError, ValueError)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.table.incr(key, self.clock(), expiry, amount)

    def get(self, key: str) -> int:
        window = self.table.window(key, self.clock())
        return window[0] if window is not None else 0

    def get_expiry(self, key: str) -> float:
        now = self.clock()
        window = self.table.window(key, now)
        return window[1] if window is not None else now

    def check(self) -> bool:
        return self.table.usable()

    def reset(self) -> int | None:
        return self.table.reset(self.clock())

    def clear(self, key: str) -> None:
        self.table.clear(key)


class DatabaseStorage(Storage):
    """Fixed-window counters in the bridge's database: one row per client and limit, shared by every gunicorn
    worker and instance of the deployment.

    Each hit is one upsert that starts a new window when the old one has passed and returns the count; the row
    lock (PostgreSQL) or the write lock (SQLite) makes concurrent hits count one after the other. Rows of
    passed windows are deleted at most once a minute per process.
    """

    STORAGE_SCHEME = [DATABASE_SCHEME]
    clock = staticmethod(time.time)

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, *, engine: Engine | None = None,
                 **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        if engine is None:
            raise ConfigurationError("database:// rate limits need the bridge's database engine")
        self.engine = engine
        self._next_sweep = 0.0
        table = TABLE
        now, fresh = bindparam("now", type_=Float()), bindparam("fresh_expiry", type_=Float())
        amount = bindparam("amount", type_=Integer())
        passed = table.c.expires_at <= now
        self._incr = flavor(engine).insert(table).values(
            key=bindparam("key"), count=amount, expires_at=fresh,
        ).on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"count": case((passed, amount), else_=table.c.count + amount),
                  "expires_at": case((passed, fresh), else_=table.c.expires_at)},
        ).returning(table.c.count)
        self._sweep = delete(table).where(table.c.expires_at <= bindparam("now"))
        self._get = select(table.c.count, table.c.expires_at).where(table.c.key == bindparam("key"))

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return DATABASE_ERRORS

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self.clock()
        params = {"key": _stored_key(key), "amount": amount, "now": now, "fresh_expiry": now + expiry}
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + SWEEP_EVERY_SECONDS
        # Each hit runs on every invitee page: straight on the driver (store.compiled.run_now), the sweep and the
        # upsert each atomic on their own.
        steps: list[Step] = [("ratelimit.sweep", lambda: self._sweep, {"now": now})] if sweep else []
        steps.append(("ratelimit.incr", lambda: self._incr, params))
        row = run_now(self.engine, steps)
        assert row is not None
        return int(row[0])

    def _row(self, key: str) -> tuple[int, float] | None:
        # A read: it neither waits at SQLite's write gate nor needs a writable disk.
        with read_only(), self.engine.connect() as conn:
            row = conn.execute(self._get, {"key": _stored_key(key)}).first()
        return None if row is None else (int(row[0]), float(row[1]))

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row is not None and row[1] > self.clock() else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        now = self.clock()
        return row[1] if row is not None and row[1] > now else now

    def check(self) -> bool:
        """Whether hits can be written: Flask-Limiter asks before it leaves its in-memory fallback."""
        try:
            with self.engine.begin() as conn:
                # Matches no row, yet needs a write transaction: a read-only database answers False.
                conn.execute(TABLE.update().where(TABLE.c.key == "").values(count=TABLE.c.count))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as conn:
            return int(conn.execute(delete(TABLE)).rowcount)

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(TABLE).where(RateLimitCounter.key == _stored_key(key)))


def _stored_key(key: str) -> str:
    """Keys longer than the column (never for an IP and a route, but they are built from client input) hashed."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
