"""Row ids: one generator of time-ordered UUIDs (the version 7 layout), strictly increasing within a process.

Rows written together get neighbouring keys, so a batch adds to the same primary-key index pages instead of
dirtying one random page per row, which is most of what a commit writes. Within one millisecond the 74 bits
after the timestamp grow by a random step (never reused, hard to guess from a neighbour); across threads a lock
keeps every id of the process distinct and in order.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

_COUNTER_BITS = 74
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1
# A fresh millisecond starts the counter in the lower half, so its random steps have room to grow.
_START_BITS = _COUNTER_BITS - 1
_STEP_BYTES = 4
_LOW_MASK = (1 << 62) - 1
_VARIANT = 0x2 << 62  # RFC 9562 variant bits
_LAST_MASK = (1 << 48) - 1
_lock = threading.Lock()
_last_ms = 0
_last_counter = 0


def new_ids(count: int) -> list[str]:
    """`count` ids, each greater than every id this process made before (one lock and one random read)."""
    global _last_ms, _last_counter
    noise = os.urandom(count * _STEP_BYTES + 10)
    out = []
    with _lock:
        now = time.time_ns() // 1_000_000
        if now > _last_ms:
            ms, counter = now, int.from_bytes(noise[-10:], "big") >> (80 - _START_BITS)
            first = 0
        else:
            ms, counter = _last_ms, _last_counter  # the same millisecond, or the clock stepped back: count on
            first = 1
        h = f"{ms:012x}"
        prefix = f"{h[:8]}-{h[8:]}-7"
        for i in range(0, count * _STEP_BYTES, _STEP_BYTES):
            counter += 1 + int.from_bytes(noise[i:i + _STEP_BYTES], "big") if i or first else 0
            if counter > _COUNTER_MAX:
                ms, counter = ms + 1, 1 + int.from_bytes(noise[i:i + _STEP_BYTES], "big")
                h = f"{ms:012x}"
                prefix = f"{h[:8]}-{h[8:]}-7"
            low = counter & _LOW_MASK | _VARIANT
            out.append(f"{prefix}{counter >> 62:03x}-{low >> 48:04x}-{low & _LAST_MASK:012x}")
        _last_ms, _last_counter = ms, counter
    return out


def _after_fork() -> None:
    # A child starts from a random point of its own instead of counting on from its parent's last id, and with a
    # lock no thread of the parent can be holding.
    global _lock, _last_ms, _last_counter
    _lock, _last_ms, _last_counter = threading.Lock(), 0, 0


os.register_at_fork(after_in_child=_after_fork)


def new_id() -> str:
    """One id (see new_ids)."""
    return new_ids(1)[0]


def id_stream(count: int) -> Iterator[str]:
    """new_ids() as an iterator, for code that takes its ids one at a time from a prepared batch."""
    return iter(new_ids(count))


def event_id_of(row_id: str) -> str:
    """A Standard Webhooks message id made of an id from new_ids(): opaque, with a prefix that keeps it
    recognisable."""
    return "msg_" + row_id.replace("-", "")


def new_event_id() -> str:
    """A new Standard Webhooks message id (see event_id_of)."""
    return event_id_of(new_id())
