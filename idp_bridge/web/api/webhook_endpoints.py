"""Outbound webhook endpoints and their delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from idp_bridge.inputs import parse
from idp_bridge.models import WebhookEndpoint
from idp_bridge.permissions import WEBHOOKS_MANAGE
from idp_bridge.services import webhooks
from idp_bridge.services.webhooks import EndpointInput, EndpointUpdate
from idp_bridge.web.api import Call, operation
from idp_bridge.web.api.params import CURSOR, LIMIT, page_args


class EndpointOut(BaseModel):
    id: str
    org: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime


class IssuedEndpointOut(EndpointOut):
    secret: str


class EndpointList(BaseModel):
    items: list[EndpointOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    success: bool
    manual: bool
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    succeeded_at: datetime | None
    created_at: datetime
    log: list[AttemptOut]


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


def endpoint_out(endpoint: WebhookEndpoint, org_slug: str) -> EndpointOut:
    return EndpointOut(id=endpoint.id, org=org_slug, url=endpoint.url, description=endpoint.description,
                       event_types=endpoint.event_types, enabled=endpoint.enabled,
                       disabled_reason=endpoint.disabled_reason, failing_since=endpoint.failing_since,
                       previous_secret_expires_at=endpoint.previous_secret_expires_at,
                       created_at=endpoint.created_at)


def issued_out(issued: tuple[WebhookEndpoint, str], org_slug: str) -> IssuedEndpointOut:
    endpoint, secret = issued
    return IssuedEndpointOut(**endpoint_out(endpoint, org_slug).model_dump(), secret=secret)


@operation("POST", "/orgs/{org}/webhook-endpoints", summary="Register a webhook endpoint (secret shown once)",
           tag="webhooks", permission=WEBHOOKS_MANAGE, body=EndpointInput, response=IssuedEndpointOut,
           status=201, errors=(422,))
def create_endpoint(call: Call) -> IssuedEndpointOut:
    org = call.must_org()
    data = parse(EndpointInput, call.body)
    return issued_out(webhooks.create(call.session, call.actor, org, data, call.bridge.settings.secret_key,
                                      call.bridge.destinations), org.slug)


@operation("GET", "/orgs/{org}/webhook-endpoints", summary="List webhook endpoints", tag="webhooks",
           permission=WEBHOOKS_MANAGE, response=EndpointList, query=[LIMIT, CURSOR])
def list_endpoints(call: Call) -> EndpointList:
    org = call.must_org()
    page = webhooks.listing(call.session, org, **page_args())  # type: ignore[arg-type]
    return EndpointList(items=[endpoint_out(e, org.slug) for e in page.items], next_cursor=page.next_cursor)


@operation("GET", "/orgs/{org}/webhook-endpoints/{endpoint_id}", summary="Read a webhook endpoint",
           tag="webhooks", permission=WEBHOOKS_MANAGE, response=EndpointOut)
def get_endpoint(call: Call, endpoint_id: str) -> EndpointOut:
    org = call.must_org()
    return endpoint_out(webhooks.get(call.session, org, endpoint_id), org.slug)


@operation("PATCH", "/orgs/{org}/webhook-endpoints/{endpoint_id}",
           summary="Change a webhook endpoint's URL, enable, disable or refilter it", tag="webhooks",
           permission=WEBHOOKS_MANAGE, body=EndpointUpdate, response=EndpointOut, errors=(422,))
def update_endpoint(call: Call, endpoint_id: str) -> EndpointOut:
    org = call.must_org()
    data = parse(EndpointUpdate, call.body)
    return endpoint_out(webhooks.update(call.session, call.actor, org, endpoint_id, data, call.bridge.destinations),
                        org.slug)


@operation("DELETE", "/orgs/{org}/webhook-endpoints/{endpoint_id}", summary="Delete a webhook endpoint",
           tag="webhooks", permission=WEBHOOKS_MANAGE, status=204)
def delete_endpoint(call: Call, endpoint_id: str) -> None:
    webhooks.delete(call.session, call.actor, call.must_org(), endpoint_id)


@operation("POST", "/orgs/{org}/webhook-endpoints/{endpoint_id}/rotate-secret",
           summary="Rotate the signing secret (the old one keeps signing for 24 h)", tag="webhooks",
           permission=WEBHOOKS_MANAGE, response=IssuedEndpointOut)
def rotate_secret(call: Call, endpoint_id: str) -> IssuedEndpointOut:
    org = call.must_org()
    return issued_out(webhooks.rotate(call.session, call.actor, org, endpoint_id, call.bridge.settings.secret_key),
                      org.slug)


@operation("GET", "/orgs/{org}/webhook-endpoints/{endpoint_id}/deliveries", summary="The endpoint's delivery log",
           tag="webhooks", permission=WEBHOOKS_MANAGE, response=DeliveryList, query=[LIMIT, CURSOR])
def list_deliveries(call: Call, endpoint_id: str) -> DeliveryList:
    page = webhooks.deliveries(call.session, call.must_org(), endpoint_id, **page_args())  # type: ignore[arg-type]
    logs = webhooks.attempts_of(call.session, [d.id for d, _ in page.items])
    items = [DeliveryOut(id=d.id, endpoint_id=d.endpoint_id, event_id=d.event_id, event_type=e.type,
                         status=d.status,  # type: ignore[arg-type]
                         attempts=d.attempts, next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                         last_attempt_at=d.last_attempt_at, last_status_code=d.last_status_code,
                         last_error=webhooks.shown_reason(d.last_error), succeeded_at=d.succeeded_at,
                         created_at=d.created_at,
                         log=[AttemptOut(attempt=a.attempt, at=a.at, success=a.success, manual=a.manual,
                                         status_code=a.status_code, error=webhooks.shown_reason(a.error),
                                         duration_ms=a.duration_ms)
                              for a in logs[d.id]])
             for d, e in page.items]
    return DeliveryList(items=items, next_cursor=page.next_cursor)


class RedeliveryOut(BaseModel):
    id: str
    event_id: str
    status: Literal["pending"]


@operation("POST", "/orgs/{org}/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver",
           summary="Send a delivery again now", tag="webhooks", permission=WEBHOOKS_MANAGE, response=RedeliveryOut,
           status=202, errors=(409,))
def redeliver(call: Call, endpoint_id: str, delivery_id: str) -> RedeliveryOut:
    delivery = webhooks.redeliver(call.session, call.actor, call.must_org(), endpoint_id, delivery_id)
    return RedeliveryOut(id=delivery.id, event_id=delivery.event_id, status="pending")
