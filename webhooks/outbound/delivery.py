"""Outbound webhooks: fan events out to endpoints, sign them (Standard Webhooks) and deliver with backoff."""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from requests.utils import get_environ_proxies
from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from idp_bridge import audit, jobs
from idp_bridge.bridge import Bridge
from idp_bridge.metrics import DELIVERIES
from idp_bridge.models import Event, Job, WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from idp_bridge.services.webhooks import (
    ALREADY_DELIVERED,
    DELIVER_JOB,
    ENDPOINT_DISABLED,
    FAILED,
    NON_2XX,
    PENDING,
    SUCCEEDED,
    signing_secrets,
)
from idp_bridge.store.db import read_only, transaction
from idp_bridge.store.group_commit import GroupCommit
from idp_bridge.store.ids import new_id
from idp_bridge.store.sql import table_of
from idp_bridge.worker import JobKind, JobView
from webhooks.outbound.transport import PinnedAdapter, failure_reason

log = logging.getLogger(__name__)

# Deliveries are retried for this long; an endpoint failing without a break for as long is disabled.
RETRY_WINDOW = timedelta(hours=24)
DISABLE_AFTER = timedelta(hours=24)
TIMEOUT = (5.0, 15.0)
FAN_OUT_BATCH = 500
USER_AGENT = "idp-bridge-webhooks/1"


def sign(secrets: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """The webhook-signature header: one v1 signature per active secret, space-separated."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


def body_of(event: Event) -> str:
    return _body(event.payload)


def _body(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def fan_out(bridge: Bridge) -> int:
    """Turn undispatched events into one delivery (and one job) per matching enabled endpoint."""
    total = 0
    for _ in range(100):
        with transaction(bridge.sessions) as session:
            done = _fan_out_batch(session)
        total += done
        if done < FAN_OUT_BATCH:
            break
    return total


def _fan_out_batch(session: Session) -> int:
    """One batch of undispatched events: their deliveries and jobs, written with a few Core statements."""
    events = session.execute(_UNDISPATCHED).all()
    if not events:
        return 0
    endpoints: dict[str, list[tuple[str, list[str] | None]]] = {}
    orgs = sorted({e[1] for e in events})
    for endpoint_id, org_id, event_types in session.execute(_ENABLED_ENDPOINTS, {"orgs": orgs}):
        endpoints.setdefault(org_id, []).append((endpoint_id, event_types))
    now = utcnow()
    deliveries, queued = [], []
    for event_id, org_id, event_type in events:
        for endpoint_id, event_types in endpoints.get(org_id, []):
            if event_types and event_type not in event_types:
                continue
            delivery_id = new_id()
            deliveries.append({"id": delivery_id, "endpoint_id": endpoint_id, "event_id": event_id,
                               "status": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now})
            queued.append({"id": new_id(), "kind": DELIVER_JOB, "payload": {"delivery_id": delivery_id},
                           "org_id": org_id, "dedupe_key": f"webhook:{delivery_id}", "status": jobs.QUEUED,
                           "attempts": 0, "max_attempts": 10_000, "run_after": now, "created_at": now})
    if deliveries:
        session.execute(insert(_deliveries), deliveries)
        session.execute(insert(_jobs), queued)
    session.execute(_DISPATCHED, {"ids": [e[0] for e in events]})
    return len(events)


@dataclass(frozen=True)
class Outgoing:
    """Everything one HTTP attempt needs, read in a short transaction."""

    delivery_id: str
    endpoint_id: str
    event_id: str
    org_id: str
    url: str
    body: str
    secrets: list[str]
    attempt: int
    created_at: datetime


def pooled_http(bridge: Bridge) -> requests.Session:
    """The pooled HTTP session deliveries use: keep-alive to busy receivers, every connection pinned.

    It does not consult the environment on each request (trust_env off): ~/.netrc credentials must never go to
    a host's webhook URL, and proxies (HTTP(S)_PROXY, NO_PROXY) and the CA bundle (REQUESTS_CA_BUNDLE) are
    taken from the environment once per URL (_proxies) and once per process (_verify) instead.
    """
    http = requests.Session()
    http.trust_env = False
    http.headers["User-Agent"] = USER_AGENT
    # Every connection goes to an address the policy checked at connect time (DNS rebinding gains nothing).
    adapter = PinnedAdapter(bridge.destinations, pool_connections=16, pool_maxsize=64)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


class Outbound:
    """This process's delivery machinery: one pooled HTTP session and one writer of successful attempts."""

    def __init__(self, bridge: Bridge, http: requests.Session | None = None) -> None:
        self.bridge = bridge
        self.http = http or pooled_http(bridge)
        self.successes: GroupCommit[_Success] = GroupCommit(bridge.engine, _write_successes,
                                                            name="webhook-success-log")

    def deliver(self, bridge: Bridge, job: JobView) -> None:
        """The delivery job's handler."""
        deliver(self, job)

    def job_kinds(self) -> dict[str, JobKind]:
        """The job kinds of outbound webhooks."""
        return {DELIVER_JOB: JobKind(run=self.deliver, prefetch=prefetch_deliveries)}


@functools.lru_cache(maxsize=1024)
def _proxies(url: str) -> dict[str, str]:
    return get_environ_proxies(url)


@functools.cache
def _verify() -> str | bool:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


_deliveries = table_of(WebhookDelivery)
_endpoints = table_of(WebhookEndpoint)
_events = table_of(Event)
_attempts = table_of(WebhookAttempt)

# The delivery path runs Core statements built once, so each delivery costs a few cached executions rather
# than ORM loads, flushes and bulk-update bookkeeping.
_READ_MANY = (
    select(_deliveries.c.status, _deliveries.c.attempts, _deliveries.c.created_at, _endpoints.c.id,
           _endpoints.c.org_id, _endpoints.c.url, _endpoints.c.enabled, _endpoints.c.secret,
           _endpoints.c.previous_secret, _endpoints.c.previous_secret_expires_at, _events.c.id, _events.c.payload,
           _deliveries.c.id)
    .select_from(_deliveries.join(_endpoints, _endpoints.c.id == _deliveries.c.endpoint_id)
                 .join(_events, _events.c.id == _deliveries.c.event_id))
    .where(_deliveries.c.id.in_(bindparam("ids", expanding=True)))
)
_jobs = table_of(Job)
# Two workers fanning out at once take disjoint events, so no event gets two deliveries per endpoint (on SQLite,
# where SQLAlchemy leaves FOR UPDATE out, the writing transaction alone does that).
_UNDISPATCHED = (select(_events.c.id, _events.c.org_id, _events.c.type).where(_events.c.dispatched.is_(False))
                 .order_by(_events.c.created_at).limit(FAN_OUT_BATCH).with_for_update(skip_locked=True))
_ENABLED_ENDPOINTS = select(_endpoints.c.id, _endpoints.c.org_id, _endpoints.c.event_types).where(
    _endpoints.c.org_id.in_(bindparam("orgs", expanding=True)), _endpoints.c.enabled.is_(True))
_DISPATCHED = update(_events).where(_events.c.id.in_(bindparam("ids", expanding=True))).values(dispatched=True)
_STILL_PENDING = select(_deliveries.c.id).where(_deliveries.c.id.in_(bindparam("ids", expanding=True)),
                                                _deliveries.c.status == PENDING).with_for_update()
_SUCCEED = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("delivery_id"), _deliveries.c.status == PENDING)
    .values(status=SUCCEEDED, succeeded_at=bindparam("now"), last_status_code=bindparam("status_code"),
            last_error=None, attempts=bindparam("attempt"), last_attempt_at=bindparam("now"))
)
_LOG_ATTEMPT = insert(_attempts)
_RECOVERED = (
    update(_endpoints)
    .where(_endpoints.c.id == bindparam("endpoint_id"), _endpoints.c.failing_since.is_not(None))
    .values(failing_since=None)
)
_GIVE_UP = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("delivery_id"), _deliveries.c.status == PENDING)
    .values(status=FAILED, last_error=ENDPOINT_DISABLED)
)


