"""database:// rate limits on a SQLite file: counters in a memory-mapped file beside the database, shared by every
process of the host (store.hostcounters behind ratelimit.HostStorage)."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from idp_bridge.bootstrap import build, create_app
from idp_bridge.settings import load_settings
from idp_bridge.store import hostcounters
from idp_bridge.store.db import make_engine
from idp_bridge.store.hostcounters import HostCounters
from idp_bridge.web.pages import ratelimit
from idp_bridge.web.pages.ratelimit import DatabaseStorage, HostStorage, limiter_storage, open_storage
from tests.conftest import RecordingMail

KEY = "LIMITER/pages/10.0.0.1/5/1/minute"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def host_storage(path: Path, clock: Clock, slots: int = hostcounters.SLOTS) -> HostStorage:
    storage = HostStorage(f"{ratelimit.HOST_SCHEME}://", path=str(path), slots=slots)
    storage.clock = clock  # type: ignore[method-assign]
    return storage


def test_a_client_is_limited_within_its_window_and_free_again_after_it(tmp_path: Path) -> None:
    clock = Clock()
    limiter = FixedWindowRateLimiter(host_storage(tmp_path / "db-ratelimits", clock))
    limit = parse("3/minute")

    allowed = [limiter.hit(limit, "pages", "10.0.0.1") for _ in range(4)]
    other = limiter.hit(limit, "pages", "10.0.0.2")
    clock.now += 61
    later = [limiter.hit(limit, "pages", "10.0.0.1") for _ in range(4)]

    assert allowed == [True, True, True, False]
    assert other is True
    assert later == [True, True, True, False]


def test_counters_report_their_window_and_can_be_cleared_and_reset(tmp_path: Path) -> None:
    clock = Clock()
    storage = host_storage(tmp_path / "db-ratelimits", clock)
    for n in range(20):
        storage.incr(f"client-{n}", 60)
    storage.incr("client-0", 60, amount=2)

    assert (storage.get("client-0"), storage.get_expiry("client-0")) == (3, clock.now + 60)
    assert (storage.get("never-seen"), storage.get_expiry("never-seen")) == (0, clock.now)
    storage.clear("client-0")
    assert storage.get("client-0") == 0
    assert storage.incr("client-0", 60) == 1
    clock.now += 30
    storage.incr("client-1", 60)
    assert storage.reset() == 20
    assert [storage.get(f"client-{n}") for n in range(3)] == [0, 0, 0]
    clock.now += 31
    assert storage.get("client-1") == 0 and storage.get_expiry("client-1") == clock.now


def test_keys_sharing_a_probe_window_are_never_counted_together(tmp_path: Path) -> None:
    # With 16 slots every key lands in the same probe window: only the digest tells them apart.
    storage = host_storage(tmp_path / "db-ratelimits", Clock(), slots=16)
    keys = [f"LIMITER/pages/10.0.0.{n}" for n in range(16)]

    for n, key in enumerate(keys):
        for _ in range(n + 1):
            storage.incr(key, 60)

    assert [storage.get(key) for key in keys] == list(range(1, 17))


def test_a_full_probe_window_evicts_the_window_that_ends_first_and_never_raises(tmp_path: Path) -> None:
    clock = Clock()
    storage = host_storage(tmp_path / "db-ratelimits", clock, slots=16)
    for n in range(16):
        storage.incr(f"client-{n}", 60 + n, amount=n + 1)

    assert storage.incr("newcomer", 60) == 1
    assert storage.get("client-0") == 0  # its window ended first
    assert [storage.get(f"client-{n}") for n in range(1, 16)] == list(range(2, 17))
    # A flood of new clients keeps counting each one, evicting the oldest windows as it goes.
    assert [storage.incr(f"flood-{n}", 60) for n in range(200)] == [1] * 200
    assert storage.incr("flood-199", 60) == 2


def test_a_passed_window_makes_room_before_any_live_one_is_evicted(tmp_path: Path) -> None:
    clock = Clock()
    storage = host_storage(tmp_path / "db-ratelimits", clock, slots=16)
    for n in range(16):
        storage.incr(f"client-{n}", 30 if n == 7 else 120, amount=n + 1)
    clock.now += 60

    assert storage.incr("newcomer", 60) == 1
    assert [storage.get(f"client-{n}") for n in range(16) if n != 7] == [n + 1 for n in range(16) if n != 7]
    assert storage.get("newcomer") == 1


def test_the_counter_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "db-ratelimits"
    old = os.umask(0o022)
    try:
        HostCounters(str(path)).close()
    finally:
        os.umask(old)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", [b"", b"short and not a counter file", b"\xff" * (64 + 16 * 32)])
def test_a_short_or_foreign_file_is_laid_out_afresh(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "db-ratelimits"
    path.write_bytes(content)

    storage = host_storage(path, Clock(), slots=16)

    assert storage.get(KEY) == 0
    assert [storage.incr(KEY, 60) for _ in range(3)] == [1, 2, 3]
    assert path.stat().st_size == hostcounters.HEADER_SIZE + 16 * hostcounters.SLOT.size
    assert storage.check() is True


def test_a_file_laid_out_for_another_table_size_is_laid_out_afresh(tmp_path: Path) -> None:
    path = tmp_path / "db-ratelimits"
    small = host_storage(path, Clock(), slots=16)
    small.incr(KEY, 60)
    small.table.close()

    storage = host_storage(path, Clock(), slots=64)

    assert storage.get(KEY) == 0 and storage.incr(KEY, 60) == 1


def test_a_closed_table_fails_with_the_storage_s_own_errors(tmp_path: Path) -> None:
    storage = host_storage(tmp_path / "db-ratelimits", Clock())
    storage.table.close()

    with pytest.raises(storage.base_exceptions):
        storage.incr(KEY, 60)
    assert storage.check() is False


def hit_in_child(storage: HostStorage | None, path: str, hits: int, ready: Any, start: Any, results: Any) -> None:
    """Hit KEY `hits` times after `start` is set, through the inherited storage (fork) or a new one (spawn)."""
    mine = storage if storage is not None else HostStorage(f"{ratelimit.HOST_SCHEME}://", path=path)
    limiter = FixedWindowRateLimiter(mine)
    limit = parse("150/minute")
    ready.set()
    start.wait(30)
    counts = [mine.incr(KEY, 600) for _ in range(hits)]
    allowed = sum(limiter.hit(limit, "pages", "10.0.0.9") for _ in range(hits))
    results.put((counts, allowed))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_two_processes_hitting_one_key_count_every_hit_once(tmp_path: Path, method: str) -> None:
    hits = 3000
    path = str(tmp_path / "db-ratelimits")
    storage = HostStorage(f"{ratelimit.HOST_SCHEME}://", path=path)
    ctx = multiprocessing.get_context(method)
    ready, start, results = ctx.Event(), ctx.Event(), ctx.Queue()
    # A forked child takes the parent's open storage with it; a spawned one opens the file itself.
    inherited = storage if method == "fork" else None
    child = ctx.Process(target=hit_in_child, args=(inherited, path, hits, ready, start, results))
    child.start()
    try:
        assert ready.wait(60)
        start.set()
        mine = [storage.incr(KEY, 600) for _ in range(hits)]
        limiter = FixedWindowRateLimiter(storage)
        allowed = sum(limiter.hit(parse("150/minute"), "pages", "10.0.0.9") for _ in range(hits))
        theirs, their_allowed = results.get(timeout=60)
    finally:
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join(10)

    assert child.exitcode == 0
    assert sorted(mine + theirs) == list(range(1, 2 * hits + 1))
    assert allowed + their_allowed == 150


def test_database_storage_on_a_sqlite_file_is_the_host_counter_file(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        storage = open_storage("database://", engine)
        if database_url.startswith("sqlite"):
            assert isinstance(storage, HostStorage)
            assert storage.table.path == database_url.removeprefix("sqlite:///") + hostcounters.SUFFIX
        else:
            assert isinstance(storage, DatabaseStorage)
    finally:
        engine.dispose()


def test_an_in_memory_sqlite_database_keeps_its_counters_in_the_database() -> None:
    engine = make_engine("sqlite://")
    try:
        assert limiter_storage("database://", engine) == ("database://", {"engine": engine})
    finally:
        engine.dispose()


def test_a_counter_file_that_cannot_be_opened_leaves_the_counters_in_the_database(
        settings_overrides: dict[str, Any], mail: RecordingMail, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the counter file is SQLite's")
    blocker = Path(database_url.removeprefix("sqlite:///") + hostcounters.SUFFIX)
    blocker.mkdir()  # a directory where the file would be: it cannot be opened as one
    bridge = build(load_settings(overrides={**settings_overrides, "invite_page_rate_limit": "3/minute"},
                                 environ={}), mail=mail)
    try:
        app = create_app(bridge=bridge)
        statuses = [app.test_client().get("/invite/unknown-token").status_code for _ in range(4)]

        assert statuses == [404] * 3 + [429]
        assert isinstance(app.extensions["idp_bridge_limiter"].storage, DatabaseStorage)
        assert any("stay in the database" in r.getMessage() and str(blocker) in r.getMessage()
                   for r in caplog.records)
    finally:
        bridge.close()


def test_the_api_auth_failure_limit_counts_in_the_same_counter_file(
        app: Any, client: Any, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the counter file is SQLite's")
    storage = app.extensions["idp_bridge_limiter"].storage
    assert isinstance(storage, HostStorage)
    before = storage.reset()
    assert before is not None

    bad_key = {"Authorization": "Bearer nope"}
    statuses = [client.get("/api/v1/orgs/acme/invites", headers=bad_key).status_code for _ in range(3)]

    assert statuses == [401] * 3
    reader = storage_from_string(f"{ratelimit.HOST_SCHEME}://", path=storage.table.path)
    assert isinstance(reader, HostStorage)
    assert reader.table.reset(reader.clock()) == 1  # one window: this client's failures, seen from a new opening


def test_pages_stay_up_and_limited_per_process_when_the_counter_file_fails(
        settings_overrides: dict[str, Any], mail: RecordingMail, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the counter file is SQLite's")
    bridge = build(load_settings(overrides={**settings_overrides, "invite_page_rate_limit": "5/minute"},
                                 environ={}), mail=mail)
    try:
        app = create_app(bridge=bridge)
        storage = app.extensions["idp_bridge_limiter"].storage
        assert isinstance(storage, HostStorage)
        storage.table.close()
        client = app.test_client()

        statuses = [client.get("/invite/unknown-token").status_code for _ in range(8)]

        assert statuses == [404] * 5 + [429] * 3
        warnings = [r for r in caplog.records if "falling back to in-memory" in r.getMessage()]
        assert len(warnings) == 1
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        bridge.close()
