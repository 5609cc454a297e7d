"""The counters behind the invitee pages' rate limits: fixed windows that end and are forgotten, in this process
(memory://) or shared by every process of the deployment (database://, the default: the database itself on
PostgreSQL, the counter file beside a SQLite database, tests/pages/test_host_rate_limits.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Engine, func, select

from idp_bridge.bootstrap import build, create_app
from idp_bridge.errors import ConfigError
from idp_bridge.models import RateLimitCounter
from idp_bridge.settings import load_settings
from idp_bridge.store.db import make_engine
from idp_bridge.web.pages import ratelimit
from idp_bridge.web.pages.ratelimit import CounterStorage, DatabaseStorage, HostStorage, open_storage
from tests.conftest import RecordingMail


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def storage_with(clock: Clock) -> CounterStorage:
    storage = storage_from_string(f"{ratelimit.SCHEME}://")
    assert isinstance(storage, CounterStorage)
    storage.clock = clock  # type: ignore[method-assign]
    storage.reset()
    return storage


def test_a_client_is_limited_within_its_window_and_free_again_after_it() -> None:
    clock = Clock()
    limiter = FixedWindowRateLimiter(storage_with(clock))
    limit = parse("3/minute")

    allowed = [limiter.hit(limit, "pages", "10.0.0.1") for _ in range(4)]
    other = limiter.hit(limit, "pages", "10.0.0.2")
    clock.now += 61
    later = limiter.hit(limit, "pages", "10.0.0.1")

    assert allowed == [True, True, True, False]
    assert other is True
    assert later is True


def test_counters_of_clients_that_never_come_back_are_swept_away() -> None:
    clock = Clock()
    storage = storage_with(clock)
    for n in range(100):
        storage.incr(f"client-{n}", 60)
    clock.now += ratelimit.SWEEP_EVERY_SECONDS + 61

    storage.incr("newcomer", 60)

    assert set(storage._counts) == {"newcomer"}
    assert storage.get_expiry("newcomer") == clock.now + 60


def test_memory_storage_uses_these_counters_and_starts_no_timer_threads(
        settings_overrides: dict[str, Any], mail: RecordingMail) -> None:
    bridge = build(load_settings(overrides={**settings_overrides, "rate_limit_storage_url": "memory://"},
                                 environ={}), mail=mail)
    try:
        app = create_app(bridge=bridge)
        # Flask-Limiter's idle fallback storage starts one 10 ms timer when the app is built (and an earlier
        # test's may still run): only timers started while counting requests would be this storage's.
        before = {t for t in threading.enumerate() if isinstance(t, threading.Timer)}
        client = app.test_client()

        statuses = [client.get("/invite/unknown-token").status_code for _ in range(5)]

        assert statuses == [404] * 5
        assert isinstance(app.extensions["idp_bridge_limiter"].storage, CounterStorage)
        assert not [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t not in before]
    finally:
        bridge.close()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, **({} if database_url.startswith("sqlite") else {"pool_size": 20}))
    yield engine
    engine.dispose()


def database_storage(engine: Engine, clock: Clock) -> DatabaseStorage:
    storage = DatabaseStorage("database://", engine=engine)
    storage.clock = clock  # type: ignore[method-assign]
    return storage


def test_the_pages_count_for_the_whole_deployment_by_default(
        app: Any, client: Any, bridge: Any, database_url: str) -> None:
    statuses = [client.get("/invite/unknown-token").status_code for _ in range(3)]

    assert statuses == [404] * 3
    storage = app.extensions["idp_bridge_limiter"].storage
    if database_url.startswith("sqlite"):
        # A SQLite database is one host's: its processes share the counter file beside it, not a table.
        assert isinstance(storage, HostStorage)
        assert storage.table.path == database_url.removeprefix("sqlite:///") + "-ratelimits"
        with bridge.sessions() as session:
            assert session.scalar(select(func.count()).select_from(RateLimitCounter)) == 0
        return
    assert isinstance(storage, DatabaseStorage)
    with bridge.sessions() as session:
        assert session.scalar(select(func.max(RateLimitCounter.count))) == 3


def test_database_windows_limit_a_client_and_free_it_again_after_the_window(engine: Engine) -> None:
    clock = Clock()
    limiter = FixedWindowRateLimiter(database_storage(engine, clock))
    limit = parse("3/minute")

    allowed = [limiter.hit(limit, "pages", "10.0.0.1") for _ in range(4)]
    other = limiter.hit(limit, "pages", "10.0.0.2")
    clock.now += 61
    later = [limiter.hit(limit, "pages", "10.0.0.1") for _ in range(4)]

    assert allowed == [True, True, True, False]
    assert other is True
    assert later == [True, True, True, False]


def test_database_counters_report_their_window_and_passed_windows_are_swept(engine: Engine) -> None:
    clock = Clock()
    storage = database_storage(engine, clock)
    for n in range(20):
        storage.incr(f"client-{n}", 60)
    storage.incr("client-0", 60, amount=2)

    assert (storage.get("client-0"), storage.get_expiry("client-0")) == (3, clock.now + 60)
    assert storage.get("never-seen") == 0
    clock.now += ratelimit.SWEEP_EVERY_SECONDS + 61
    assert storage.get("client-0") == 0
    assert storage.incr("newcomer", 60) == 1
    with engine.connect() as conn:
        assert list(conn.scalars(select(RateLimitCounter.key))) == ["newcomer"]
    storage.clear("newcomer")
    assert storage.get("newcomer") == 0


def test_keys_longer_than_the_column_are_counted_under_their_hash(engine: Engine) -> None:
    storage = database_storage(engine, Clock())
    key = "LIMITER/pages/" + "x" * 600

    assert [storage.incr(key, 60) for _ in range(3)] == [1, 2, 3]
    assert storage.get(key) == 3


def parallel_hits(engine: Engine, threads: int, hits: int) -> list[int]:
    """Every count returned when `threads` connections each hit one key `hits` times, all at once."""
    storage = database_storage(engine, Clock())
    start = threading.Barrier(threads, timeout=30)
    counts: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        mine = [storage.incr("LIMITER/pages/10.0.0.1", 60) for _ in range(hits)]
        with lock:
            counts.extend(mine)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not any(worker.is_alive() for worker in workers)
    return sorted(counts)


@pytest.mark.postgres
def test_parallel_hits_on_postgresql_are_each_counted_exactly_once(engine: Engine) -> None:
    assert parallel_hits(engine, threads=16, hits=25) == list(range(1, 16 * 25 + 1))


def test_parallel_hits_on_the_database_are_each_counted_exactly_once(engine: Engine) -> None:
    assert parallel_hits(engine, threads=8, hits=20) == list(range(1, 8 * 20 + 1))


@pytest.mark.parametrize(("url", "message"), [
    ("bogus://somewhere", "unknown storage scheme"),
    ("redis://127.0.0.1:1", "does not answer"),
])
def test_an_unusable_storage_url_is_a_configuration_error_naming_the_setting(
        engine: Engine, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        open_storage(url, engine)

    assert raised.value.setting == "rate_limit_storage_url"


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:1/0", "bogus://user:hunter2@limits.example"])
def test_a_storage_password_never_shows_in_the_error(engine: Engine, url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        open_storage(url, engine)

    assert "hunter2" not in str(raised.value) and "***" in str(raised.value)


def refusing_writes(database_url: str) -> str:
    """The same database, refusing every rate-limit write: a read-only session on PostgreSQL; on SQLite (which
    the app cannot open read-only, its WAL needs writing) triggers that abort any write to the counters, and a
    directory where the counter file beside it would be, so that the counters stay in the database."""
    if not database_url.startswith("sqlite"):
        return f"{database_url}?options=-c%20default_transaction_read_only%3Don"
    os.mkdir(database_url.removeprefix("sqlite:///") + "-ratelimits")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for event in ("INSERT", "UPDATE"):
            conn.exec_driver_sql(f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON rate_limits "
                                 "BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END")
    engine.dispose()
    return database_url


def test_pages_stay_up_and_limited_per_process_while_the_database_refuses_writes(
        settings_overrides: dict[str, Any], mail: RecordingMail, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    overrides = {**settings_overrides, "database_url": refusing_writes(database_url),
                 "invite_page_rate_limit": "5/minute"}
    bridge = build(load_settings(overrides=overrides, environ={}), mail=mail)
    try:
        client = create_app(bridge=bridge).test_client()

        statuses = [client.get("/invite/unknown-token").status_code for _ in range(8)]

        assert statuses == [404] * 5 + [429] * 3
        warnings = [r for r in caplog.records if "falling back to in-memory" in r.getMessage()]
        assert len(warnings) == 1
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        bridge.close()
