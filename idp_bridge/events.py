"""Outbound events for the host platform, written to the outbox with the change they report."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from idp_bridge.models import Event, Invite, Member, Organization, utcnow
from idp_bridge.store.ids import new_event_id

EVENT_TYPES = (
    "invite.created",
    "invite.resent",
    "invite.revoked",
    "invite.expired",
    "invite.accepted",
    "invite.redeem_rejected",
    "invite.provisioning_failed",
    "member.activated",
    "member.role_changed",
    "member.deactivated",
    "member.reactivated",
    "member.removed",
)


def emit(session: Session, org: Organization, type_: str, *, member: Member | None = None,
         invite: Invite | None = None, **data: Any) -> Event:
    """Write one event; members carry a per-member sequence so receivers can order them."""
    sequence = 0
    if member is not None:
        member.event_seq = (member.event_seq or 0) + 1
        sequence = member.event_seq
    event = Event(**build(org, type_, sequence, member=member, invite=invite, **data))
    session.add(event)
    return event


def build(org: Organization, type_: str, sequence: int, *, member: Member | None = None,
          invite: Invite | None = None, **data: Any) -> dict[str, Any]:
    """The outbox row of one event, for emit() or a batched insert; `sequence` is the member's next number.

    A caller writing rows itself also stores the member's last sequence number (emit() does both).
    """
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_}")
    now = utcnow()
    body_data: dict[str, Any] = {"org": org.slug}
    if member is not None:
        body_data.update(member_id=member.id, email=member.email, identifier=member.identifier,
                         role=member.role, status=member.status, attributes=member.attributes)
    if invite is not None:
        body_data.update(invite_id=invite.id, invite_status=invite.status, provider=invite.provider)
    elif member is not None:
        body_data.setdefault("invite_id", None)
    body_data["sequence"] = sequence
    body_data.update(data)
    return {"id": new_event_id(), "org_id": org.id, "type": type_, "sequence": sequence,
            "member_id": member.id if member is not None else None,
            "invite_id": invite.id if invite is not None else None,
            "payload": {"type": type_, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": body_data},
            "dispatched": False, "created_at": now}
