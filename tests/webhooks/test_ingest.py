"""Inbound events arriving together: each is committed before its 202 and stored once, duplicates included."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from sqlalchemy import func, select

from idp_bridge import inbox
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


def test_a_batch_with_duplicates_stores_each_event_once_with_one_job(bridge: Bridge) -> None:
    first, second, stored_before = (str(uuid.uuid4()) for _ in range(3))
    with bridge.engine.begin() as conn:
        inbox.write(conn, [inbox.Incoming("keycloak:keycloak", stored_before, '{"n": 0}')])
    batch = [inbox.Incoming("keycloak:keycloak", first, '{"n": 1}', {"content-type": "application/json"}),
             inbox.Incoming("keycloak:keycloak", stored_before, '{"n": 2}'),
             inbox.Incoming("keycloak:keycloak", first, '{"n": 3}'),
             inbox.Incoming("keycloak:keycloak", second, '{"n": 4}')]
    with bridge.engine.begin() as conn:
        inbox.write(conn, batch)
    with bridge.sessions() as session:
        rows = {row.event_id: row for row in session.scalars(select(InboundEvent))}
        payloads = sorted((job.payload["event_id"], job.dedupe_key)
                          for job in session.scalars(select(Job).where(Job.kind == PROCESS_JOB)))
    assert sorted(rows) == sorted([first, second, stored_before])
    # The first copy is the one kept, raw, with its headers.
    assert (rows[first].body, rows[first].headers) == ('{"n": 1}', {"content-type": "application/json"})
    assert rows[stored_before].body == '{"n": 0}'
    assert {row.status for row in rows.values()} == {inbox.RECEIVED}
    assert payloads == sorted([(first, None), (second, None), (stored_before, None)])
