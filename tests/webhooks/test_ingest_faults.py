"""The inbound writer when the store cannot write: callers refused at once, a bounded log, no busy loop, recovery."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import AbstractContextManager, nullcontext

import pytest

from idp_bridge import inbox
from idp_bridge.bridge import Bridge
from idp_bridge.store.group_commit import GroupCommit, Unavailable

from .conftest import inbound_count


class Outage:
    """A `turn` for GroupCommit that fails like a read-only disk while `broken` is set; counts its calls."""

    def __init__(self) -> None:
        self.broken = threading.Event()
        self.calls = 0

    def __call__(self) -> AbstractContextManager[object]:
        self.calls += 1
        if self.broken.is_set():
            raise PermissionError(13, "Permission denied", "instance/idp-bridge.sqlite3-writers.lock")
        return nullcontext()


def incoming() -> inbox.Incoming:
    return inbox.Incoming("keycloak:keycloak", str(uuid.uuid4()), '{"type": "access.LOGIN"}')


def test_the_inbound_writer_backs_off_refuses_at_once_meanwhile_and_writes_again_by_itself(
        bridge: Bridge, caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage()
    writer = GroupCommit(bridge.engine, inbox.write, name="inbox-writer", turn=outage, backoff_first=0.05,
                         backoff_max=0.4)
    writer.submit(incoming())
    outage.broken.set()
    caplog.set_level(logging.INFO, logger="idp_bridge.store.group_commit")
    refused: list[Unavailable] = []
    for _ in range(300):
        try:
            writer.submit(incoming())
        except Unavailable as exc:
            refused.append(exc)
        time.sleep(0.005)
    assert len(refused) == 300  # nobody waits for a store that cannot write, and nothing was stored
    assert all(exc.retry_after_header.isdigit() and int(exc.retry_after_header) >= 1 for exc in refused)
    assert inbound_count(bridge) == 1
    # One attempt per backoff step, each logged once with one line and no traceback; the submissions in between
    # cost no attempt (a busy loop makes thousands).
    attempts = outage.calls - 1
    failures = [r for r in caplog.records if "refusing writes" in r.getMessage()]
    assert 1 <= attempts == len(failures) == writer.failures
    assert attempts <= len(refused) // 10 and all(r.exc_info is None for r in failures)
    delays = [float(r.getMessage().rsplit("for ", 1)[1].removesuffix(" s")) for r in failures]
    assert delays == sorted(delays) and delays[-1] <= 0.4  # exponential, capped

    outage.broken.clear()
    stored = 0
    for _ in range(200):  # the backoff (at most 0.4 s) runs out, then the next submission is written
        try:
            writer.submit(incoming())
            stored += 1
            break
        except Unavailable as exc:
            time.sleep(min(exc.retry_after, 0.05))
    assert stored == 1 and inbound_count(bridge) == 2 and writer.failures == 0
    assert sum("writing again" in r.getMessage() for r in caplog.records) == 1
