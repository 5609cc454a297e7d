"""In-process rate-limit counters for the invitee pages (Flask-Limiter's fixed windows)."""

from __future__ import annotations

import threading
import time

from limits.storage import Storage

SCHEME = "idp-bridge-memory"
SWEEP_EVERY_SECONDS = 60.0


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
