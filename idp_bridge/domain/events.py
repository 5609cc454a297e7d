"""The events the host platform receives: their types and the outbox row of each."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any

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
    "member.joined",
    "join_request.created",
)


def event_row(*, event_id: str, org_id: str, org_slug: str, type_: str, sequence: int,
              member: Mapping[str, Any] | None, invite: Mapping[str, Any] | None, now: datetime,
              data: Mapping[str, Any]) -> dict[str, Any]:
    """One event's outbox row; `member` and `invite` are their columns (id, email, identifier, role, status,
    attributes; id, status, provider), `sequence` the member's number for it."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_}")
    body: dict[str, Any] = {"org": org_slug}
    if member is not None:
        body.update(member_id=member["id"], email=member["email"], identifier=member["identifier"],
                    role=member["role"], status=member["status"], attributes=member["attributes"])
    if invite is not None:
        body.update(invite_id=invite["id"], invite_status=invite["status"], provider=invite["provider"])
    elif member is not None:
        body.setdefault("invite_id", None)
    body["sequence"] = sequence
    body.update(data)
    return {"id": event_id, "org_id": org_id, "type": type_, "sequence": sequence,
            "member_id": member["id"] if member is not None else None,
            "invite_id": invite["id"] if invite is not None else None,
            "payload": {"type": type_, "timestamp": _timestamp(now), "data": body},
            "dispatched": False, "created_at": now}


@functools.lru_cache(maxsize=16)
def _timestamp(now: datetime) -> str:
    # A bulk import stamps a thousand events with one `now`: format it once.
    return now.isoformat().replace("+00:00", "Z")
