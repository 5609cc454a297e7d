"""Who may call what: every registered API operation against every kind of caller, and key-management escalation.

The operations come from the registry (`idp_bridge.web.api.OPERATIONS`) after the app is built, so an operation
added later is covered without touching this file.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import select

from idp_bridge import audit
from idp_bridge.bridge import Bridge
from idp_bridge.inputs import (
    ApiKeyCreate,
    BulkInviteBody,
    InviteInput,
    MemberBulk,
    MemberUpdate,
    OrgCreate,
    OrgUpdate,
)
from idp_bridge.models import ApiKey, AuditEvent, Base, WebhookDelivery
from idp_bridge.permissions import ALL_PERMISSIONS, ORGS_MANAGE
from idp_bridge.services import api_keys, orgs
from idp_bridge.services.webhooks import EndpointInput, EndpointUpdate
from idp_bridge.store.db import transaction
from idp_bridge.web.api import OPERATIONS, Operation
from tests.helpers import ORG_PERMISSIONS, make_key, make_org
from webhooks.outbound.delivery import fan_out

PATH_PARAM = re.compile(r"\{(\w+)\}")
PERMISSIONS = sorted(ALL_PERMISSIONS)
REFUSED_BY_AUTH = "refused"
REACHES_HANDLER = "reaches the handler"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    # The matrix fails authentication on purpose hundreds of times from one address; a loopback receiver
    # URL registers only where the deployment allows loopback.
    return {**settings_overrides, "api_auth_failure_rate_limit": "100000/minute",
            "webhook_allow_networks": ["127.0.0.0/8"]}


@dataclass(frozen=True)
class Caller:
    """One kind of caller of the matrix: how it authenticates and what it holds."""

    name: str
    headers: dict[str, str]
    # None: the request does not authenticate at all.
    permissions: frozenset[str] | None
    platform: bool = False
    # The org the key belongs to (None for platform keys and unauthenticated callers).
    org_id: str | None = None
    foreign: bool = False


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def key_id_of(bridge: Bridge, secret: str) -> str:
    with transaction(bridge.sessions) as session:
        key = session.scalars(select(ApiKey).where(ApiKey.prefix == secret[:12])).one()
        return key.id


def make_callers(bridge: Bridge, client: FlaskClient, acme_id: str, other_id: str) -> list[Caller]:
    """Every kind of caller: none, malformed, each single permission, all, another org's, platform, dead keys."""
    platform = make_key(bridge, None)
    revoked = make_key(bridge, "acme", PERMISSIONS)
    assert client.delete(f"/api/v1/orgs/acme/api-keys/{key_id_of(bridge, revoked)}",
                         headers=bearer(platform)).status_code == 204
    rotated = make_key(bridge, "acme", PERMISSIONS)
    assert client.post(f"/api/v1/orgs/acme/api-keys/{key_id_of(bridge, rotated)}/rotate",
                       headers=bearer(platform)).status_code == 201
    callers = [
        Caller("no key", {}, None),
        Caller("malformed key", {"Authorization": "Bearer not-an-idp-bridge-key"}, None),
        Caller("other scheme", {"Authorization": "Basic dXNlcjpwYXNz"}, None),
        Caller("unknown key", bearer("ibk_" + "A" * 43), None),
        Caller("revoked key", bearer(revoked), None),
        Caller("rotated-away key", bearer(rotated), None),
    ]
    callers += [Caller(f"only {p}", bearer(make_key(bridge, "acme", [p])), frozenset({p}), org_id=acme_id)
                for p in PERMISSIONS]
    callers += [
        Caller("all org permissions", bearer(make_key(bridge, "acme", ORG_PERMISSIONS)),
               frozenset(ORG_PERMISSIONS), org_id=acme_id),
        Caller("every permission on an org key", bearer(make_key(bridge, "acme", PERMISSIONS)),
               frozenset(PERMISSIONS), org_id=acme_id),
        Caller("another org's key", bearer(make_key(bridge, "other", PERMISSIONS)), frozenset(PERMISSIONS),
               org_id=other_id, foreign=True),
        Caller("platform key", bearer(platform), frozenset(PERMISSIONS), platform=True),
    ]
    return callers