def prefetch_deliveries(session: Session, batch: list[JobView]) -> dict[str, tuple[Any, ...]]:
    """The delivery, endpoint and event of each claimed delivery job, read in one query with the claim."""
    wanted = {job.payload.get("delivery_id") for job in batch}
    rows = {row[-1]: tuple(row) for row in session.execute(_READ_MANY, {"ids": sorted(wanted, key=str)})}
    return {job.id: rows[job.payload["delivery_id"]] for job in batch if job.payload.get("delivery_id") in rows}


def _prepare(bridge: Bridge, delivery_id: str, row: tuple[Any, ...] | None = None) -> Outgoing | None:
    """What the attempt sends, from the prefetched row or, without one, a read of its own."""
    if row is None:
        # Read-only: on SQLite the write lock is taken only to record the outcome, not while reading.
        with read_only(), bridge.engine.begin() as conn:
            found = conn.execute(_READ_MANY, {"ids": [delivery_id]}).first()
        row = tuple(found) if found is not None else None
    if row is None or row[0] != PENDING:
        return None  # already delivered, given up on, or deleted with its endpoint
    (_, attempts, created_at, endpoint_id, org_id, url, enabled, secret, previous, previous_until, event_id,
     payload, _) = row
    if not enabled:
        with bridge.engine.begin() as conn:
            conn.execute(_GIVE_UP, {"delivery_id": delivery_id})
        return None
    secrets = signing_secrets(WebhookEndpoint(secret=secret, previous_secret=previous,
                                              previous_secret_expires_at=previous_until), bridge.secret_keys)
    return Outgoing(delivery_id, endpoint_id, event_id, org_id, url, _body(payload), secrets, attempts + 1,
                    created_at)


