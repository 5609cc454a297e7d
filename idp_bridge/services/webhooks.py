"""Outbound webhook endpoints of an org: register, rotate secrets, read the delivery log, redeliver."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography.fernet import InvalidToken
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp_bridge import audit, jobs
from idp_bridge.audit import Actor
from idp_bridge.destinations import ADDRESS_NOT_ALLOWED, NAME_NOT_RESOLVED, Destinations, Refused
from idp_bridge.errors import InvalidState, NotFound, ValidationFailed, lazy_gettext
from idp_bridge.events import EVENT_TYPES
from idp_bridge.models import Event, Job, Organization, WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from idp_bridge.pagination import Page, Sort, paginate
from idp_bridge.security import LEGACY_WEBHOOK_SECRET_PREFIX, open_webhook_secret, seal, unseal

DELIVER_JOB = "deliver_webhook"
# How long the previous secret keeps signing after a rotation, so receivers can switch over.
ROTATION_GRACE = timedelta(hours=24)
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
# The fixed reasons a failed attempt records: never the receiver's body or headers, never socket or resolver text.
CONNECTION_REFUSED = "connection refused"
TIMEOUT = "timeout"
TLS_ERROR = "tls error"
PROXY_ERROR = "proxy error"
CONNECTION_ERROR = "connection error"
NON_2XX = "non-2xx status"
ENDPOINT_DISABLED = "endpoint disabled"
ALREADY_DELIVERED = "already delivered"
FAILURE_REASONS = frozenset({CONNECTION_REFUSED, TIMEOUT, TLS_ERROR, PROXY_ERROR, CONNECTION_ERROR, NON_2XX,
                             ENDPOINT_DISABLED, ALREADY_DELIVERED, ADDRESS_NOT_ALLOWED, NAME_NOT_RESOLVED})
# What the delivery log shows for an error recorded before the reasons were fixed (it may hold a receiver's body).
UNLISTED_REASON = "failed"


class EndpointInput(BaseModel):
    """What the host sends to register an endpoint."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(default_factory=list)
    enabled: bool = True


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def shown_reason(error: str | None) -> str | None:
    """An attempt's error as the delivery log shows it: one of the fixed reasons."""
    return error if error is None or error in FAILURE_REASONS else UNLISTED_REASON


def _check_event_types(event_types: list[str], errors: dict[str, list[str]]) -> None:
    unknown = [t for t in event_types if t not in EVENT_TYPES]
    if unknown:
        errors["event_types"] = [lazy_gettext("unknown event types %(unknown)s; known: %(known)s",
                                              unknown=", ".join(unknown), known=", ".join(EVENT_TYPES))]


def _check_url(url: str, destinations: Destinations, errors: dict[str, list[str]]) -> None:
    try:
        destinations.check_url(url)
    except Refused as exc:
        errors["url"] = [exc.message]


def validate(data: EndpointInput, destinations: Destinations) -> None:
    """https URLs whose host resolves to public addresses only (see idp_bridge.destinations); known event types."""
    errors: dict[str, list[str]] = {}
    _check_url(data.url.strip(), destinations, errors)
    _check_event_types(data.event_types, errors)
    if errors:
        raise ValidationFailed(errors)


