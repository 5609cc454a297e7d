"""The driver-level bulk insert stores exactly what the ORM would, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp_bridge import audit
from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Job
from idp_bridge.store.compiled import insert_rows
from idp_bridge.store.db import transaction
from idp_bridge.store.sql import table_of
from tests.helpers import make_org


def test_rows_round_trip_with_shared_and_distinct_values(bridge: Bridge) -> None:
    org_id = make_org(bridge)
    now = datetime.now(UTC).replace(microsecond=123456)
    later = now + timedelta(hours=1)
    rows = [
        {"id": f"job-{i}", "kind": "send_invite_email", "payload": {"n": i, "nested": {"ok": True}, "é": "ü"},
         "org_id": org_id, "dedupe_key": None if i % 2 else f"k{i}", "status": "queued", "attempts": i % 2,
         "max_attempts": 5, "run_after": now if i < 2 else later, "created_at": now}
        for i in range(4)
    ]
    with transaction(bridge.sessions) as session:
        insert_rows(session.connection(), table_of(Job), rows)
    with transaction(bridge.sessions) as session:
        stored = {j.id: j for j in session.scalars(select(Job))}
    assert sorted(stored) == ["job-0", "job-1", "job-2", "job-3"]
    for i in range(4):
        job = stored[f"job-{i}"]
        assert job.payload == {"n": i, "nested": {"ok": True}, "é": "ü"}
        assert job.dedupe_key == (None if i % 2 else f"k{i}")
        assert job.attempts == i % 2 and isinstance(job.attempts, int)
        assert job.run_after == (now if i < 2 else later)
        assert job.run_after.tzinfo is not None
        assert job.created_at == now


def test_left_out_columns_get_their_python_defaults_per_row(bridge: Bridge) -> None:
    rows = [{"id": f"a-{i}", "actor": "cli", "action": "test.action", "at": datetime.now(UTC)} for i in range(3)]
    with transaction(bridge.sessions) as session:
        insert_rows(session.connection(), table_of(AuditEvent), rows)
    with transaction(bridge.sessions) as session:
        stored = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "test.action")))
    assert len(stored) == 3
    assert all(e.details == {} for e in stored)
    stored[0].details["x"] = 1  # each row got its own dict, not one shared default
    assert stored[1].details == {}


def test_a_single_row_is_stored_as_a_batch_of_it_would_be(bridge: Bridge) -> None:
    org_id = make_org(bridge)
    now = datetime.now(UTC).replace(microsecond=654321)
    with transaction(bridge.sessions) as session:
        insert_rows(session.connection(), table_of(Job), [{"id": "one", "kind": "k", "payload": {"é": [1, None]},
                                                           "org_id": org_id, "run_after": now, "created_at": now}],
                    {"status": "queued"})
        insert_rows(session.connection(), table_of(AuditEvent),
                    [{"id": "a-one", "actor": "cli", "action": "x", "at": now}])
    with transaction(bridge.sessions) as session:
        job = session.get(Job, "one")
        entry = session.get(AuditEvent, "a-one")
        assert job is not None and entry is not None
        assert (job.payload, job.status, job.attempts, job.max_attempts, job.dedupe_key) == ({"é": [1, None]}, "queued",
                                                                                          0, 8, None)
        assert job.run_after == now and job.run_after.tzinfo is not None
        assert entry.details == {} and entry.at == now


def test_unknown_columns_are_refused(bridge: Bridge) -> None:
    with pytest.raises(ValueError, match="no column"), transaction(bridge.sessions) as session:
        insert_rows(session.connection(), table_of(Job), [{"id": "j", "colour": "blue"}])


def test_a_failing_chunk_leaves_nothing_behind(bridge: Bridge) -> None:
    org_id = make_org(bridge)
    now = datetime.now(UTC)
    row = {"id": "dup", "kind": "k", "payload": {}, "org_id": org_id, "dedupe_key": None, "status": "queued",
           "attempts": 0, "max_attempts": 5, "run_after": now, "created_at": now}
    with pytest.raises(IntegrityError), transaction(bridge.sessions) as session:
        audit.record(session, audit.CLI, "before.insert", org_id=org_id)
        insert_rows(session.connection(), table_of(Job), [row, dict(row)])
    with transaction(bridge.sessions) as session:
        assert session.scalars(select(Job)).all() == []
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "before.insert")).all() == []
