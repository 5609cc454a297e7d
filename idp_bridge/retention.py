"""Retention: the worker deletes rows older than their window (settings `*_retention_days`), in bounded batches,
never what is still needed (queued or running jobs, pending deliveries, inbox events not yet processed)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Delete, Select, Table, and_, delete, func, or_, select
from sqlalchemy.orm import Session

from idp_bridge import inbox, jobs
from idp_bridge.bridge import Bridge
from idp_bridge.models import (
    AuditEvent,
    InboundEvent,
    Invite,
    InviteLink,
    InviteStatus,
    Job,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from idp_bridge.services import webhooks
from idp_bridge.store.db import transaction
from idp_bridge.store.sql import table_of

log = logging.getLogger(__name__)

# How often a worker looks for old rows; the windows are days long, a check every few minutes is plenty.
EVERY_SECONDS = 600.0
# Batches of one kind per run: a large backlog (the first run after an upgrade) goes over several runs, so
# no run holds the database for long.
MAX_BATCHES_PER_RUN = 20

Purge = Callable[[Session, datetime, int], int]


@dataclass(frozen=True)
class Kind:
    """One kind of row retention deletes, and the setting that holds its window in days."""

    name: str
    setting: str
    purge: Purge


def _in_batches(table: Table, key: ColumnElement[str], pick: Callable[[datetime], Select[tuple[str]]]) -> Purge:
    """A purge deleting up to `limit` rows whose keys `pick(cutoff)` selects, oldest first, in one statement.

    On PostgreSQL the picked rows are row-locked, skipping those another worker is deleting, so several
    workers' retention runs never wait on each other.
    """

    def purge(session: Session, cutoff: datetime, limit: int) -> int:
        chosen = pick(cutoff).limit(limit).with_for_update(skip_locked=True, of=table).scalar_subquery()
        statement: Delete = delete(table).where(key.in_(chosen))
        result = session.execute(statement, execution_options={"synchronize_session": False})
        return int(getattr(result, "rowcount", 0) or 0)

    return purge


_audit = table_of(AuditEvent)
_jobs = table_of(Job)
_deliveries = table_of(WebhookDelivery)
_attempts = table_of(WebhookAttempt)
_inbound = table_of(InboundEvent)
_links = table_of(InviteLink)
_invites = table_of(Invite)

purge_audit_events = _in_batches(
    _audit, _audit.c.id,
    lambda cutoff: select(_audit.c.id).where(_audit.c.at < cutoff).order_by(_audit.c.at))

# Queued and running jobs are never picked: only finished ones, by when they finished.
purge_finished_jobs = _in_batches(
    _jobs, _jobs.c.id,
    lambda cutoff: select(_jobs.c.id).where(_jobs.c.status.in_((jobs.DONE, jobs.FAILED)),
                                            _jobs.c.finished_at < cutoff).order_by(_jobs.c.finished_at))

# A finished delivery (succeeded, or failed for good) goes with its attempts once its last attempt is old; a
# pending one stays, however old, since a job will still send it.
purge_finished_deliveries = _in_batches(
    _deliveries, _deliveries.c.id,
    lambda cutoff: select(_deliveries.c.id).where(
        _deliveries.c.status.in_((webhooks.SUCCEEDED, webhooks.FAILED)),
        or_(_deliveries.c.last_attempt_at < cutoff,
            and_(_deliveries.c.last_attempt_at.is_(None), _deliveries.c.created_at < cutoff)),
    ).order_by(_deliveries.c.last_attempt_at))

# The log of a delivery still retrying keeps only its recent attempts.
purge_delivery_attempts = _in_batches(
    _attempts, _attempts.c.id,
    lambda cutoff: select(_attempts.c.id).where(_attempts.c.at < cutoff).order_by(_attempts.c.at))

# Events still waiting for their processing job are never picked.
purge_inbox_events = _in_batches(
    _inbound, _inbound.c.id,
    lambda cutoff: select(_inbound.c.id).where(_inbound.c.status.in_((inbox.PROCESSED, inbox.FAILED)),
                                               _inbound.c.received_at < cutoff).order_by(_inbound.c.received_at))

# An invite closes at its expiry or at its revocation; a resend reopens an expired invite with a new link, so
# only the links of invites that are still closed go.
_closed_at = func.coalesce(_invites.c.revoked_at, _invites.c.expires_at)
purge_closed_invite_links = _in_batches(
    _links, _links.c.token_hash,
    lambda cutoff: select(_links.c.token_hash).join(_invites, _invites.c.id == _links.c.invite_id).where(
        _invites.c.status.in_((InviteStatus.EXPIRED.value, InviteStatus.REVOKED.value)),
        _closed_at < cutoff,
    ).order_by(_closed_at))

KINDS: tuple[Kind, ...] = (
    Kind("audit_events", "audit_retention_days", purge_audit_events),
    Kind("finished_jobs", "job_retention_days", purge_finished_jobs),
    Kind("webhook_deliveries", "delivery_log_retention_days", purge_finished_deliveries),
    Kind("webhook_attempts", "delivery_log_retention_days", purge_delivery_attempts),
    Kind("inbox_events", "inbox_event_retention_days", purge_inbox_events),
    Kind("expired_invite_links", "expired_link_retention_days", purge_closed_invite_links),
)


def run(bridge: Bridge, *, now: datetime | None = None, max_batches: int = MAX_BATCHES_PER_RUN) -> dict[str, int]:
    """Delete, kind by kind, up to `max_batches` batches of rows past their window; returns the count per kind.

    Each batch is a transaction of its own, at most `retention_batch_size` rows.
    """
    settings = bridge.settings
    now = now or utcnow()
    limit = settings.retention_batch_size
    deleted: dict[str, int] = {}
    for kind in KINDS:
        days = int(getattr(settings, kind.setting))
        if days <= 0:
            continue
        cutoff = now - timedelta(days=days)
        total = 0
        for _ in range(max_batches):
            with transaction(bridge.sessions) as session:
                count = kind.purge(session, cutoff, limit)
            total += count
            if count < limit:
                break
        deleted[kind.name] = total
    if any(deleted.values()):
        log.info("retention deleted %s", ", ".join(f"{n} {name}" for name, n in deleted.items() if n))
    return deleted


@dataclass
class Retention:
    """The worker's periodic retention task: runs at most once every `every` seconds."""

    every: float = EVERY_SECONDS
    clock: Callable[[], float] = time.monotonic
    _last: float | None = field(default=None, repr=False)

    def __call__(self, bridge: Bridge) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.every:
            return
        self._last = now
        run(bridge)