def _send(outbound: Outbound, out: Outgoing) -> tuple[int | None, str | None]:
    """POST once, never following a redirect; returns (status code, fixed reason) with reason None on a 2xx."""
    now = utcnow()
    headers = {
        "content-type": "application/json",
        "webhook-id": out.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(out.secrets, out.event_id, now, out.body),
    }
    try:
        resp = outbound.http.post(out.url, data=out.body.encode(), headers=headers, timeout=TIMEOUT,
                                  allow_redirects=False, proxies=_proxies(out.url), verify=_verify())
    except (requests.RequestException, OSError, ValueError) as exc:
        # A fixed reason only: the exception text can hold what an internal service said, or probe results.
        return None, failure_reason(exc)
    if 200 <= resp.status_code < 300:
        return resp.status_code, None
    return resp.status_code, NON_2XX


def deliver(outbound: Outbound, job: JobView) -> None:
    """Send one delivery; on failure retry with backoff until the retry window closes."""
    bridge = outbound.bridge
    out = _prepare(bridge, job.payload["delivery_id"], job.context)
    if out is None:
        return
    started = time.monotonic()
    status_code, error = _send(outbound, out)
    duration_ms = int((time.monotonic() - started) * 1000)
    manual = bool(job.payload.get("manual"))
    if error is None:
        # Returns once committed, with other threads' successes.
        outbound.successes.submit(_Success(out, status_code, duration_ms, manual))
        DELIVERIES.labels("succeeded").inc()
        return
    with transaction(bridge.sessions) as session:
        retry_in = _record_failure(bridge, session, out, status_code, error, duration_ms, manual, utcnow())
    DELIVERIES.labels("failed" if retry_in is None else "retrying").inc()
    if retry_in is not None:
        raise jobs.RetryLater(error, delay=retry_in)


@dataclass(frozen=True)
class _Success:
    out: Outgoing
    status_code: int | None
    duration_ms: int
    manual: bool


def _write_successes(conn: Connection, batch: list[_Success]) -> None:
    # Only the attempt that flips pending to succeeded counts as the success; a late duplicate never does.
    pending = set(conn.scalars(_STILL_PENDING, {"ids": sorted({s.out.delivery_id for s in batch})}))
    now = utcnow()
    flips, attempts = [], []
    for s in batch:
        flipped = s.out.delivery_id in pending
        pending.discard(s.out.delivery_id)
        if flipped:
            flips.append({"delivery_id": s.out.delivery_id, "now": now, "status_code": s.status_code,
                          "attempt": s.out.attempt})
        attempts.append({"id": new_id(), "delivery_id": s.out.delivery_id, "endpoint_id": s.out.endpoint_id,
                         "event_id": s.out.event_id, "attempt": s.out.attempt, "manual": s.manual,
                         "success": flipped, "status_code": s.status_code,
                         "error": None if flipped else ALREADY_DELIVERED, "duration_ms": s.duration_ms,
                         "at": now})
    if flips:
        conn.execute(_SUCCEED, flips)
    conn.execute(_LOG_ATTEMPT, attempts)
    conn.execute(_RECOVERED, [{"endpoint_id": e} for e in sorted({s.out.endpoint_id for s in batch})])


def _record_failure(bridge: Bridge, session: Session, out: Outgoing, status_code: int | None, error: str,
                    duration_ms: int, manual: bool, now: datetime) -> float | None:
    """Log the failed attempt; returns the delay before the next one, or None when giving up."""
    session.add(WebhookAttempt(delivery_id=out.delivery_id, endpoint_id=out.endpoint_id, event_id=out.event_id,
                               attempt=out.attempt, manual=manual, success=False, status_code=status_code,
                               error=error, duration_ms=duration_ms, at=now))
    delivery = session.get(WebhookDelivery, out.delivery_id)
    endpoint = session.get(WebhookEndpoint, out.endpoint_id)
    if delivery is None or endpoint is None or delivery.status != PENDING:
        return None
    delivery.attempts = max(delivery.attempts, out.attempt)
    delivery.last_attempt_at = now
    delivery.last_status_code = status_code
    delivery.last_error = error
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    elif endpoint.enabled and now - endpoint.failing_since >= DISABLE_AFTER:
        endpoint.enabled = False
        endpoint.disabled_reason = f"every delivery failed since {endpoint.failing_since.isoformat()}"
        audit.record(session, audit.WORKER, "webhook_endpoint.disabled", org_id=out.org_id,
                     target_type="webhook_endpoint", target_id=endpoint.id,
                     details={"failing_since": endpoint.failing_since.isoformat(), "last_error": error})
    if not endpoint.enabled or now - out.created_at >= RETRY_WINDOW:
        delivery.status = FAILED
        return None
    s = bridge.settings
    delay = jobs.Backoff(base=s.job_backoff_base_seconds, cap=s.job_backoff_max_seconds).delay(out.attempt)
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    return delay
