"""Paces shared by every worker of a deployment: the configured rate is the deployment's, not each process's."""

from __future__ import annotations

import email
import email.policy
import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.pool import NullPool

from idp_bridge import audit
from idp_bridge.bootstrap import build
from idp_bridge.inputs import InviteInput
from idp_bridge.models import Job
from idp_bridge.pacing import DatabasePaces, LocalPaces, Pace, PaceStore, RedisPaces, open_paces
from idp_bridge.services import invites, orgs
from idp_bridge.services.invites import SEND_EMAIL_JOB
from idp_bridge.settings import load_settings
from idp_bridge.store.db import make_engine, transaction
from tests.helpers import make_org
from tests.test_cli import redis_url as redis_url  # a fixture: a real Redis on a loopback port
from tests.test_mail_redelivery import free_port, worker_env


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """Counts the round trips to a pace store."""

    def __init__(self, store: PaceStore) -> None:
        self.store = store
        self.calls = 0

    def advance(self, key: str, now: float, span: float) -> float:
        self.calls += 1
        return self.store.advance(key, now, span)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def slot_times(paces: list[Pace], clock: Clock, count: int) -> list[float]:
    """When each of `count` takes, alternating between the processes' paces, may go (all asked at once)."""
    return sorted(clock.now + paces[i % len(paces)].delay() for i in range(count))


@pytest.fixture(params=["database", "redis"])
def shared_store(request: pytest.FixtureRequest, engine: Engine) -> PaceStore:
    if request.param == "database":
        return DatabasePaces(engine)
    return open_paces(request.getfixturevalue("redis_url"), engine)


def test_two_processes_sharing_a_store_take_slots_at_the_rate_of_one(shared_store: PaceStore) -> None:
    clock = Clock()
    # Two processes: each its own Pace, one store between them.
    paces = [Pace(shared_store, "job:mail", 5.0, clock=clock) for _ in range(2)]
    times = slot_times(paces, clock, 30)
    # A burst of 5 (the bucket's capacity), then one slot every 0.2 s, whichever process takes it.
    assert times[:5] == [clock.now] * 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(times[4:])]
    assert all(gap == pytest.approx(0.2) for gap in gaps)
    assert times[-1] - times[0] == pytest.approx(25 * 0.2)


def test_processes_with_their_own_memory_paces_each_take_the_full_rate() -> None:
    clock = Clock()
    paces = [Pace(LocalPaces(), "job:mail", 5.0, clock=clock) for _ in range(2)]
    times = slot_times(paces, clock, 30)
    # What `memory://` means: every process at the configured rate, so twice as fast as the shared pace.
    assert times[-1] - times[0] == pytest.approx(10 * 0.2)


def test_a_fast_pace_reserves_its_slots_in_batches(engine: Engine) -> None:
    clock = Clock()
    store = CountingStore(DatabasePaces(engine))
    pace = Pace(store, "provider:kc", 1000.0, clock=clock)
    waits = [pace.delay() for _ in range(2000)]
    # A quarter of a second's slots per round trip: 250 at 1000/s.
    assert store.calls == 2000 // 250
    # 1000 at once (the capacity), then one every millisecond.
    assert waits[999] == pytest.approx(0, abs=1e-9) and waits[1999] == pytest.approx(1.0)


def test_slots_reserved_long_ago_are_given_up_rather_than_used_late(engine: Engine) -> None:
    clock = Clock()
    store = CountingStore(DatabasePaces(engine))
    pace = Pace(store, "provider:kc", 8.0, batch_seconds=1.0, clock=clock)
    assert pace.delay() == 0 and store.calls == 1  # reserved 8, used 1
    clock.now += 10
    assert pace.delay() == 0 and store.calls == 2  # the 7 left were stale: a new batch


def test_a_hold_pushes_every_processs_next_slot(shared_store: PaceStore) -> None:
    clock = Clock()
    first, second = Pace(shared_store, "provider:kc", 5.0, clock=clock), Pace(shared_store, "provider:kc", 5.0,
                                                                              clock=clock)
    assert second.delay() == 0
    first.hold(30)  # a Retry-After of 30 s met in one process
    assert second.delay() == pytest.approx(30)  # the other's next slot waits it out
    clock.now += 30
    assert first.delay() == pytest.approx(0.2)  # and then the pace goes on


