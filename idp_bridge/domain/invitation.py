"""A new invitation's rows, and the seat rule: the same for one invite and for each row of a bulk import."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from idp_bridge.domain.states import InviteStatus, MemberStatus

# Plain strings: new_invitation() runs once per row of a bulk import, where enum lookups add up.
_INVITED, _PENDING = MemberStatus.INVITED.value, InviteStatus.PENDING.value


def seats_missing(*, member_limit: int, used: int, needed: int) -> int:
    """How many more seats than are free `needed` new members take; 0 when they fit."""
    return max(0, used + needed - member_limit)


def new_invitation(*, member_id: str, invite_id: str, org_id: str, identifier: str, key: str, email: str | None,
                   notification_email: str | None, name: str | None, role: str, provider: str,
                   attributes: dict[str, Any], tenant_id: str | None, hosted_domain: str | None,
                   keycloak_idp: str | None, ttl_hours: int, expires_at: datetime, created_by: str,
                   send_email: bool, code_hash: str | None, provisioning_state: str,
                   now: datetime, inviter: dict[str, Any] | None = None,
                   locale: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The INVITED member's row and its PENDING invite's row; the member's first event is `invite.created` (1)."""
    member = {"id": member_id, "org_id": org_id, "identifier": identifier, "identifier_key": key, "email": email,
              "name": name, "role": role, "status": _INVITED, "provider": provider,
              "attributes": attributes, "event_seq": 1, "created_at": now, "updated_at": now}
    invite = {"id": invite_id, "org_id": org_id, "member_id": member_id, "identifier": identifier,
              "identifier_key": key, "notification_email": notification_email, "provider": provider,
              "tenant_id": tenant_id, "hosted_domain": hosted_domain, "keycloak_idp": keycloak_idp, "role": role,
              "name": name, "attributes": attributes, "status": _PENDING,
              "expires_at": expires_at, "ttl_hours": ttl_hours, "created_by": created_by, "send_email": send_email,
              "send_count": 1 if send_email else 0, "last_sent_at": now if send_email else None,
              "code_hash": code_hash, "provisioning_state": provisioning_state, "created_at": now,
              "updated_at": now, "inviter": inviter, "locale": locale}
    return member, invite
