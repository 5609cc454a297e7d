"""Members: list, change role, deactivate, reactivate, remove; the last owner always stays."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.orm import Session

from idp_bridge import audit, events, jobs
from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.errors import BridgeError, InvalidState, LastOwner, NotFound, ValidationFailed
from idp_bridge.inputs import MemberBulk
from idp_bridge.models import Identity, Invite, InviteStatus, Member, MemberStatus, Organization, utcnow
from idp_bridge.pagination import Page, paginate, parse_sort
from idp_bridge.services import orgs

MEMBER_SORTS = {
    "created_at": Member.created_at,
    "updated_at": Member.updated_at,
    "identifier": Member.identifier_key,
    "status": Member.status,
    "role": Member.role,
    "name": Member.name,
}
DISABLE_ACCOUNT_JOB = "set_idp_account_enabled"


def get(session: Session, org: Organization, member_id: str) -> Member:
    member = session.get(Member, member_id)
    if member is None or member.org_id != org.id:
        raise NotFound(f"member {member_id} does not exist in {org.slug}")
    return member


def filtered(org: Organization, *, status: str | None = None, role: str | None = None,
             provider: str | None = None, q: str | None = None) -> Select[Member]:
    """The members of org matching the filters (DELETED only when asked for)."""
    stmt = select(Member).where(Member.org_id == org.id)
    if status is not None:
        wanted = [s.strip().upper() for s in status.split(",") if s.strip()]
        bad = [s for s in wanted if s not in MemberStatus.__members__]
        if bad or not wanted:
            raise ValidationFailed({"status": [f"must be among {', '.join(MemberStatus.__members__)}"]})
        stmt = stmt.where(Member.status.in_(wanted))
    else:
        stmt = stmt.where(Member.status != MemberStatus.DELETED)
    if role:
        stmt = stmt.where(Member.role.in_([r.strip() for r in role.split(",") if r.strip()]))
    if provider:
        bound = select(Identity.member_id).where(Identity.org_id == org.id, Identity.provider == provider)
        stmt = stmt.where(or_(Member.provider == provider, Member.id.in_(bound)))
    if q:
        pattern = f"%{q.strip().casefold()}%"
        stmt = stmt.where(or_(Member.identifier_key.like(pattern), func.lower(Member.name).like(pattern),
                              func.lower(Member.email).like(pattern)))
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


def _owner_roles(bridge: Bridge) -> list[str]:
    return [name for name, role in bridge.settings.roles.items() if role.owner]


def _guard_last_owner(session: Session, bridge: Bridge, org: Organization, member: Member) -> None:
    """Refuse to take away the org's only ACTIVE owner."""
    owners = _owner_roles(bridge)
    if member.role not in owners or member.status != MemberStatus.ACTIVE:
        return
    others = session.scalar(select(func.count(Member.id)).where(
        Member.org_id == org.id, Member.role.in_(owners), Member.status == MemberStatus.ACTIVE,
        Member.id != member.id)) or 0
    if others == 0:
        raise LastOwner(f"{member.identifier} is the last active owner of {org.slug}; make another member "
                        "an owner first")


def change_role(session: Session, bridge: Bridge, actor: Actor, org: Organization, member_id: str,
                role: str) -> Member:
    if role not in bridge.settings.roles:
        raise ValidationFailed({"role": [f"unknown role {role!r}; one of {', '.join(bridge.settings.roles)}"]})
    orgs.lock(session, org)
    member = get(session, org, member_id)
    if member.status == MemberStatus.DELETED:
        raise InvalidState(f"member {member.id} was removed", status=member.status)
    if member.role == role:
        return member
    if role not in _owner_roles(bridge):
        _guard_last_owner(session, bridge, org, member)
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


def _account_job(session: Session, org: Organization, member: Member, enabled: bool) -> None:
    """Ask the worker to disable/enable the IdP account idp-bridge bound to this member."""
    jobs.enqueue(session, DISABLE_ACCOUNT_JOB, {"member_id": member.id, "enabled": enabled}, org_id=org.id)


def deactivate(session: Session, bridge: Bridge, actor: Actor, org: Organization, member_id: str,
               *, source: str = "admin") -> Member:
    orgs.lock(session, org)
    member = get(session, org, member_id)
    if member.status != MemberStatus.ACTIVE:
        raise InvalidState(f"member {member.id} is {member.status}; only an ACTIVE member can be deactivated",
                           status=member.status)
    _guard_last_owner(session, bridge, org, member)
    member.status = MemberStatus.DEACTIVATED.value
    member.deactivated_by = source
    if source == "admin":
        _account_job(session, org, member, enabled=False)
    audit.record(session, actor, "member.deactivated", org_id=org.id, target_type="member", target_id=member.id,
                 details={"source": source})
    events.emit(session, org, "member.deactivated", member=member, source=source)
    session.flush()
    return member


def reactivate(session: Session, bridge: Bridge, actor: Actor, org: Organization, member_id: str,
               *, source: str = "admin") -> Member:
    orgs.lock(session, org)
    member = get(session, org, member_id)
    if member.status != MemberStatus.DEACTIVATED:
        raise InvalidState(f"member {member.id} is {member.status}; only a DEACTIVATED member can be reactivated",
                           status=member.status)
    member.status = MemberStatus.ACTIVE.value
    member.deactivated_by = None
    if source == "admin":
        _account_job(session, org, member, enabled=True)
    audit.record(session, actor, "member.reactivated", org_id=org.id, target_type="member", target_id=member.id,
                 details={"source": source})
    events.emit(session, org, "member.reactivated", member=member, source=source)
    session.flush()
    return member


def remove(session: Session, bridge: Bridge, actor: Actor, org: Organization, member_id: str,
           *, source: str = "admin") -> Member:
    """Remove a member: its seat frees, its pending invite is revoked, its identities unbound."""
    orgs.lock(session, org)
    member = get(session, org, member_id)
    if member.status == MemberStatus.DELETED:
        raise InvalidState(f"member {member.id} was already removed", status=member.status)
    _guard_last_owner(session, bridge, org, member)
    now = utcnow()
    invite = session.scalar(select(Invite).where(Invite.member_id == member.id,
                                                 Invite.status == InviteStatus.PENDING))
    if invite is not None:
        invite.status = InviteStatus.REVOKED.value
        invite.revoked_at = now
        if invite.idp_user_id:
            from idp_bridge.services.invites import DEPROVISION_JOB

            jobs.enqueue(session, DEPROVISION_JOB, {"invite_id": invite.id}, org_id=org.id)
    member.status = MemberStatus.DELETED.value
    member.deleted_at = now
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


def bulk(session: Session, bridge: Bridge, actor: Actor, org: Organization, data: MemberBulk) -> list[BulkResult]:
    """Apply one action to many members; each id succeeds or fails on its own (savepoint per id)."""
    if data.action == "change_role" and not data.role:
        raise ValidationFailed({"role": ["is required for change_role"]})
    results: list[BulkResult] = []
    for member_id in dict.fromkeys(data.ids):
        try:
            with session.begin_nested():
                if data.action == "change_role":
                    assert data.role is not None
                    member = change_role(session, bridge, actor, org, member_id, data.role)
                elif data.action == "remove":
                    member = remove(session, bridge, actor, org, member_id)
                elif data.action == "deactivate":
                    member = deactivate(session, bridge, actor, org, member_id)
                else:
                    member = reactivate(session, bridge, actor, org, member_id)
            results.append(BulkResult(member_id, "ok", member))
        except BridgeError as exc:
            results.append(BulkResult(member_id, "error", error=exc))
    return results