def create(session: Session, actor: Actor, org: Organization, data: EndpointInput,
           secret_key: str, destinations: Destinations) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it with its secret, which the caller sees this once (only sealed at rest)."""
    validate(data, destinations)
    secret = new_secret()
    endpoint = WebhookEndpoint(org_id=org.id, url=data.url.strip(), description=data.description,
                               event_types=list(dict.fromkeys(data.event_types)), enabled=data.enabled,
                               secret=seal(secret_key, secret))
    session.add(endpoint)
    session.flush()
    audit.record(session, actor, "webhook_endpoint.created", org_id=org.id, target_type="webhook_endpoint",
                 target_id=endpoint.id, details={"url": endpoint.url, "event_types": endpoint.event_types})
    return endpoint, secret


def get(session: Session, org: Organization, endpoint_id: str) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.org_id != org.id:
        raise NotFound(lazy_gettext("webhook endpoint %(id)s does not exist in %(org)s", id=endpoint_id,
                                    org=org.slug))
    return endpoint


def listing(session: Session, org: Organization, *, limit: int, cursor: str | None) -> Page[WebhookEndpoint]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.org_id == org.id)
    sort = Sort("created_at", WebhookEndpoint.created_at, False)
    return paginate(session, stmt, sort=sort, id_column=WebhookEndpoint.id,
                    limit=limit, cursor=cursor)


def delete(session: Session, actor: Actor, org: Organization, endpoint_id: str) -> None:
    endpoint = get(session, org, endpoint_id)
    audit.record(session, actor, "webhook_endpoint.deleted", org_id=org.id, target_type="webhook_endpoint",
                 target_id=endpoint.id, details={"url": endpoint.url})
    session.delete(endpoint)


def rotate(session: Session, actor: Actor, org: Organization, endpoint_id: str,
           secret_key: str) -> tuple[WebhookEndpoint, str]:
    """New secret now; the old one keeps signing alongside it for ROTATION_GRACE. Returns the new secret once."""
    endpoint = get(session, org, endpoint_id)
    # The previous secret stays in the form it was stored in (sealed, or a legacy plaintext row sealed now).
    endpoint.previous_secret = _sealed(secret_key, endpoint.secret)
    grace_until = utcnow() + ROTATION_GRACE
    endpoint.previous_secret_expires_at = grace_until
    secret = new_secret()
    endpoint.secret = seal(secret_key, secret)
    audit.record(session, actor, "webhook_endpoint.secret_rotated", org_id=org.id, target_type="webhook_endpoint",
                 target_id=endpoint.id, details={"previous_valid_until": grace_until.isoformat()})
    return endpoint, secret


def _sealed(secret_key: str, stored: str) -> str:
    """A stored secret in sealed form; a legacy plaintext one is sealed."""
    return seal(secret_key, stored) if stored.startswith(LEGACY_WEBHOOK_SECRET_PREFIX) else stored


def signing_secrets(endpoint: WebhookEndpoint, keys: Sequence[str], now: datetime | None = None) -> list[str]:
    """The secrets a delivery is signed with: the current one, plus the previous one during its grace.

    keys: the current secret key, then secret_key_fallbacks (Bridge.secret_keys).
    """
    now = now or utcnow()
    found = [open_webhook_secret(keys[0], endpoint.secret, keys[1:])]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        found.append(open_webhook_secret(keys[0], endpoint.previous_secret, keys[1:]))
    return found


def reseal_secrets(session: Session, keys: Sequence[str]) -> int:
    """Seal with the current key (keys[0]) every webhook secret that is not: plaintext rows from before
    revision 0003, and rows sealed with a key now in secret_key_fallbacks. Returns how many endpoints changed."""
    stmt = select(WebhookEndpoint)
    if len(keys) == 1:
        # Without fallbacks only plaintext rows can need it; no need to open every secret.
        legacy = f"{LEGACY_WEBHOOK_SECRET_PREFIX}%"
        stmt = stmt.where(or_(WebhookEndpoint.secret.like(legacy), WebhookEndpoint.previous_secret.like(legacy)))
    changed = 0
    for endpoint in session.scalars(stmt):
        secret = _resealed(keys, endpoint.secret)
        previous = _resealed(keys, endpoint.previous_secret) if endpoint.previous_secret else None
        if secret != endpoint.secret or previous != endpoint.previous_secret:
            endpoint.secret, endpoint.previous_secret = secret, previous
            changed += 1
    return changed


def _resealed(keys: Sequence[str], stored: str) -> str:
    """The stored secret sealed with keys[0]; unchanged when it already is, or when no key opens it."""
    if stored.startswith(LEGACY_WEBHOOK_SECRET_PREFIX):
        return seal(keys[0], stored)
    try:
        unseal(keys[0], stored)
        return stored
    except InvalidToken:
        pass
    try:
        return seal(keys[0], unseal(keys[0], stored, keys[1:]))
    except InvalidToken:
        return stored  # sealed with a key no longer configured: deliveries report it, nothing to do here


def deliveries(session: Session, org: Organization, endpoint_id: str, *, limit: int,
               cursor: str | None) -> Page[tuple[WebhookDelivery, Event]]:
    """The endpoint's deliveries, newest first."""
    endpoint = get(session, org, endpoint_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    sort = Sort("created_at", WebhookDelivery.created_at, True)
    page = paginate(session, stmt, sort=sort, id_column=WebhookDelivery.id,
                    limit=limit, cursor=cursor)
    events = {e.id: e for e in session.scalars(select(Event).where(Event.id.in_([d.event_id for d in page.items])))}
    return Page([(d, events[d.event_id]) for d in page.items], page.next_cursor)


def attempts_of(session: Session, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    found: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    stmt = select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids)).order_by(
        WebhookAttempt.at, WebhookAttempt.attempt)
    for row in session.scalars(stmt):
        found[row.delivery_id].append(row)
    return found


