"""Reading the audit trail: an organization's events, newest first, filtered and paged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp_bridge.errors import ValidationFailed, lazy_gettext
from idp_bridge.models import ApiKey, AuditEvent, Organization
from idp_bridge.pagination import Page, Sort, paginate

NEWEST_FIRST = Sort("at", AuditEvent.at, descending=True)
# What each kind of actor is called where a person reads the trail.
ACTOR_KINDS = {"member": "Member", "api_key": "API key", "cli": "Command line", "worker": "Background job",
               "invitee": "Invitee", "idp": "Identity provider", "anonymous": "Anonymous"}


@dataclass(frozen=True)
class ShownActor:
    """An audit event's actor for a reader: who (a member's email, an API key's name and prefix), what kind of
    actor, and the stored actor string the "Actor" filter matches."""

    name: str
    kind: str
    stored: str


def search(session: Session, org: Organization, *, action: str | None = None, actor: str | None = None,
           since: str | None = None, limit: int, cursor: str | None) -> Page[AuditEvent]:
    """One page of the organization's audit events; `since` is an ISO 8601 date-time with a time zone."""
    stmt = select(AuditEvent).where(AuditEvent.org_id == org.id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    if since:
        stmt = stmt.where(AuditEvent.at >= _moment(since))
    return paginate(session, stmt, sort=NEWEST_FIRST, id_column=AuditEvent.id, limit=limit, cursor=cursor)


def _moment(since: str) -> datetime:
    try:
        moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed({"since": [lazy_gettext("must be an ISO 8601 date-time")]}) from None
    if moment.tzinfo is None:
        raise ValidationFailed({"since": [lazy_gettext("must include a time zone, e.g. 2026-01-01T00:00:00Z")]})
    return moment


def shown_actors(session: Session, events: Sequence[AuditEvent]) -> dict[str, ShownActor]:
    """Each event's actor, by event id: a console member from the event's own `details.actor` (the member row may
    have changed or gone since), an API key by its name and prefix, anything else by its kind."""
    key_ids = {e.actor.partition(":")[2] for e in events if e.actor.startswith("api_key:")}
    keys = {k.id: k for k in session.scalars(select(ApiKey).where(ApiKey.id.in_(key_ids)))} if key_ids else {}
    return {e.id: _shown(e, keys) for e in events}


def _shown(event: AuditEvent, keys: dict[str, ApiKey]) -> ShownActor:
    kind, _, ident = event.actor.partition(":")
    word = ACTOR_KINDS.get(kind, kind)
    described = (event.details or {}).get("actor")
    if isinstance(described, dict) and described.get("email"):
        return ShownActor(str(described["email"]), word, event.actor)
    if kind == "api_key":
        key = keys.get(ident)
        if key is None:
            return ShownActor(f"deleted key {ident[:8]}", word, event.actor)
        return ShownActor(f"{key.name} ({key.prefix}…)" if key.name else f"{key.prefix}…", word, event.actor)
    return ShownActor(ident or word, word, event.actor)