def test_the_database_pace_is_one_row_per_key_moved_on_atomically_by_threads(engine: Engine) -> None:
    store = DatabasePaces(engine)
    values: list[float] = []
    lock = threading.Lock()

    def advance() -> None:
        for _ in range(25):
            value = store.advance("job:mail", 100.0, 1.0)
            with lock:
                values.append(value)

    threads = [threading.Thread(target=advance) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Every reservation got its own span: 100 spans of 1 s after 100.0, none handed out twice.
    assert sorted(values) == [101.0 + i for i in range(100)]


def test_open_paces_follows_the_rate_limit_storage_setting(engine: Engine, redis_url: str) -> None:
    assert isinstance(open_paces("database://", engine), DatabasePaces)
    assert isinstance(open_paces("memory://", engine), LocalPaces)
    assert isinstance(open_paces(redis_url, engine), RedisPaces)


class TimedSink:
    """aiosmtpd handler keeping each message with the time it arrived."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, email.message.EmailMessage]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(bytes(envelope.content), policy=email.policy.default)
        with self.lock:
            self.arrivals.append((time.monotonic(), message))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def timed_sink() -> Iterator[tuple[TimedSink, int]]:
    handler = TimedSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


MAILS, RATE = 100, 5.0


@pytest.mark.slow
def test_two_workers_with_a_mail_rate_of_5_per_second_deliver_100_mails_in_no_less_than_19_seconds(
        settings_overrides: dict[str, Any], timed_sink: tuple[TimedSink, int], tmp_path: Path) -> None:
    sink, port = timed_sink
    settings_overrides.update(mail_transport="smtp", smtp_host="127.0.0.1", smtp_port=port,
                              mail_from="Acme Access <access@acme.test>", email_rate_per_second=RATE)
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    workers: list[subprocess.Popen[str]] = []
    try:
        make_org(bridge, member_limit=MAILS + 10)
        with transaction(bridge.sessions) as session:
            org = orgs.get(session, "acme")
            for i in range(MAILS):
                invites.create(session, bridge, audit.CLI, org, InviteInput(identifier=f"user{i}@example.com"))
        env = {**worker_env(settings_overrides), "IDP_BRIDGE_EMAIL_RATE_PER_SECOND": str(RATE)}
        for n in range(2):
            log = (tmp_path / f"worker{n}.log").open("w")
            workers.append(subprocess.Popen([sys.executable, "-m", "idp_bridge.cli", "worker"], env=env,
                                            stdout=log, stderr=subprocess.STDOUT, text=True))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(sink.arrivals) < MAILS:
            assert all(w.poll() is None for w in workers), "a worker exited"
            time.sleep(0.2)
        time.sleep(1.0)  # anything sent twice would arrive now
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        engine = create_engine(settings_overrides["database_url"], poolclass=NullPool)
        with engine.connect() as conn:
            by_worker = dict(conn.execute(select(Job.locked_by, func.count()).where(Job.kind == SEND_EMAIL_JOB,
                                                                                     Job.status == "done")
                                          .group_by(Job.locked_by)).all())
        engine.dispose()
        bridge.close()

    recipients = sorted(str(message["To"]) for _, message in sink.arrivals)
    assert recipients == sorted(f"user{i}@example.com" for i in range(MAILS))  # all delivered, each once
    assert len({str(message["Message-ID"]) for _, message in sink.arrivals}) == MAILS
    # Both workers sent their share (pids differ in the worker ids)...
    pids = {str(holder).split(":")[1] for holder in by_worker}
    assert len(pids) == 2 and sum(by_worker.values()) == MAILS, by_worker
    assert all(sum(n for h, n in by_worker.items() if str(h).split(":")[1] == pid) >= 10 for pid in pids), by_worker
    # ...yet together at the one rate: a burst of 5, then 95 slots 0.2 s apart: 19 s (under 10 s if each went
    # at 5/s). The margin is for the first mail, which may arrive late behind its process's cold start.
    times = sorted(at for at, _ in sink.arrivals)
    assert times[-1] - times[0] >= (MAILS - RATE) / RATE - 1.0, times[-1] - times[0]
