"""The durable inbox of IdP events: store verified events raw, then apply them to bound members idempotently."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Dialect, Table, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from idp_bridge import audit, jobs
from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.db import json_dumps, read_only, transaction
from idp_bridge.domain.transitions import idp_may_deactivate, idp_may_reactivate, may_accept
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


class _Insert:
    """One table's INSERT … ON CONFLICT DO NOTHING (SQLite), compiled once per dialect and run as driver SQL.

    Values go to the driver already bind-processed: the columns every row of a batch shares once per batch,
    the others once per row, with no statement compilation or per-execution parameter processing.
    """

    def __init__(self, table: Table, varying: Sequence[str], shared: Sequence[str], dialect: Dialect) -> None:
        stmt: Any = sqlite_insert(table).on_conflict_do_nothing() if dialect.name == "sqlite" else insert(table)
        columns = [*varying, *shared]
        if set(columns) != set(table.c.keys()):
            raise ValueError(f"{table.name}: give every column a value")
        compiled = stmt.compile(dialect=dialect, column_keys=columns)
        self.sql = str(compiled)
        self.order: list[str] = (list(compiled.positiontup or ()) if compiled.positional
                                 else list(compiled.bind_names.values()))
        self.positional = bool(compiled.positional)
        self.varying = list(varying)
        self.shared = list(shared)
        self.processors: dict[str, Callable[[Any], Any] | None] = {
            name: table.c[name].type._cached_bind_processor(dialect) for name in columns}

        # Where each value of a driver row comes from: the i-th varying value, or (-1) the shared one named.
        self.slots = [(self.varying.index(name) if name in self.varying else -1, name) for name in self.order]

    def execute(self, conn: Connection, shared: Mapping[str, Any], rows: Sequence[Sequence[Any]]) -> int:
        """Insert one row per item of `rows` (values in `varying` order), each with the `shared` values.

        Returns how many rows went in (conflicts skipped), as the driver counts them; -1 when it cannot tell.
        """
        if not rows:
            return 0
        fixed = {name: _processed(self.processors[name], shared[name]) for name in self.shared}
        processors = [self.processors[name] for name in self.varying]
        params: list[Any] = []
        for row in rows:
            values = [_processed(process, value) for process, value in zip(processors, row, strict=True)]
            if self.positional:
                params.append(tuple(values[i] if i >= 0 else fixed[name] for i, name in self.slots))
            else:
                params.append({**fixed, **dict(zip(self.varying, values, strict=True))})
        # Straight to the driver, inside the connection's transaction: the statement is already compiled and
        # the values are processed, so nothing is left for SQLAlchemy's execution machinery to do.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(self.sql, params)
            return int(cursor.rowcount)
        finally:
            cursor.close()


def _processed(process: Callable[[Any], Any] | None, value: Any) -> Any:
    return process(value) if process is not None and value is not None else value


def ordered_id() -> str:
    """A random UUID led by the current Unix time in milliseconds (the UUIDv7 layout).

    Rows written together get neighbouring keys, so each batch adds to the same primary-key index pages
    instead of dirtying one random page per row, which is most of what a commit writes.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76 | 0x3 << 62) | 0x7 << 76 | 0x2 << 62  # version 7, RFC 4122 variant
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Inserts:
    """The inbox's two inserts for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.events = _Insert(InboundEvent.__table__, ["id", "source", "event_id", "body", "headers"],  # type: ignore[arg-type]
                              ["status", "error", "received_at", "processed_at"], dialect)
        self.jobs = _Insert(Job.__table__, ["id", "payload"],  # type: ignore[arg-type]
                            ["kind", "org_id", "dedupe_key", "status", "attempts", "max_attempts", "run_after",
                             "locked_until", "locked_by", "last_error", "created_at", "finished_at"], dialect)


_INSERTS: dict[str, _Inserts] = {}


@dataclass
class Incoming:
    """A verified event waiting to be written."""

    source: str
    event_id: str
    body: str
    headers: Mapping[str, Any] = field(default_factory=dict)


def write(conn: Connection, batch: list[Incoming]) -> None:
    """Insert events and a processing job for each one stored; a (source, event_id) already stored is skipped.

    A skipped duplicate gets no job of its own: the stored event's job processes it once.

    Prebuilt driver SQL rather than ORM objects or per-call compilation: this is the ingest hot path. Row ids
    are time-ordered and the jobs need no dedupe key (the event's unique constraint already decides), so a
    batch dirties few index pages beyond those of the (source, event_id) constraint.
    """
    if not batch:
        return
    if conn.dialect.name == "postgresql":
        _write_postgresql(conn, batch)
        return
    inserts = _INSERTS.get(conn.dialect.name)
    if inserts is None:
        inserts = _INSERTS[conn.dialect.name] = _Inserts(conn.dialect)
    now = utcnow()
    events, queued = [], []
    for e in batch:
        event_id = e.event_id[:255]
        events.append((ordered_id(), e.source, event_id, e.body, dict(e.headers)))
        queued.append((ordered_id(), {"source": e.source, "event_id": event_id}))
    stored = inserts.events.execute(conn, {"status": RECEIVED, "error": None, "received_at": now,
                                           "processed_at": None}, events)
    if stored != len(events):
        # Some were duplicates (of stored events, or of each other): queue jobs only for the rows that went in.
        ids = [row[0] for row in events]
        present = set(conn.scalars(select(InboundEvent.id).where(InboundEvent.id.in_(ids))))
        queued = [job for row, job in zip(events, queued, strict=True) if row[0] in present]
    inserts.jobs.execute(conn, {"kind": PROCESS_JOB, "org_id": None, "dedupe_key": None, "status": jobs.QUEUED,
                                "attempts": 0, "max_attempts": 12, "run_after": now, "locked_until": None,
                                "locked_by": None, "last_error": None, "created_at": now, "finished_at": None},
                         queued)


# The whole batch in one statement and one round trip: events from arrays, and a job for each row that went in
# (RETURNING leaves out the rows ON CONFLICT skipped).
_PG_WRITE = f"""
WITH stored AS (
    INSERT INTO inbound_events (id, source, event_id, body, headers, status, error, received_at, processed_at)
    SELECT e.id, e.source, e.event_id, e.body, e.headers::jsonb, '{RECEIVED}', NULL, %(now)s, NULL
    FROM unnest(%(ids)s::varchar[], %(sources)s::varchar[], %(event_ids)s::varchar[], %(bodies)s::text[],
                %(headers)s::text[]) AS e(id, source, event_id, body, headers)
    ON CONFLICT DO NOTHING
    RETURNING id, source, event_id
)
INSERT INTO jobs (id, kind, payload, org_id, dedupe_key, status, attempts, max_attempts, run_after, locked_until,
                  locked_by, last_error, created_at, finished_at)
SELECT j.job_id, '{PROCESS_JOB}', jsonb_build_object('source', stored.source, 'event_id', stored.event_id), NULL,
       NULL, '{jobs.QUEUED}', 0, 12, %(now)s, NULL, NULL, NULL, %(now)s, NULL
FROM stored JOIN unnest(%(ids)s::varchar[], %(job_ids)s::varchar[]) AS j(event_row_id, job_id)
    ON j.event_row_id = stored.id
"""


def _write_postgresql(conn: Connection, batch: list[Incoming]) -> None:
    """One statement, so also correct on an autocommit connection: it commits as a whole or not at all."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_PG_WRITE, {
            "now": utcnow(), "ids": [ordered_id() for _ in batch], "job_ids": [ordered_id() for _ in batch],
            "sources": [e.source for e in batch], "event_ids": [e.event_id[:255] for e in batch],
            "bodies": [e.body for e in batch], "headers": [json_dumps(dict(e.headers)) for e in batch]})
    finally:
        cursor.close()


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
        if not idp_may_deactivate(status):
            return False
        members.deactivate(session, bridge, actor, org, member.id, source=source)
        return True
    if signal.action == "reactivated":
        if not idp_may_reactivate(member_status=status, deactivated_by=member.deactivated_by, source=source,
                                  occurred_at=signal.occurred_at, updated_at=member.updated_at):
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
