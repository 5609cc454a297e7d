"""Paces shared by every worker of a deployment: the configured rate is the deployment's, not each process's.

A pace is a schedule of slots `1/rate` apart, kept as one number per key: the time the next free slot
starts (a token bucket in the form of the generic cell rate algorithm). Reserving `n` slots moves it on by
`n/rate` in one atomic step in the store every process shares: the deployment's database (one upserted row
per key, `database://`), Redis (one key, a Lua script, `redis://…`), or this process only (`memory://`); the
store is the one `rate_limit_storage_url` names for the invitee pages' limits. A process reserves a batch of
slots at a time (about a quarter of a second's worth) so that a fast pace costs a few store round trips per
second, not one per job.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import Engine, Float, String, bindparam, case

from idp_bridge.errors import ConfigError
from idp_bridge.models import PaceState
from idp_bridge.store.compiled import run_now
from idp_bridge.store.sql import flavor, table_of

SETTING = "rate_limit_storage_url"
# How far ahead a process reserves slots of a pace in one round trip to the store.
BATCH_SECONDS = 0.25
REDIS_PREFIX = "idp-bridge:pace:"


class PaceStore(Protocol):
    """Where the paces of a deployment live."""

    def advance(self, key: str, now: float, span: float) -> float:
        """Atomically set the key's next free slot to max(stored, now) + span; returns the new value."""
        ...


class LocalPaces:
    """Paces of this process only (`memory://`): N processes run at N times the rate."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def advance(self, key: str, now: float, span: float) -> float:
        with self._lock:
            value = self._next[key] = max(self._next.get(key, 0.0), now) + span
            return value


_paces = table_of(PaceState)


def _advance_statement(engine: Engine) -> Any:
    now, span = bindparam("b_now", type_=Float()), bindparam("b_span", type_=Float())
    return flavor(engine).insert(_paces).values(key=bindparam("b_key", type_=String()), next_at=now + span) \
        .on_conflict_do_update(
            index_elements=[_paces.c.key],
            set_={"next_at": case((_paces.c.next_at > now, _paces.c.next_at), else_=now) + span},
        ).returning(_paces.c.next_at)


class DatabasePaces:
    """Paces in the deployment's database: one row per key, moved on by one upsert (row-locked on PostgreSQL,
    at the write gate on SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        statement = _advance_statement(engine)
        self._build: Callable[[], Any] = lambda: statement

    def advance(self, key: str, now: float, span: float) -> float:
        row = run_now(self.engine, [("pace.advance", self._build, {"b_key": key, "b_now": now, "b_span": span})])
        assert row is not None
        return float(row[0])


_ADVANCE_LUA = """
local now = tonumber(ARGV[1])
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
if value < now then value = now end
value = value + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%.6f', value), 'PX', math.ceil((value - now) * 1000) + 3600000)
return string.format('%.6f', value)
"""


class RedisPaces:
    """Paces in Redis: one key each, moved on by a Lua script (atomic on the server)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._script = client.register_script(_ADVANCE_LUA)

    def advance(self, key: str, now: float, span: float) -> float:
        return float(self._script(keys=[REDIS_PREFIX + key], args=[repr(now), repr(span)]))


def open_paces(url: str, engine: Engine) -> PaceStore:
    """The pace store of the deployment: the one `rate_limit_storage_url` names."""
    scheme = urlsplit(url).scheme
    if scheme == "database":
        return DatabasePaces(engine)
    if scheme == "memory":
        return LocalPaces()
    if scheme.startswith(("redis", "rediss")):
        from limits.errors import ConfigurationError
        from limits.storage import storage_from_string

        try:
            storage = storage_from_string(url)
        except ConfigurationError as exc:
            raise ConfigError(SETTING, f"paces cannot use it: {exc} (pip install 'idp-bridge[redis]')") from None
        client = getattr(storage, "storage", None)
        if client is None or not hasattr(client, "register_script"):
            raise ConfigError(SETTING, f"paces cannot use a {scheme}:// storage")
        return RedisPaces(client)
    raise ConfigError(SETTING, f"paces cannot use a {scheme}:// storage; use database://, memory:// or redis://")


class Pace:
    """One key's pace as this process takes it: slots reserved in batches from the shared store.

    `burst` slots may go at once after a quiet spell (the bucket's capacity, at least one); after that one
    slot every `1/rate` seconds, whichever process takes it.
    """

    def __init__(self, store: PaceStore, key: str, rate: float, *, burst: float | None = None,
                 batch_seconds: float = BATCH_SECONDS, clock: Callable[[], float] = time.time) -> None:
        if rate <= 0:
            raise ValueError("a pace needs a rate above 0")
        self.store = store
        self.key = key
        self.interval = 1.0 / rate
        capacity = burst if burst is not None else max(1.0, rate)
        self.tolerance = (max(1.0, capacity) - 1.0) * self.interval
        self.batch = max(1, math.floor(rate * batch_seconds))
        self.clock = clock
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Take the next slot; returns how long to wait before using it."""
        with self._lock:
            now = self.clock()
            # A slot left unused too long is given up: used late, it would add to the slots others use then.
            while self._slots and self._slots[0] < now - max(self.interval, self.tolerance):
                self._slots.popleft()
            if not self._slots:
                span = self.batch * self.interval
                begin = self.store.advance(self.key, now, span) - span
                self._slots.extend(max(now, begin + i * self.interval - self.tolerance) for i in range(self.batch))
            return max(0.0, self._slots.popleft() - now)

    def take(self) -> None:
        """Wait for the next slot."""
        wait = self.delay()
        if wait > 0:
            time.sleep(wait)

    def hold(self, seconds: float) -> None:
        """Push every process's next slot at least `seconds` away (a Retry-After), dropping reserved ones."""
        with self._lock:
            self._slots.clear()
            self.store.advance(self.key, self.clock() + seconds + self.tolerance, 0.0)
