"""Audit trail: who did what to whom, when, from where."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from idp_bridge.models import AuditEvent, utcnow
from idp_bridge.store.ids import new_id

# The actor kind of a person signed in to the console.
MEMBER = "member"


@dataclass(frozen=True)
class Actor:
    """Who acts: an API key, the CLI, an invitee, an IdP, the worker, a member signed in to the console."""

    kind: str
    id: str = ""
    ip: str | None = None
    # A console member's email, recorded with each of their actions (the member row may change or go).
    email: str = ""

    def described(self) -> dict[str, str] | None:
        """The actor as audit details carry it: {"type", "id", "email"} for a console member, else None."""
        if self.kind != MEMBER:
            return None
        return {"type": self.kind, "id": self.id, "email": self.email}

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" if self.id else self.kind


CLI = Actor("cli")
WORKER = Actor("worker")


def record(session: Session, actor: Actor, action: str, *, org_id: str | None = None,
           target_type: str | None = None, target_id: str | None = None,
           details: dict[str, Any] | None = None) -> AuditEvent:
    """Add an audit event to the current unit of work."""
    event = AuditEvent(**entry(actor, action, org_id=org_id, target_type=target_type, target_id=target_id,
                               details=details))
    session.add(event)
    return event


def entry(actor: Actor, action: str, *, org_id: str | None = None, target_type: str | None = None,
          target_id: str | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row of one audit event now, with a new id, for record() or a batched insert."""
    return audit_row(id=new_id(), actor=actor, action=action, org_id=org_id, target_type=target_type,
                     target_id=target_id, details=details, at=utcnow())


def audit_row(*, id: str, actor: Actor, action: str, org_id: str | None, target_type: str | None,
              target_id: str | None, details: dict[str, Any] | None, at: datetime) -> dict[str, Any]:
    """The row of one audit event: the one builder for single writes and bulk imports."""
    described = actor.described()
    if described is not None:
        details = {**(details or {}), "actor": described}
    return {"id": id, "org_id": org_id, "actor": str(actor), "action": action, "target_type": target_type,
            "target_id": target_id, "ip": actor.ip, "at": at, "details": details or {}}