def expected(op: Operation, caller: Caller) -> tuple[str, int | None]:
    """The documented answer: 401 without a valid key, 403 without the scope, else the handler decides."""
    if caller.permissions is None:
        return REFUSED_BY_AUTH, 401
    if op.platform_only and not caller.platform:
        return REFUSED_BY_AUTH, 403
    if op.permission is not None and op.permission not in caller.permissions:
        return REFUSED_BY_AUTH, 403
    if caller.foreign and "{org}" in op.rule:
        return REFUSED_BY_AUTH, 403
    return REACHES_HANDLER, None


class World:
    """Real objects for path parameters: fresh ones for calls that reach a handler, shared ones otherwise."""

    def __init__(self, bridge: Bridge, client: FlaskClient, platform_headers: dict[str, str]) -> None:
        self.bridge = bridge
        self.client = client
        self.headers = platform_headers
        self.counter = itertools.count()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.client.post(f"/api/v1/orgs/acme{path}", json=body, headers=self.headers)
        assert resp.status_code == 201, resp.get_json()
        out: dict[str, Any] = resp.get_json()
        return out

    def fresh(self, names: list[str]) -> dict[str, str]:
        """Ids of newly made objects for each named path parameter."""
        n = next(self.counter)
        values: dict[str, str] = {"org": "acme"}
        if {"invite_id", "member_id"} & set(names):
            invite = self.post("/invites", {"identifier": f"matrix{n}@example.com"})
            values |= {"invite_id": invite["id"], "member_id": invite["member_id"]}
        if {"endpoint_id", "delivery_id"} & set(names):
            endpoint = self.post("/webhook-endpoints", {"url": f"http://127.0.0.1:9/hook/{n}"})
            values["endpoint_id"] = endpoint["id"]
            if "delivery_id" in names:
                self.post("/invites", {"identifier": f"delivered{n}@example.com"})
                fan_out(self.bridge)
                with transaction(self.bridge.sessions) as session:
                    values["delivery_id"] = session.scalars(
                        select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint["id"])).first() or ""
                assert values["delivery_id"]
        if "key_id" in names:
            # A key without permissions: any caller holding orgs:manage may rotate or delete it.
            with transaction(self.bridge.sessions) as session:
                key, _ = api_keys.create(session, audit.CLI, org=orgs.get(session, "acme"), permissions=[])
                values["key_id"] = key.id
        # A path parameter the matrix cannot make objects for yet still gets a well-formed id: the
        # authorization outcome is checked all the same, the handler then answers 404.
        return {name: values.get(name, str(uuid.uuid4())) for name in {*names, "org"}}


# Example bodies by input model, so calls that reach a handler exercise its happy path; an operation with a
# model not listed here still runs through the matrix, with an empty object as its body.
BODIES: dict[type[BaseModel], Callable[[int, dict[str, str]], dict[str, Any]]] = {
    OrgCreate: lambda n, ids: {"slug": f"matrix-org-{n}", "name": "Matrix"},
    OrgUpdate: lambda n, ids: {"name": f"Acme {n}"},
    ApiKeyCreate: lambda n, ids: {"permissions": ["users:read"]},
    InviteInput: lambda n, ids: {"identifier": f"invitee{n}@example.com"},
    BulkInviteBody: lambda n, ids: {"invites": [f"bulk{n}@example.com"]},
    MemberUpdate: lambda n, ids: {"role": "ADMIN"},
    MemberBulk: lambda n, ids: {"action": "deactivate", "ids": [ids.get("member_id", "none")]},
    EndpointInput: lambda n, ids: {"url": f"http://127.0.0.1:9/new/{n}"},
    EndpointUpdate: lambda n, ids: {"description": f"changed {n}"},
}


