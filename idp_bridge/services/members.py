"""Members: list, change role, deactivate, reactivate, remove; the last owner always stays."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert, Select, Update, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from idp_bridge import audit, events, jobs
from idp_bridge.audit import Actor
from idp_bridge.csvio import member_rows
from idp_bridge.domain import transitions
from idp_bridge.errors import BridgeError, InvalidState, LastOwner, NotFound, ValidationFailed, lazy_gettext
from idp_bridge.inputs import MemberBulk
from idp_bridge.models import (
    AuditEvent,
    Event,
    Identity,
    Invite,
    InviteStatus,
    Job,
    Member,
    MemberStatus,
    Organization,
    utcnow,
)
from idp_bridge.pagination import Page, paginate, parse_sort
from idp_bridge.services import invites, orgs
from idp_bridge.services.textsearch import matches
from idp_bridge.settings import Settings
from idp_bridge.store.compiled import compiled
from idp_bridge.store.db import read_only, transaction
from idp_bridge.store.ids import new_id
from idp_bridge.store.sql import table_of

MEMBER_SORTS = {
    "created_at": Member.created_at,
    "updated_at": Member.updated_at,
    "identifier": Member.identifier_key,
    "status": Member.status,
    "role": Member.role,
    "name": Member.name,
}
DISABLE_ACCOUNT_JOB = "set_idp_account_enabled"
# Brings the org's IdP organization (Keycloak Organizations) in line with one member's accounts.
ORGANIZATION_JOB = "sync_idp_organization"
# Retried with the usual backoff (doubling up to job_backoff_max_seconds): about a day of IdP outage at the defaults.
ORGANIZATION_JOB_ATTEMPTS = 25


def get(session: Session, org: Organization, member_id: str) -> Member:
    member = session.get(Member, member_id)
    if member is None or member.org_id != org.id:
        raise NotFound(lazy_gettext("member %(id)s does not exist in %(org)s", id=member_id, org=org.slug))
    return member


def filtered(org: Organization, *, status: str | None = None, role: str | None = None,
             provider: str | None = None, q: str | None = None) -> Select[Member]:
    """The members of org matching the filters (DELETED only when asked for)."""
    stmt = select(Member).where(Member.org_id == org.id)
    if status is not None:
        wanted = [s.strip().upper() for s in status.split(",") if s.strip()]
        bad = [s for s in wanted if s not in MemberStatus.__members__]
        if bad or not wanted:
            raise ValidationFailed({"status": [lazy_gettext("must be among %(choices)s",
                                                              choices=", ".join(MemberStatus.__members__))]})
        stmt = stmt.where(Member.status.in_(wanted))
    else:
        stmt = stmt.where(Member.status != MemberStatus.DELETED)
    if role:
        stmt = stmt.where(Member.role.in_([r.strip() for r in role.split(",") if r.strip()]))
    if provider:
        bound = select(Identity.member_id).where(Identity.org_id == org.id, Identity.provider == provider)
        stmt = stmt.where(or_(Member.provider == provider, Member.id.in_(bound)))
    if q:
        stmt = stmt.where(matches(q, Member.identifier_key, Member.identifier, Member.name, Member.email))
    return stmt


def search(session: Session, org: Organization, *, sort: str | None = None, limit: int, cursor: str | None,
           **filters: Any) -> Page[Member]:
    order = parse_sort(sort, MEMBER_SORTS, "-created_at")
    return paginate(session, filtered(org, **filters), sort=order, id_column=Member.id, limit=limit,
                    cursor=cursor)


def stream(session: Session, org: Organization, *, sort: str | None = None, batch: int = 1000,
           **filters: Any) -> Iterator[Member]:
    """Every matching member, fetched a page at a time so memory stays flat for any org size."""
    cursor: str | None = None
    order = parse_sort(sort, MEMBER_SORTS, "created_at")
    stmt = filtered(org, **filters)
    while True:
        page = paginate(session, stmt, sort=order, id_column=Member.id, limit=batch, cursor=cursor)
        yield from page.items
        session.expunge_all()
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def export_csv(sessions: sessionmaker[Session], org: Organization, *, sort: str | None = None,
               **filters: Any) -> Iterator[str]:
    """CSV lines of every matching member, read in their own read-only transaction as the lines are taken.

    The filters are checked at once, while the caller can still answer with a problem; the rows are read only
    when the first line is asked for (a streamed response outlives the request's transaction).
    """
    filtered(org, **filters)
    return _export_lines(sessions, org.id, sort, filters)


def _export_lines(sessions: sessionmaker[Session], org_id: str, sort: str | None,
                  filters: dict[str, Any]) -> Iterator[str]:
    with read_only(), transaction(sessions) as session:
        current = session.get(Organization, org_id)
        assert current is not None
        keys: set[str] = set()
        stmt = filtered(current, **filters).with_only_columns(Member.attributes)
        for attrs in session.scalars(stmt.execution_options(yield_per=1000)):
            keys.update((attrs or {}).keys())
        yield from member_rows(stream(session, current, sort=sort, **filters), sorted(keys))


def _owner_roles(settings: Settings) -> list[str]:
    return [name for name, role in settings.roles.items() if role.owner]


def _guard_last_owner(session: Session, settings: Settings, org: Organization, member: Member) -> None:
    """Refuse to take away the org's only ACTIVE owner."""
    owners = _owner_roles(settings)
    if member.role not in owners or member.status != MemberStatus.ACTIVE:
        return
    others = session.scalar(select(func.count(Member.id)).where(
        Member.org_id == org.id, Member.role.in_(owners), Member.status == MemberStatus.ACTIVE,
        Member.id != member.id)) or 0
    if others == 0:
        raise LastOwner(lazy_gettext("%(identifier)s is the last active owner of %(org)s; make another member "
                                     "an owner first", identifier=member.identifier, org=org.slug))


def change_role(session: Session, settings: Settings, actor: Actor, org: Organization, member_id: str,
                role: str) -> Member:
    if role not in settings.roles:
        raise ValidationFailed({"role": [lazy_gettext("unknown role %(role)r; one of %(roles)s", role=role,
                                                       roles=", ".join(settings.roles))]})
    orgs.lock(session, org)
    member = get(session, org, member_id)
    if member.status == MemberStatus.DELETED:
        raise InvalidState(lazy_gettext("member %(id)s was removed", id=member.id), status=member.status)
    if member.role == role:
        return member
    if role not in _owner_roles(settings):
        _guard_last_owner(session, settings, org, member)
    before = member.role
    member.role = role
    invite = session.scalar(select(Invite).where(Invite.member_id == member.id,
                                                 Invite.status == InviteStatus.PENDING))
    if invite is not None:
        invite.role = role
    audit.record(session, actor, "member.role_changed", org_id=org.id, target_type="member", target_id=member.id,
                 details={"from": before, "to": role})
    events.emit(session, org, "member.role_changed", member=member, previous_role=before)
    session.flush()
    return member


def organization_job(org: Organization, member_id: str,
                     accounts: Sequence[tuple[str, str]] = ()) -> dict[str, Any] | None:
    """The job row that brings the org's IdP organization in line with this member, when the org names one.

    `accounts` are (provider, subject) pairs the member held when the job was written (a removal unbinds them);
    the job adds the member's accounts it finds then.
    """
    if not org.keycloak_organization:
        return None
    now = utcnow()
    return jobs.job_row(id=new_id(), kind=ORGANIZATION_JOB, org_id=org.id, dedupe_key=None,
                        payload={"member_id": member_id, "organization": org.keycloak_organization,
                                 "accounts": [list(account) for account in accounts]},
                        max_attempts=ORGANIZATION_JOB_ATTEMPTS, run_after=now, now=now)


def accounts_of(session: Session, member: Member) -> list[tuple[str, str]]:
    """The IdP accounts of a member: its bound identities and the accounts provisioned for its invites."""
    found = [(i.provider, i.subject) for i in session.scalars(select(Identity).where(Identity.member_id == member.id))]
    for provider, user_id in session.execute(select(Invite.provider, Invite.idp_user_id).where(
            Invite.member_id == member.id, Invite.idp_user_id.is_not(None))):
        if user_id:
            found.append((provider, user_id))
    return list(dict.fromkeys(found))


def _account_job(session: Session, org: Organization, member: Member, enabled: bool) -> None:
    """Ask the worker to disable/enable the IdP account idp-bridge bound to this member."""
    jobs.enqueue(session, DISABLE_ACCOUNT_JOB, {"member_id": member.id, "enabled": enabled}, org_id=org.id)


def deactivate(session: Session, settings: Settings, actor: Actor, org: Organization, member_id: str,
               *, source: str = "admin") -> Member:
    return _set_active(session, settings, actor, org, member_id, active=False, source=source)


def reactivate(session: Session, settings: Settings, actor: Actor, org: Organization, member_id: str,
               *, source: str = "admin") -> Member:
    return _set_active(session, settings, actor, org, member_id, active=True, source=source)


def _set_active(session: Session, settings: Settings, actor: Actor, org: Organization, member_id: str, *,
                active: bool, source: str) -> Member:
    """ACTIVE ↔ DEACTIVATED; an admin's change also reaches the IdP account bound to the member."""
    orgs.lock(session, org)
    member = get(session, org, member_id)
    change = transitions.set_active(member_id=member.id, member_status=member.status, active=active, source=source)
    action = change.action
    if not active:
        _guard_last_owner(session, settings, org, member)
    member.assign(change.member)
    if source == "admin":
        _account_job(session, org, member, enabled=active)
    audit.record(session, actor, f"member.{action}", org_id=org.id, target_type="member", target_id=member.id,
                 details={"source": source})
    events.emit(session, org, f"member.{action}", member=member, source=source)
    session.flush()
    return member


def set_active_from_directory(session: Session, settings: Settings, actor: Actor, org: Organization,
                              member: Member, *, active: bool) -> bool:
    """A directory's `active` (SCIM) applied to a member; False when it changes nothing."""
    change = transitions.directory_active(member_id=member.id, member_status=member.status, active=active,
                                          activated_at=member.activated_at)
    if change is None:
        return False
    if not active:
        _guard_last_owner(session, settings, org, member)
    member.assign(change.member)
    _account_job(session, org, member, enabled=active)
    audit.record(session, actor, f"member.{change.action}", org_id=org.id, target_type="member",
                 target_id=member.id, details={"source": transitions.DIRECTORY})
    events.emit(session, org, f"member.{change.action}", member=member, source=transitions.DIRECTORY)
    session.flush()
    return True


def activate(session: Session, actor: Actor, org: Organization, member: Member, invite: Invite, *,
             details: Mapping[str, Any], accepted: Mapping[str, Any] | None = None,
             activated: Mapping[str, Any] | None = None) -> None:
    """Redeem the member's invite: INVITED → ACTIVE and the invite ACCEPTED together, audited, with both events.

    The caller has checked that both may change (it holds the invite's lock); `accepted` and `activated`
    add to the data of the `invite.accepted` and `member.activated` events.
    """
    # Written with direct statements rather than the unit of work: this runs once per redeemed invite while
    # the invitee waits, and the flush's bookkeeping would cost more than the statements themselves.
    write_activation(session.connection(), actor, org, member, invite, details=details, accepted=accepted,
                     activated=activated)


def write_activation(connection: Connection, actor: Actor, org: Organization, member: Member, invite: Invite, *,
                     details: Mapping[str, Any], accepted: Mapping[str, Any] | None = None,
                     activated: Mapping[str, Any] | None = None) -> None:
    """activate()'s statements on a connection inside the caller's transaction; transitions.accept() decides.

    `member`, `invite` and `org` only need their columns readable as attributes (ORM instances or rows
    fetched with Core).
    """
    now = utcnow()
    change = transitions.accept(invite_status=transitions.effective_status(invite.status, invite.expires_at, now),
                                member_status=member.status, activated_at=member.activated_at,
                                event_seq=member.event_seq, now=now)
    sequence = change.sequence
    _write(connection, Invite, invite, **change.invite)
    _write(connection, Member, member, **change.member)
    _insert_rows(connection, AuditEvent, [
        audit.entry(actor, "invite.accepted", org_id=org.id, target_type="invite", target_id=invite.id,
                    details=dict(details)),
        audit.entry(actor, "member.activated", org_id=org.id, target_type="member", target_id=member.id,
                    details=dict(details))])
    _insert_rows(connection, Event, [
        events.build(org, "invite.accepted", sequence, member=member, invite=invite, **dict(accepted or {})),
        events.build(org, "member.activated", sequence + 1, member=member, invite=invite,
                     **dict(activated or {}))])
    if (job := organization_job(org, member.id)) is not None:
        _insert_rows(connection, Job, [job])


def _write(connection: Connection, model: type[Member | Invite], row: Member | Invite, **values: Any) -> None:
    """UPDATE one loaded row now and keep the values as its loaded state, leaving the flush nothing to do.

    A row fetched with Core (no ORM state) just takes the new values.
    """
    keys = ("row_id", *values)
    compiled(connection, ("update", model, keys), lambda: _update(model), keys).run(
        connection, {"row_id": row.id, **values})
    orm = isinstance(row, model)
    for key, value in values.items():
        if orm:
            set_committed_value(row, key, value)
        else:
            setattr(row, key, value)


@functools.cache
def _update(model: type[Member | Invite]) -> Update:
    """UPDATE of one row by id; the columns set are the parameters' other keys."""
    table = table_of(model)
    return update(table).where(table.c.id == bindparam("row_id"))


def _insert_rows(connection: Connection, model: type[AuditEvent | Event | Job], rows: list[dict[str, Any]]) -> None:
    keys = tuple(rows[0])
    compiled(connection, ("insert", model, keys), lambda: _insert(model), keys).run_many(connection, rows)


@functools.cache
def _insert(model: type[AuditEvent | Event | Job]) -> Insert:
    return insert(table_of(model))


def remove(session: Session, settings: Settings, actor: Actor, org: Organization, member_id: str,
           *, source: str = "admin") -> Member:
    """Remove a member: its seat frees, its pending invite is revoked, its identities unbound."""
    orgs.lock(session, org)
    member = get(session, org, member_id)
    invite = session.scalar(select(Invite).where(Invite.member_id == member.id,
                                                 Invite.status == InviteStatus.PENDING))
    removal = transitions.remove(member_id=member.id, member_status=member.status,
                                 invite_status=invite.status if invite is not None else None,
                                 idp_user_id=invite.idp_user_id if invite is not None else None, now=utcnow())
    _guard_last_owner(session, settings, org, member)
    if (job := organization_job(org, member.id, accounts_of(session, member))) is not None:
        session.add(Job(**job))
    member.assign(removal.member)
    if invite is not None:
        invite.assign(removal.invite)
        if removal.deprovision:
            jobs.enqueue(session, invites.DEPROVISION_JOB, {"invite_id": invite.id}, org_id=org.id)
    # Unbind, so the same account can be invited again later without tripping rule 6.
    session.execute(delete(Identity).where(Identity.member_id == member.id))
    audit.record(session, actor, "member.removed", org_id=org.id, target_type="member", target_id=member.id,
                 details={"identifier": member.identifier, "source": source})
    events.emit(session, org, "member.removed", member=member, source=source)
    session.flush()
    return member


@dataclass
class BulkResult:
    id: str
    status: str
    member: Member | None = None
    error: BridgeError | None = None


def bulk(session: Session, settings: Settings, actor: Actor, org: Organization, data: MemberBulk) -> list[BulkResult]:
    """Apply one action to many members; each id succeeds or fails on its own (savepoint per id)."""
    if data.action == "change_role" and not data.role:
        raise ValidationFailed({"role": [lazy_gettext("is required for change_role")]})
    results: list[BulkResult] = []
    for member_id in dict.fromkeys(data.ids):
        try:
            with session.begin_nested():
                if data.action == "change_role":
                    assert data.role is not None
                    member = change_role(session, settings, actor, org, member_id, data.role)
                elif data.action == "remove":
                    member = remove(session, settings, actor, org, member_id)
                elif data.action == "deactivate":
                    member = deactivate(session, settings, actor, org, member_id)
                else:
                    member = reactivate(session, settings, actor, org, member_id)
            results.append(BulkResult(member_id, "ok", member))
        except BridgeError as exc:
            results.append(BulkResult(member_id, "error", error=exc))
    return results
