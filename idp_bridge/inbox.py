"""The durable inbox of IdP events: store verified events raw, then apply them to bound members idempotently."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from idp_bridge import audit, jobs
from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.db import read_only, transaction
from idp_bridge.errors import BridgeError
from idp_bridge.idp import ANY
from idp_bridge.models import (
    Identity,
    InboundEvent,
    Invite,
    InviteStatus,
    Job,
    Member,
    MemberStatus,
    Organization,
    new_id,
    utcnow,
)
from idp_bridge.services import members, orgs
from idp_bridge.services.invites import effective_status
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


def _insert_ignoring_duplicates(table: Any, dialect: str) -> Any:
    """INSERT … ON CONFLICT DO NOTHING, built once per table and dialect so its compiled form is reused."""
    key = (table.name, dialect)
    stmt = _INSERTS.get(key)
    if stmt is None:
        if dialect == "postgresql":
            stmt = pg_insert(table).on_conflict_do_nothing()
        elif dialect == "sqlite":
            stmt = sqlite_insert(table).on_conflict_do_nothing()
        else:
            stmt = insert(table)
        _INSERTS[key] = stmt
    return stmt


_INSERTS: dict[tuple[str, str], Any] = {}


@dataclass
class Incoming:
    """A verified event waiting to be written."""

    source: str
    event_id: str
    body: str
    headers: Mapping[str, Any] = field(default_factory=dict)


def _job_key(source: str, event_id: str) -> str:
    return "inbound:" + hashlib.sha256(f"{source}\0{event_id}".encode()).hexdigest()[:48]


def write(conn: Connection, batch: list[Incoming]) -> None:
    """Insert events and their processing jobs; a (source, event_id) already stored is skipped by the database.

    Core executemany rather than ORM objects: this is the ingest hot path. A duplicate may add a job only
    after the first one finished; that job finds the event processed and does nothing.
    """
    now = utcnow()
    dialect = conn.dialect.name
    conn.execute(_insert_ignoring_duplicates(InboundEvent.__table__, dialect), [
        {"id": new_id(), "source": e.source, "event_id": e.event_id[:255], "body": e.body,
         "headers": dict(e.headers), "status": RECEIVED, "error": None, "received_at": now, "processed_at": None}
        for e in batch])
    conn.execute(_insert_ignoring_duplicates(Job.__table__, dialect), [
        {"id": new_id(), "kind": PROCESS_JOB, "payload": {"source": e.source, "event_id": e.event_id[:255]},
         "org_id": None, "dedupe_key": _job_key(e.source, e.event_id[:255]), "status": jobs.QUEUED, "attempts": 0,
         "max_attempts": 12, "run_after": now, "locked_until": None, "locked_by": None, "last_error": None,
         "created_at": now, "finished_at": None}
        for e in batch])


class Ingestor:
    """Group commit for inbound events: callers wait until the transaction holding their event has committed.

    One writer thread per process turns many concurrent webhook requests into few transactions, so
    acknowledging an event still means it is durable, while SQLite's single writer (and PostgreSQL's commit
    latency) are paid once per batch rather than once per event.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 256, timeout: float = 30.0) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.timeout = timeout
        self._pending: list[tuple[Incoming, _Ticket]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, event: Incoming) -> None:
        """Return once the event is committed; raise when the write failed."""
        ticket = _Ticket()
        with self._cond:
            self._pending.append((event, ticket))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()
            self._cond.notify()
        if not ticket.done.wait(self.timeout):
            raise TimeoutError("the inbound event was not committed in time")
        if ticket.error is not None:
            raise ticket.error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            error: BaseException | None = None
            try:
                with self.engine.begin() as conn:
                    write(conn, [event for event, _ in batch])
            except Exception as exc:
                log.exception("writing %d inbound events failed", len(batch))
                error = exc
            for _, ticket in batch:
                ticket.error = error
                ticket.done.set()


@dataclass
class _Ticket:
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def ingestor(bridge: Bridge) -> Ingestor:
    """This process's ingestor for the bridge's database."""
    with _INGESTOR_LOCK:
        found = bridge.extras.get("inbox_ingestor")
        if not isinstance(found, Ingestor):
            found = bridge.extras["inbox_ingestor"] = Ingestor(bridge.engine)
        return found


_INGESTOR_LOCK = threading.Lock()


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
    if member.status != MemberStatus.INVITED:
        return False
    invite = _pending_invite(session, member)
    if invite is None or effective_status(invite) != InviteStatus.PENDING:
        return False  # an expired invite is not redeemed by a late login; the sweeper closes it
    members.activate(session, actor, org, member, invite, details={"source": source, **details},
                     accepted={"source": source}, activated={"source": source})
    return True


def apply(session: Session, bridge: Bridge, signal: IdpSignal, *, source: str) -> int:
    """Apply one signal to every member bound to its account; returns how many changed."""
    actor = Actor("idp", source)
    changed = 0
    for member in bound_members(session, signal.provider, signal.subject):
        org = session.get(Organization, member.org_id)
        assert org is not None
        try:
            with session.begin_nested():
                if _apply_one(session, bridge, actor, org, member, signal, source):
                    changed += 1
        except BridgeError as exc:
            audit.record(session, actor, "idp_event.ignored", org_id=org.id, target_type="member",
                         target_id=member.id, details={"action": signal.action, "reason": exc.detail})
    return changed


def _apply_one(session: Session, bridge: Bridge, actor: Actor, org: Organization, member: Member,
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
        if status != MemberStatus.ACTIVE:
            return False
        members.deactivate(session, bridge, actor, org, member.id, source=source)
        return True
    if signal.action == "reactivated":
        # Only undo our own deactivation, and only with news newer than the member's last change.
        if status != MemberStatus.DEACTIVATED or member.deactivated_by != source:
            return False
        if signal.occurred_at is not None and signal.occurred_at <= member.updated_at:
            return False
        members.reactivate(session, bridge, actor, org, member.id, source=source)
        return True
    if signal.action == "deleted":
        if status == MemberStatus.DELETED:
            return False
        members.remove(session, bridge, actor, org, member.id, source=source)
        return True
    audit.record(session, actor, f"idp.{signal.details.get('event', 'event')}", org_id=org.id,
                 target_type="member", target_id=member.id, details=dict(signal.details))
    return False


def _find(session: Session, source: str, event_id: str, *, lock: bool = False) -> InboundEvent | None:
    stmt = select(InboundEvent).where(InboundEvent.source == source, InboundEvent.event_id == event_id)
    if lock and session.get_bind().dialect.name == "postgresql":
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
            apply(session, bridge, signal, source=kind)
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
