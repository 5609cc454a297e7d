"""Row ids: time-ordered UUIDs, strictly increasing in a process and never repeated, across threads too."""

from __future__ import annotations

import threading
import uuid

import pytest

from idp_bridge.store import ids
from idp_bridge.store.ids import event_id_of, new_event_id, new_id, new_ids


def test_ids_are_version_7_uuids_led_by_the_current_time() -> None:
    import time

    before = time.time_ns() // 1_000_000
    made = new_ids(20)
    after = time.time_ns() // 1_000_000
    for value in made:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after + 1


def test_ids_strictly_increase_within_a_batch_and_from_one_call_to_the_next() -> None:
    made = [new_id() for _ in range(2000)] + new_ids(5000) + [new_id() for _ in range(10)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_keep_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    first = new_ids(3)
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_000_000_000)  # 1970: far in the past
    later = new_ids(3)
    assert first + later == sorted(first + later) and len(set(first + later)) == 6


def test_ids_made_by_many_threads_at_once_are_unique_and_each_threads_are_in_order() -> None:
    per_thread: dict[int, list[str]] = {}
    start = threading.Barrier(8)

    def make(n: int) -> None:
        start.wait()
        mine = []
        for i in range(500):
            mine += new_ids(3) if i % 2 else [new_id()]
        per_thread[n] = mine

    threads = [threading.Thread(target=make, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for made in per_thread.values() for value in made]
    assert len(everything) == 8 * (250 + 750)
    assert len(set(everything)) == len(everything)
    assert all(made == sorted(made) for made in per_thread.values())


def test_event_ids_are_prefixed_ids_in_the_same_order() -> None:
    made = [new_event_id() for _ in range(100)]
    assert all(e.startswith("msg_") and len(e) == 36 for e in made)
    assert made == sorted(made)
    row_id = new_id()
    assert event_id_of(row_id) == "msg_" + uuid.UUID(row_id).hex
