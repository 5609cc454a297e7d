"""The durable inbox of IdP events: store verified events raw, then apply them to bound members idempotently."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from idp_bridge import audit, jobs
from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.domain.providers import ANY
from idp_bridge.domain.transitions import idp_may_deactivate, idp_may_reactivate, may_accept
from idp_bridge.errors import BridgeError
from idp_bridge.models import (
    Identity,
    InboundEvent,
    Invite,
    InviteStatus,
    Member,
    MemberStatus,
    Organization,
    utcnow,
)
from idp_bridge.services import members, orgs
from idp_bridge.services.invites import effective_status
from idp_bridge.settings import Settings
from idp_bridge.store.db import read_only, transaction
from idp_bridge.store.inbound import JobSpec, write_events
from idp_bridge.worker import JobKind, JobView

log = logging.getLogger(__name__)

PROCESS_JOB = "process_inbound_event"
RECEIVED = "received"
PROCESSED = "processed"
FAILED = "failed"

Action = Literal["activated", "deactivated", "reactivated", "deleted", "noted"]


@dataclass(frozen=True)
class IdpSignal:
    """What an IdP reported about one of its accounts, in the core's terms."""

    action: Action
    provider: str
    subject: str
    occurred_at: datetime | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InboundView:
    """A stored inbound event, detached, handed to the source's interpreter."""

    id: str
    source: str
    event_id: str
    body: str
    headers: Mapping[str, Any]


# Reads a stored event and says what it means; may call the IdP (e.g. Graph) but never writes our state.
Interpreter = Callable[[Bridge, InboundView], list[IdpSignal]]


@dataclass
class Incoming:
    """A verified event waiting to be written."""

    source: str
    event_id: str
    body: str
    headers: Mapping[str, Any] = field(default_factory=dict)


def write(conn: Connection, batch: list[Incoming]) -> None:
    """Insert events and a processing job for each one stored; a (source, event_id) already stored is skipped.

    A skipped duplicate gets no job of its own: the stored event's job processes it once. This is the ingest
    hot path, written by the store's batch insert (store.inbound) rather than ORM objects.
    """
    write_events(conn, [(e.source, e.event_id[:255], e.body, e.headers) for e in batch], status=RECEIVED,
                 job=JobSpec(PROCESS_JOB, jobs.QUEUED, 12))


def bound_members(session: Session, provider: str, subject: str) -> list[Member]:
    """Members whose IdP account is this one: by a bound identity or the account provisioned for their invite."""
    found: dict[str, Member] = {}
    rows = session.scalars(select(Member).join(Identity, Identity.member_id == Member.id)
                           .where(Identity.provider == provider, Identity.subject == subject))
    for member in rows:
        found[member.id] = member
    invites = session.scalars(select(Invite).where(Invite.idp_user_id == subject,
                                                   Invite.provider.in_([provider, ANY])))
    for invite in invites:
        found[invite.member_id] = invite.member
    return list(found.values())


def _pending_invite(session: Session, member: Member) -> Invite | None:
    return session.scalar(select(Invite).where(Invite.member_id == member.id, Invite.status == InviteStatus.PENDING)
                          .order_by(Invite.created_at.desc()))


def activate(session: Session, actor: Actor, org: Organization, member: Member, *, source: str,
             details: Mapping[str, Any]) -> bool:
    """INVITED → ACTIVE and its invite → ACCEPTED, together; False when there is nothing to activate."""
    orgs.lock(session, org)
    session.refresh(member)
    invite = _pending_invite(session, member) if member.status == MemberStatus.INVITED else None
    # An expired invite is not redeemed by a late login; the sweeper closes it.
    if invite is None or not may_accept(effective_status(invite), member.status):
        return False
    members.activate(session, actor, org, member, invite, details={"source": source, **details},
                     accepted={"source": source}, activated={"source": source})
    return True


