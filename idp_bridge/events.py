"""Outbound events for the host platform, written to the outbox with the change they report."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from idp_bridge.domain.events import EVENT_TYPES as EVENT_TYPES
from idp_bridge.domain.events import event_row
from idp_bridge.models import Event, Invite, Member, Organization, utcnow
from idp_bridge.store.ids import new_event_id


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
    member_columns = None if member is None else {
        "id": member.id, "email": member.email, "identifier": member.identifier, "role": member.role,
        "status": member.status, "attributes": member.attributes}
    invite_columns = None if invite is None else {"id": invite.id, "status": invite.status,
                                                  "provider": invite.provider}
    return event_row(event_id=new_event_id(), org_id=org.id, org_slug=org.slug, type_=type_, sequence=sequence,
                     member=member_columns, invite=invite_columns, now=utcnow(), data=data)
