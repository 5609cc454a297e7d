"""Retention: the worker deletes what is older than its window, in bounded batches, and nothing newer or needed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update

from idp_bridge import audit, retention
from idp_bridge.bootstrap import make_worker
from idp_bridge.bridge import Bridge
from idp_bridge.inputs import InviteInput
from idp_bridge.models import (
    AuditEvent,
    Event,
    InboundEvent,
    Invite,
    InviteLink,
    Job,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from idp_bridge.services import invites, orgs
from idp_bridge.store.db import transaction
from tests.helpers import make_org

HOUR = timedelta(hours=1)
# The clock retention runs at: moved more than a year ahead, so every default window has passed for rows written
# around the real now.
MOVED = utcnow() + timedelta(days=400)


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    """Small batches, so a few dozen rows make a backlog."""
    settings_overrides.update(retention_batch_size=10)
    return settings_overrides


def cutoff(bridge: Bridge, setting: str) -> datetime:
    """Where the window of `setting` begins at the moved clock."""
    return MOVED - timedelta(days=getattr(bridge.settings, setting))


def add(bridge: Bridge, *rows: Any) -> list[str]:
    with transaction(bridge.sessions) as session:
        session.add_all(rows)
        session.flush()
        return [str(getattr(row, "id", None) or getattr(row, "token_hash", "")) for row in rows]


def ids(bridge: Bridge, model: Any) -> set[str]:
    with bridge.sessions() as session:
        return set(session.scalars(select(model.id)))


def audit_event(at: datetime) -> AuditEvent:
    return AuditEvent(actor="cli", action="test.done", at=at)


def job(status: str, finished_at: datetime | None, created: datetime) -> Job:
    return Job(kind="send_invite_email", status=status, payload={}, run_after=created, created_at=created,
               finished_at=finished_at, locked_until=created if status == "running" else None)


def test_each_kind_loses_its_rows_older_than_its_window_and_keeps_newer_and_unfinished_ones(bridge: Bridge) -> None:
    org_id = make_org(bridge)

    audit_at = cutoff(bridge, "audit_retention_days")
    old_audit, new_audit = add(bridge, audit_event(audit_at - HOUR), audit_event(audit_at + HOUR))

    jobs_at = cutoff(bridge, "job_retention_days")
    long_ago = jobs_at - timedelta(days=30)
    old_done, old_failed, new_done, queued, running = add(
        bridge, job("done", jobs_at - HOUR, long_ago), job("failed", jobs_at - HOUR, long_ago),
        job("done", jobs_at + HOUR, long_ago), job("queued", None, long_ago), job("running", None, long_ago))

    log_at = cutoff(bridge, "delivery_log_retention_days")
    [endpoint] = add(bridge, WebhookEndpoint(org_id=org_id, url="https://hooks.test/", secret="sealed"))
    events = add(bridge, *(Event(id=f"evt_{i}", org_id=org_id, type="member.activated", payload={}) for i in range(4)))
    old_ok, old_failed_delivery, new_ok, old_pending = add(
        bridge,
        WebhookDelivery(endpoint_id=endpoint, event_id=events[0], status="succeeded", last_attempt_at=log_at - HOUR),
        WebhookDelivery(endpoint_id=endpoint, event_id=events[1], status="failed", last_attempt_at=log_at - HOUR),
        WebhookDelivery(endpoint_id=endpoint, event_id=events[2], status="succeeded", last_attempt_at=log_at + HOUR),
        WebhookDelivery(endpoint_id=endpoint, event_id=events[3], status="pending", last_attempt_at=log_at - HOUR))

    def attempt(delivery: str, at: datetime) -> WebhookAttempt:
        return WebhookAttempt(delivery_id=delivery, endpoint_id=endpoint, event_id="evt", attempt=1, at=at)

    old_ok_attempt, new_ok_attempt, pending_old_attempt, pending_new_attempt = add(
        bridge, attempt(old_ok, log_at - HOUR), attempt(new_ok, log_at + HOUR), attempt(old_pending, log_at - HOUR),
        attempt(old_pending, log_at + HOUR))

    inbox_at = cutoff(bridge, "inbox_event_retention_days")

    def inbound(n: int, status: str, at: datetime) -> InboundEvent:
        return InboundEvent(source="keycloak", event_id=f"e{n}", body="{}", status=status, received_at=at)

    old_processed, old_failed_inbound, new_processed, old_waiting = add(
        bridge, inbound(1, "processed", inbox_at - HOUR), inbound(2, "failed", inbox_at - HOUR),
        inbound(3, "processed", inbox_at + HOUR), inbound(4, "received", inbox_at - HOUR))

    links_at = cutoff(bridge, "expired_link_retention_days")
    made: dict[str, str] = {}
    with transaction(bridge.sessions) as session:
        org = orgs.get(session, "acme")
        for name in ("expired_long_ago", "expired_lately", "revoked_long_ago", "pending_unswept", "accepted"):
            made[name] = invites.create(session, bridge, audit.CLI, org,
                                        InviteInput(identifier=f"{name}@example.com")).invite.id
    closings = {
        "expired_long_ago": {"status": "EXPIRED", "expires_at": links_at - HOUR},
        "expired_lately": {"status": "EXPIRED", "expires_at": links_at + HOUR},
        "revoked_long_ago": {"status": "REVOKED", "revoked_at": links_at - HOUR, "expires_at": links_at + HOUR},
        # Past its expiry but not yet swept: the sweep closes it (and emits its event) first.
        "pending_unswept": {"status": "PENDING", "expires_at": links_at - HOUR},
        "accepted": {"status": "ACCEPTED", "expires_at": links_at - HOUR},
    }
    with transaction(bridge.sessions) as session:
        for name, values in closings.items():
            session.execute(update(Invite).where(Invite.id == made[name]).values(**values))

    with bridge.sessions() as session:
        # Creating the org and the invites audited too, at the real now: older than the window at the moved clock.
        old_audits = set(session.scalars(select(AuditEvent.id).where(AuditEvent.at < audit_at)))
    assert old_audit in old_audits and len(old_audits) > 1

    deleted = retention.run(bridge, now=MOVED)

    assert deleted == {"audit_events": len(old_audits), "finished_jobs": 2, "webhook_deliveries": 2,
                       "webhook_attempts": 1, "inbox_events": 2, "expired_invite_links": 2}
    assert ids(bridge, AuditEvent) == {new_audit}
    assert ids(bridge, Job) >= {new_done, queued, running}
    assert not ids(bridge, Job) & {old_done, old_failed}
    assert ids(bridge, WebhookDelivery) == {new_ok, old_pending}
    assert old_failed_delivery not in ids(bridge, WebhookDelivery)
    # The old delivery's attempts went with it; a pending delivery keeps its recent attempts only.
    assert ids(bridge, WebhookAttempt) == {new_ok_attempt, pending_new_attempt}
    assert {old_ok_attempt, pending_old_attempt}.isdisjoint(ids(bridge, WebhookAttempt))
    assert ids(bridge, InboundEvent) == {new_processed, old_waiting}
    assert {old_processed, old_failed_inbound}.isdisjoint(ids(bridge, InboundEvent))
    with bridge.sessions() as session:
        linked = set(session.scalars(select(InviteLink.invite_id)))
    assert linked == {made["expired_lately"], made["pending_unswept"], made["accepted"]}
    # The invites themselves stay: only their dead links go.
    with bridge.sessions() as session:
        assert set(session.scalars(select(Invite.id))) == set(made.values())

    assert retention.run(bridge, now=MOVED) == dict.fromkeys(deleted, 0)


@pytest.fixture
def deletes(bridge: Bridge) -> Iterator[list[int]]:
    """The row count of every DELETE the bridge's engine runs."""
    counts: list[int] = []

    def seen(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            counts.append(cursor.rowcount)

    engine: Engine = bridge.engine
    event.listen(engine, "after_cursor_execute", seen)
    yield counts
    event.remove(engine, "after_cursor_execute", seen)


def test_a_large_backlog_is_deleted_over_several_runs_in_bounded_batches(
        settings_overrides: dict[str, Any], bridge: Bridge, deletes: list[int]) -> None:
    assert bridge.settings.retention_batch_size == 10
    at = cutoff(bridge, "audit_retention_days")
    add(bridge, *(audit_event(at - timedelta(minutes=n + 1)) for n in range(45)))
    kept = add(bridge, *(audit_event(at + timedelta(minutes=n + 1)) for n in range(3)))

    runs = [retention.run(bridge, now=MOVED, max_batches=2)["audit_events"] for _ in range(4)]

    assert runs == [20, 20, 5, 0]
    audit_deletes = [n for n in deletes if n > 0]
    assert audit_deletes and max(audit_deletes) <= 10  # no transaction deleted more than one batch
    assert ids(bridge, AuditEvent) == set(kept)


def test_a_window_of_zero_keeps_rows_forever(bridge: Bridge) -> None:
    bridge.settings.audit_retention_days = 0
    [old] = add(bridge, audit_event(utcnow() - timedelta(days=10_000)))
    assert "audit_events" not in retention.run(bridge, now=MOVED)
    assert old in ids(bridge, AuditEvent)


def test_the_worker_runs_retention_as_a_periodic_task_at_most_every_few_minutes(bridge: Bridge) -> None:
    worker = make_worker(bridge)
    [task] = [t for t in worker.periodic if isinstance(t, retention.Retention)]
    now = [0.0]
    task.clock = lambda: now[0]
    [old] = add(bridge, audit_event(utcnow() - timedelta(days=bridge.settings.audit_retention_days + 1)))
    worker.run_periodic(force=True)
    assert old not in ids(bridge, AuditEvent)

    [again] = add(bridge, audit_event(utcnow() - timedelta(days=bridge.settings.audit_retention_days + 1)))
    now[0] += retention.EVERY_SECONDS / 2
    worker.run_periodic(force=True)
    assert again in ids(bridge, AuditEvent)  # too soon: the next run deletes it
    now[0] += retention.EVERY_SECONDS / 2
    worker.run_periodic(force=True)
    assert again not in ids(bridge, AuditEvent)