def schedule(session: Session, delivery: WebhookDelivery, *, org_id: str, manual: bool = False) -> None:
    """Queue the job that sends this delivery (at most one live job per delivery)."""
    key = f"webhook:{delivery.id}"
    live = session.scalar(select(Job).where(Job.dedupe_key == key))
    if live is not None:
        if live.status == jobs.QUEUED and live.run_after > delivery.next_attempt_at:
            live.run_after = delivery.next_attempt_at
        return
    try:
        with session.begin_nested():
            jobs.enqueue(session, DELIVER_JOB, {"delivery_id": delivery.id, "manual": manual}, org_id=org_id,
                         dedupe_key=key, max_attempts=10_000, run_after=delivery.next_attempt_at)
    except IntegrityError:
        pass  # a job for this delivery is already queued or running; it will send it


def redeliver(session: Session, actor: Actor, org: Organization, endpoint_id: str,
              delivery_id: str) -> WebhookDelivery:
    """Send a delivery again now, whatever its past outcome (the host asked for it)."""
    endpoint = get(session, org, endpoint_id)
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise NotFound(lazy_gettext("webhook delivery %(id)s does not exist in %(org)s", id=delivery_id,
                                    org=org.slug))
    if not endpoint.enabled:
        raise InvalidState(lazy_gettext("the endpoint is disabled; enable it before redelivering"),
                           status="disabled")
    delivery.status = PENDING
    delivery.next_attempt_at = utcnow()
    schedule(session, delivery, org_id=org.id, manual=True)
    audit.record(session, actor, "webhook_delivery.redelivered", org_id=org.id, target_type="webhook_delivery",
                 target_id=delivery.id, details={"event_id": delivery.event_id})
    return delivery


class EndpointUpdate(BaseModel):
    """Fields of an endpoint the host may change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str | None = Field(default=None, max_length=2000)
    enabled: bool | None = None
    event_types: list[str] | None = None
    description: str | None = Field(default=None, max_length=500)


def update(session: Session, actor: Actor, org: Organization, endpoint_id: str,
           data: EndpointUpdate, destinations: Destinations) -> WebhookEndpoint:
    """Change an endpoint; a new URL is checked as at registration; enabling it again clears an automatic disable."""
    endpoint = get(session, org, endpoint_id)
    errors: dict[str, list[str]] = {}
    if data.url is not None:
        _check_url(data.url, destinations, errors)
    if data.event_types is not None:
        _check_event_types(data.event_types, errors)
    if errors:
        raise ValidationFailed(errors)
    if data.url is not None and data.url != endpoint.url:
        endpoint.url = data.url
        audit.record(session, actor, "webhook_endpoint.url_changed", org_id=org.id, target_type="webhook_endpoint",
                     target_id=endpoint.id, details={"url": endpoint.url})
    if data.event_types is not None:
        endpoint.event_types = list(dict.fromkeys(data.event_types))
    if data.description is not None:
        endpoint.description = data.description
    if data.enabled is not None:
        set_enabled(session, actor, org, endpoint_id, data.enabled)
    return endpoint


def set_enabled(session: Session, actor: Actor, org: Organization, endpoint_id: str, enabled: bool) -> WebhookEndpoint:
    endpoint = get(session, org, endpoint_id)
    endpoint.enabled = enabled
    if enabled:
        endpoint.disabled_reason = None
        endpoint.failing_since = None
    audit.record(session, actor, "webhook_endpoint.enabled" if enabled else "webhook_endpoint.disabled",
                 org_id=org.id, target_type="webhook_endpoint", target_id=endpoint.id, details={})
    return endpoint
