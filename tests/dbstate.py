"""Helpers that look straight into the database: row counts and direct state changes for tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Event, Invite, InviteLink, Job, Member, MemberStatus, utcnow
from idp_bridge.store.db import transaction

COUNTED = {"invites": Invite, "members": Member, "jobs": Job, "events": Event, "invite_links": InviteLink,
           "audit_events": AuditEvent}


def row_counts(bridge: Bridge) -> dict[str, int]:
    """How many rows each state table holds."""
    with transaction(bridge.sessions) as session:
        return {name: int(session.scalar(select(func.count()).select_from(model)) or 0)
                for name, model in COUNTED.items()}


def audit_actions(bridge: Bridge) -> list[str]:
    with transaction(bridge.sessions) as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.at)))


def make_active(bridge: Bridge, member_id: str, role: str | None = None) -> None:
    """Make a member ACTIVE directly (redemption is not part of the foundation)."""
    values: dict[str, Any] = {"status": MemberStatus.ACTIVE.value}
    if role is not None:
        values["role"] = role
    with transaction(bridge.sessions) as session:
        session.execute(update(Member).where(Member.id == member_id).values(**values))
        session.execute(update(Invite).where(Invite.member_id == member_id).values(status="ACCEPTED",
                                                                                   accepted_at=utcnow()))


def age_invite(bridge: Bridge, invite_id: str, hours: float = 1) -> None:
    """Move an invite's expiry into the past, as if its lifetime had run out."""
    with transaction(bridge.sessions) as session:
        session.execute(update(Invite).where(Invite.id == invite_id)
                        .values(expires_at=utcnow() - timedelta(hours=hours)))


def dump_all_text(bridge: Bridge) -> str:
    """Every value of every table, as one string, to scan for secrets."""
    from idp_bridge.models import Base

    parts: list[str] = []
    with transaction(bridge.sessions) as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)
