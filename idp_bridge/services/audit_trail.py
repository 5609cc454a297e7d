"""Reading the audit trail: an organization's events, newest first, filtered and paged."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp_bridge.errors import ValidationFailed
from idp_bridge.models import AuditEvent, Organization
from idp_bridge.pagination import Page, Sort, paginate

NEWEST_FIRST = Sort("at", AuditEvent.at, descending=True)


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
        raise ValidationFailed({"since": ["must be an ISO 8601 date-time"]}) from None
    if moment.tzinfo is None:
        raise ValidationFailed({"since": ["must include a time zone, e.g. 2026-01-01T00:00:00Z"]})
    return moment
