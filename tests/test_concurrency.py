"""The seat limit holds under concurrent invite requests (row lock on PostgreSQL, serialized writes on SQLite)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from idp_bridge.bootstrap import make_worker
from idp_bridge.bridge import Bridge
from idp_bridge.models import Invite, Member
from idp_bridge.store.db import transaction
from idp_bridge.worker import Worker
from tests.conftest import RecordingMail
from tests.helpers import make_key, make_org

REQUESTS = 25
LIMIT = 10


def fire_concurrent_invites(app: Flask, bridge: Bridge) -> list[tuple[int, dict[str, Any]]]:
    """Send REQUESTS invite creations at once, each from its own thread, client and DB connection."""
    make_org(bridge, "rush", member_limit=LIMIT)
    key = make_key(bridge, "rush")
    start = threading.Barrier(REQUESTS, timeout=30)

    def one(i: int) -> tuple[int, dict[str, Any]]:
        client = app.test_client()
        start.wait()
        resp = client.post("/api/v1/orgs/rush/invites", json={"identifier": f"p{i}@example.com"},
                           headers={"Authorization": f"Bearer {key}"})
        return resp.status_code, resp.get_json()

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        return list(pool.map(one, range(REQUESTS)))


def assert_exactly_the_limit(bridge: Bridge, results: list[tuple[int, dict[str, Any]]]) -> None:
    created = [body for status, body in results if status == 201]
    refused = [body for status, body in results if status != 201]
    assert len(created) == LIMIT
    assert len(refused) == REQUESTS - LIMIT
    assert {b["code"] for b in refused} == {"seat_limit_reached"}
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Invite)) == LIMIT
        assert session.scalar(select(func.count()).select_from(Member)) == LIMIT


@pytest.mark.postgres
def test_25_concurrent_invites_on_postgresql_create_exactly_10(app: Flask, bridge: Bridge) -> None:
    assert bridge.engine.dialect.name == "postgresql"
    assert_exactly_the_limit(bridge, fire_concurrent_invites(app, bridge))


def test_25_concurrent_invites_create_exactly_10_on_the_configured_database(app: Flask, bridge: Bridge) -> None:
    assert_exactly_the_limit(bridge, fire_concurrent_invites(app, bridge))


def test_concurrent_invites_for_one_person_create_one_invite(app: Flask, bridge: Bridge) -> None:
    make_org(bridge, "dup", member_limit=50)
    key = make_key(bridge, "dup")
    start = threading.Barrier(8, timeout=30)

    def one(_: int) -> int:
        client = app.test_client()
        start.wait()
        return client.post("/api/v1/orgs/dup/invites", json={"identifier": "same@example.com"},
                           headers={"Authorization": f"Bearer {key}"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(one, range(8)))
    assert statuses == [201] + [409] * 7


def test_two_workers_side_by_side_send_each_invitation_exactly_once(app: Flask, bridge: Bridge,
                                                                   mail: RecordingMail) -> None:
    make_org(bridge, "mass", member_limit=100)
    key = make_key(bridge, "mass")
    client = app.test_client()
    for i in range(30):
        resp = client.post("/api/v1/orgs/mass/invites", json={"identifier": f"w{i}@example.com"},
                           headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 201
    workers = [make_worker(bridge, concurrency=3), make_worker(bridge, concurrency=3)]
    start = threading.Barrier(2, timeout=30)

    def run(worker: Worker) -> dict[str, int]:
        start.wait()
        return worker.run_once()

    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(run, workers))
    assert sum(c["done"] for c in counts) == 30
    recipients = [str(m["To"]) for m in mail.sent]
    assert len(recipients) == len(set(recipients)) == 30


def fire_concurrent_scim_creates(app: Flask, bridge: Bridge, user_names: list[str]) -> list[tuple[int, Any]]:
    """POST each userName to /scim/v2/rush/Users at once, each from its own thread, client and DB connection."""
    key = make_key(bridge, "rush", ["scim:provision"])
    start = threading.Barrier(len(user_names), timeout=30)

    def one(user_name: str) -> tuple[int, Any]:
        client = app.test_client()
        start.wait()
        resp = client.post("/scim/v2/rush/Users", headers={"Authorization": f"Bearer {key}"},
                           data=json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                            "userName": user_name, "active": True}),
                           content_type="application/scim+json")
        return resp.status_code, resp.get_json()

    with ThreadPoolExecutor(max_workers=len(user_names)) as pool:
        return list(pool.map(one, user_names))


def assert_scim_creates_stop_at_the_limit(app: Flask, bridge: Bridge) -> None:
    make_org(bridge, "rush", member_limit=LIMIT)
    results = fire_concurrent_scim_creates(app, bridge, [f"p{i}@example.com" for i in range(REQUESTS)])
    assert sorted(status for status, _ in results) == [201] * LIMIT + [409] * (REQUESTS - LIMIT)
    assert all("seats" in body["detail"] for status, body in results if status == 409)
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Invite)) == LIMIT
        assert session.scalar(select(func.count()).select_from(Member)) == LIMIT


@pytest.mark.postgres
def test_25_concurrent_scim_creates_on_postgresql_create_exactly_10(app: Flask, bridge: Bridge) -> None:
    assert bridge.engine.dialect.name == "postgresql"
    assert_scim_creates_stop_at_the_limit(app, bridge)


def test_25_concurrent_scim_creates_create_exactly_10_on_the_configured_database(app: Flask, bridge: Bridge) -> None:
    assert_scim_creates_stop_at_the_limit(app, bridge)


def test_concurrent_scim_creates_of_one_user_name_create_one_member(app: Flask, bridge: Bridge) -> None:
    make_org(bridge, "rush", member_limit=50)
    results = fire_concurrent_scim_creates(app, bridge, ["same@example.com", "SAME@example.com"] * 4)
    assert sorted(status for status, _ in results) == [201] + [409] * 7
    assert {body["scimType"] for status, body in results if status == 409} == {"uniqueness"}
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 1
        assert session.scalar(select(func.count()).select_from(Invite)) == 1
