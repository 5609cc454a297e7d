"""Inbound events arriving together: each is committed before its 202 and stored once, duplicates included."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from sqlalchemy import func, select

from idp_bridge.bridge import Bridge
from idp_bridge.inbox import PROCESS_JOB
from idp_bridge.models import InboundEvent, Job

from .conftest import inbound_count
from .test_keycloak_events import p2_event, signed


def stored(bridge: Bridge, event_id: str) -> bool:
    with bridge.sessions() as session:
        return session.scalar(select(InboundEvent.id).where(InboundEvent.event_id == event_id)) is not None


def test_concurrent_events_are_each_committed_before_their_202_and_stored_once(app: Flask, bridge: Bridge) -> None:
    bodies = [p2_event("access.LOGIN", str(uuid.uuid4())) for _ in range(60)]

    def send(body: bytes) -> tuple[int, bool]:
        status = app.test_client().post("/webhooks/keycloak", data=body, headers=signed(body)).status_code
        # Read on another connection right after the answer: a 202 must already be durable.
        return status, stored(bridge, json.loads(body)["uid"])

    with ThreadPoolExecutor(12) as pool:
        # Every event twice, the copies racing each other.
        results = list(pool.map(send, bodies + bodies))
    assert results == [(202, True)] * len(results)
    assert inbound_count(bridge) == len(bodies)
    with bridge.sessions() as session:
        jobs = session.scalar(select(func.count()).select_from(Job).where(Job.kind == PROCESS_JOB))
    assert jobs == len(bodies)
