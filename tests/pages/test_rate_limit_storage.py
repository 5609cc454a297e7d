"""The in-process counters behind the invitee pages' rate limits: fixed windows that end and are forgotten."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from idp_bridge.pages import ratelimit
from idp_bridge.pages.ratelimit import CounterStorage


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


def test_the_invitee_pages_use_these_counters_and_start_no_timer_threads(app: Flask, client: Any) -> None:
    limiter = app.extensions["idp_bridge_limiter"]

    statuses = [client.get("/invite/unknown-token").status_code for _ in range(5)]

    assert statuses == [404] * 5
    assert isinstance(limiter.storage, CounterStorage)
    assert not [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