def apply(session: Session, settings: Settings, signal: IdpSignal, *, source: str) -> int:
    """Apply one signal to every member bound to its account; returns how many changed."""
    actor = Actor("idp", source)
    changed = 0
    for member in bound_members(session, signal.provider, signal.subject):
        org = session.get(Organization, member.org_id)
        assert org is not None
        try:
            with session.begin_nested():
                if _apply_one(session, settings, actor, org, member, signal, source):
                    changed += 1
        except BridgeError as exc:
            audit.record(session, actor, "idp_event.ignored", org_id=org.id, target_type="member",
                         target_id=member.id, details={"action": signal.action, "reason": exc.detail})
    return changed


def _apply_one(session: Session, settings: Settings, actor: Actor, org: Organization, member: Member,
               signal: IdpSignal, source: str) -> bool:
    # Decide on the member as it is once the org is locked: a concurrent event may just have changed it.
    orgs.lock(session, org)
    session.refresh(member)
    status = member.status
    if signal.action == "activated":
        if status == MemberStatus.ACTIVE:
            seen = signal.occurred_at or utcnow()
            if member.last_login_at is None or seen > member.last_login_at:
                member.last_login_at = seen
            return False
        return activate(session, actor, org, member, source=source, details=signal.details)
    if signal.action == "deactivated":
        if not idp_may_deactivate(status):
            return False
        members.deactivate(session, settings, actor, org, member.id, source=source)
        return True
    if signal.action == "reactivated":
        if not idp_may_reactivate(member_status=status, deactivated_by=member.deactivated_by, source=source,
                                  occurred_at=signal.occurred_at, updated_at=member.updated_at):
            return False
        members.reactivate(session, settings, actor, org, member.id, source=source)
        return True
    if signal.action == "deleted":
        if status == MemberStatus.DELETED:
            return False
        members.remove(session, settings, actor, org, member.id, source=source)
        return True
    audit.record(session, actor, f"idp.{signal.details.get('event', 'event')}", org_id=org.id,
                 target_type="member", target_id=member.id, details=dict(signal.details))
    return False


def _find(session: Session, source: str, event_id: str, *, lock: bool = False) -> InboundEvent | None:
    stmt = select(InboundEvent).where(InboundEvent.source == source, InboundEvent.event_id == event_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def process(bridge: Bridge, source: str, event_id: str, interpreters: Mapping[str, Interpreter]) -> None:
    """Interpret a stored event and apply it once; a second run of a processed event does nothing."""
    with read_only(), transaction(bridge.sessions) as session:
        row = _find(session, source, event_id)
        if row is None or row.status != RECEIVED:
            return
        view = InboundView(row.id, row.source, row.event_id, row.body, dict(row.headers))
    kind = view.source.split(":", 1)[0]
    interpret = interpreters.get(kind)
    if interpret is None:
        raise jobs.PermanentFailure(f"no interpreter for inbound source {view.source}")
    signals = interpret(bridge, view)
    with transaction(bridge.sessions) as session:
        row = _find(session, source, event_id, lock=True)
        if row is None or row.status != RECEIVED:
            return
        for signal in signals:
            apply(session, bridge.settings, signal, source=kind)
        row.status = PROCESSED
        row.processed_at = utcnow()


def job_kind(interpreters: Mapping[str, Interpreter]) -> dict[str, JobKind]:
    """The job that processes stored inbound events with the given interpreters, keyed by source kind."""

    def run(bridge: Bridge, job: JobView) -> None:
        process(bridge, job.payload["source"], job.payload["event_id"], interpreters)

    def give_up(bridge: Bridge, job: JobView, error: str) -> None:
        with transaction(bridge.sessions) as session:
            row = _find(session, job.payload["source"], job.payload["event_id"])
            if row is not None and row.status == RECEIVED:
                row.status = FAILED
                row.error = error[:2000]

    return {PROCESS_JOB: JobKind(run=run, on_give_up=give_up)}