def call(client: FlaskClient, op: Operation, values: dict[str, str], headers: dict[str, str], n: int) -> Any:
    url = "/api/v1" + PATH_PARAM.sub(lambda m: values[m.group(1)], op.rule)
    body = BODIES.get(op.body, lambda n, ids: {})(n, values) if op.body is not None else None
    return client.open(url, method=op.method, json=body, headers=headers)


def snapshot(bridge: Bridge) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the audit trail and the rate-limit counters (refusals are counted there)."""
    with transaction(bridge.sessions) as session:
        return {table.name: sorted(tuple(str(v) for v in row) for row in session.execute(select(table)))
                for table in Base.metadata.sorted_tables if table.name not in ("audit_events", "rate_limits")}


def denials(bridge: Bridge) -> list[AuditEvent]:
    with transaction(bridge.sessions) as session:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.denied")))
        session.expunge_all()
        return rows


def test_every_registered_operation_answers_every_kind_of_caller_as_documented(
        app: Flask, bridge: Bridge, client: FlaskClient) -> None:
    acme_id = make_org(bridge, member_limit=100_000)
    other_id = make_org(bridge, "other")
    callers = make_callers(bridge, client, acme_id, other_id)
    platform = next(c for c in callers if c.platform)
    world = World(bridge, client, platform.headers)
    shared = world.fresh(sorted({name for op in OPERATIONS for name in PATH_PARAM.findall(op.rule)}))
    doc = client.get("/openapi.json").get_json()
    registered = {(op.method, "/api/v1" + op.rule) for op in OPERATIONS}
    routed = {(method, re.sub(r"<(\w+)>", r"{\1}", rule.rule)) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/") for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    assert routed == registered, "every API route is a registered operation"

    cells = list(itertools.product(OPERATIONS, callers))
    refused = [(op, caller) for op, caller in cells if expected(op, caller)[0] == REFUSED_BY_AUTH]
    allowed = [(op, caller) for op, caller in cells if expected(op, caller)[0] == REACHES_HANDLER]
    mismatches: list[str] = []

    def check(op: Operation, caller: Caller, values: dict[str, str]) -> None:
        outcome, status = expected(op, caller)
        seen = {event.id for event in denials(bridge)}
        resp = call(client, op, values, caller.headers, next(world.counter))
        new = [event for event in denials(bridge) if event.id not in seen]
        documented = doc["paths"]["/api/v1" + op.rule][op.method.lower()]["responses"]
        where = f"{op.route} as {caller.name}: {resp.status_code} {resp.get_data(as_text=True)[:200]}"
        if str(resp.status_code) not in documented or resp.status_code >= 500:
            mismatches.append(f"undocumented answer: {where}")
        if outcome == REACHES_HANDLER:
            if new:
                mismatches.append(f"refused by authentication although allowed: {where}")
            return
        problem = resp.get_json() if resp.mimetype == "application/problem+json" else {}
        if resp.status_code != status or problem.get("status") != status:
            mismatches.append(f"expected {status}: {where}")
        elif status == 401 and not resp.headers.get("WWW-Authenticate", "").startswith("Bearer"):
            mismatches.append(f"401 without WWW-Authenticate: {where}")
        elif len(new) != 1 or new[0].org_id != caller.org_id or new[0].target_id != op.route:
            mismatches.append(f"expected one denial, in the caller's own trail: {where}")

    before = snapshot(bridge)
    for op, caller in refused:
        check(op, caller, shared)
    assert snapshot(bridge) == before, "refused calls change nothing but the audit trail"
    for op, caller in allowed:
        check(op, caller, world.fresh(PATH_PARAM.findall(op.rule)))
    assert not mismatches, "\n".join(mismatches)
    covered = {(op.method, "/api/v1" + op.rule) for op, _ in refused + allowed}
    assert covered == registered and len(cells) == len(OPERATIONS) * len(callers)
    assert len(OPERATIONS) >= 25


def test_another_orgs_key_gets_the_same_answer_as_for_an_org_that_does_not_exist(
        bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    make_org(bridge, "other")
    stranger = bearer(make_key(bridge, "other", PERMISSIONS))
    values = {name: "00000000-0000-0000-0000-000000000000" for op in OPERATIONS
              for name in PATH_PARAM.findall(op.rule)}
    org_ops = [op for op in OPERATIONS if "{org}" in op.rule]
    assert org_ops
    for n, op in enumerate(org_ops):
        real = call(client, op, {**values, "org": "acme"}, stranger, n)
        ghost = call(client, op, {**values, "org": "ghost"}, stranger, n)
        assert real.status_code == ghost.status_code == 403, op.route
        # Every problem names its own request; everything else must be the same bytes.
        real_body, ghost_body = real.get_json(), ghost.get_json()
        assert real_body.pop("request_id") != ghost_body.pop("request_id"), op.route
        assert real_body == ghost_body, op.route


SUBSETS = st.frozensets(st.sampled_from(PERMISSIONS))


def attempt(bridge: Bridge, client: FlaskClient, caller: frozenset[str], target: frozenset[str], *,
            platform: bool, verb: str) -> None:
    """One key acts on another; it succeeds iff the target's permissions are the caller's, or it is a platform key."""
    # The operations need orgs:manage themselves; the rule under test is about everything else.
    held = caller | {ORGS_MANAGE}
    caller_key = make_key(bridge, None if platform else "acme", sorted(held))
    with transaction(bridge.sessions) as session:
        target_row, target_key = api_keys.create(session, audit.CLI, org=orgs.get(session, "acme"),
                                                 permissions=sorted(target))
        target_id = target_row.id
    allowed = platform or target <= held
    path = f"/api/v1/orgs/acme/api-keys/{target_id}" + ("/rotate" if verb == "rotate" else "")
    resp = client.open(path, method="POST" if verb == "rotate" else "DELETE", headers=bearer(caller_key))
    still_works = client.get("/api/v1/orgs/acme", headers=bearer(target_key)).status_code == 200
    with transaction(bridge.sessions) as session:
        acted = session.scalars(select(AuditEvent.action).where(
            AuditEvent.target_id == target_id, AuditEvent.action.in_(["api_key.rotated", "api_key.deleted"]))
        ).all()
    case = f"{verb} {sorted(target)} by {'platform' if platform else sorted(held)}"
    if not allowed:
        problem = resp.get_json()
        assert resp.status_code == 403 and resp.mimetype == "application/problem+json", case
        assert problem["missing_permissions"] == sorted(target - held), case
        assert all(p in problem["detail"] for p in problem["missing_permissions"]), case
        assert still_works and acted == [], case
        return
    assert resp.status_code == (201 if verb == "rotate" else 204), (case, resp.get_json())
    assert not still_works and len(acted) == 1, case
    if verb == "rotate":
        issued = resp.get_json()
        # The new key holds exactly what the old one held, never what the caller holds besides.
        assert set(issued["permissions"]) == target, case
        with transaction(bridge.sessions) as session:
            new = session.get(ApiKey, issued["id"])
            assert new is not None and set(new.permissions) == target and new.org_id is not None, case
        assert client.get("/api/v1/orgs/acme", headers=bearer(issued["key"])).status_code == 200, case


def test_a_key_rotates_or_deletes_only_keys_whose_permissions_it_holds(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, member_limit=100_000)

    @settings(max_examples=8, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(family=st.lists(SUBSETS, min_size=3, max_size=4, unique=True))
    # The reported case: a key holding only orgs:manage rotated a key with users:*, webhooks and audit.
    @example(family=[frozenset(), frozenset(PERMISSIONS) - {ORGS_MANAGE}])
    def run(family: list[frozenset[str]]) -> None:
        for caller, target in itertools.product(family, family):
            for verb in ("rotate", "delete"):
                attempt(bridge, client, caller, target, platform=False, verb=verb)
        for target in family:
            for verb in ("rotate", "delete"):
                attempt(bridge, client, frozenset(), target, platform=True, verb=verb)

    run()
