"""Keycloak Organizations: ACTIVE members with a Keycloak account join the org's organization, removed ones leave."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.jobs import FAILED
from idp_bridge.models import AuditEvent, Invite, Member
from idp_bridge.store.db import transaction
from idp_bridge.worker import Worker
from tests.fakes import FaultPlan
from tests.fakes.oidc import FakeOP
from tests.helpers import ORG_PERMISSIONS, Api, make_key, make_org

from .conftest import ServedKeycloak, drain

WEBHOOK_SECRET = "kc-webhook-secret"
ALIAS = "acme-corp"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], keycloak: ServedKeycloak) -> dict[str, Any]:
    settings_overrides["providers"]["keycloak"] |= {"organizations": True, "webhook_secret": WEBHOOK_SECRET,
                                                    # A dropped connection is an immediate failure.
                                                    "timeout_seconds": 2.0}
    return settings_overrides


@pytest.fixture
def organization(keycloak: ServedKeycloak) -> str:
    keycloak.add_organization("Acme Corporation", alias=ALIAS, domains=["acme.example"])
    # Another organization whose name contains the alias: resolution must pick by exact alias.
    keycloak.add_organization("Acme Corp Labs", alias=f"{ALIAS}-labs")
    return next(i for i, o in keycloak.organizations.items() if o["alias"] == ALIAS)


def org_api(bridge: Bridge, client: FlaskClient, **org: Any) -> Api:
    make_org(bridge, "acme", member_limit=1000, **org)
    return Api(client, make_key(bridge, "acme", [*ORG_PERMISSIONS, "orgs:manage"]))


def login_event(user_id: str) -> bytes:
    """A p2-inc keycloak-events LOGIN of this account."""
    return json.dumps({"time": int(time.time() * 1000), "realmId": "acme", "uid": str(uuid.uuid4()),
                       "type": "access.LOGIN",
                       "authDetails": {"realmId": "acme", "clientId": "idp-bridge", "userId": user_id},
                       "details": {}}).encode()


def log_in(client: FlaskClient, user_id: str) -> None:
    body = login_event(user_id)
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    resp = client.post("/webhooks/keycloak", data=body,
                       headers={"Content-Type": "application/json", "X-Keycloak-Signature": signature})
    assert resp.status_code == 202


def account_of(bridge: Bridge, invite_id: str) -> str:
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, invite_id)
        assert invite is not None and invite.idp_user_id is not None
        return invite.idp_user_id


def active_accounts(bridge: Bridge) -> set[str]:
    """The Keycloak accounts of the org's ACTIVE members."""
    with transaction(bridge.sessions) as session:
        rows = session.execute(select(Invite.idp_user_id).join(Member, Member.id == Invite.member_id)
                               .where(Member.status == "ACTIVE", Invite.idp_user_id.is_not(None)))
        return {str(user_id) for (user_id,) in rows}


def failed_jobs(bridge: Bridge) -> list[str]:
    from idp_bridge.models import Job

    with transaction(bridge.sessions) as session:
        return [f"{j.kind}: {j.last_error}" for j in session.scalars(select(Job).where(Job.status == FAILED))]


def test_an_activated_member_joins_the_organization_named_by_alias_and_a_removed_one_leaves(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: ServedKeycloak, organization: str) -> None:
    api = org_api(bridge, client, keycloak_organization=ALIAS)
    assert api.get("").get_json()["keycloak_organization"] == ALIAS
    ada, bob = api.invite("ada@example.com", provider="keycloak"), api.invite("bob@example.com", provider="keycloak")
    drain(bridge, worker)
    assert keycloak.members_of(organization) == []  # invited is not yet a member

    log_in(client, account_of(bridge, ada["id"]))
    log_in(client, account_of(bridge, bob["id"]))
    drain(bridge, worker)
    assert sorted(keycloak.members_of(organization)) == sorted([account_of(bridge, ada["id"]),
                                                                account_of(bridge, bob["id"])])
    # The alias was looked up in the organization listing; the other organization took nobody.
    searches = keycloak.calls["GET /organizations"]
    assert searches >= 1
    other = next(i for i in keycloak.organizations if i != organization)
    assert keycloak.members_of(other) == []

    assert api.delete(f"/members/{ada['member_id']}").status_code == 200
    drain(bridge, worker)
    assert keycloak.members_of(organization) == [account_of(bridge, bob["id"])]
    assert keycloak.calls["GET /organizations"] == searches  # resolved ids are kept
    with transaction(bridge.sessions) as session:
        actions = sorted(session.scalars(select(AuditEvent.action)
                                         .where(AuditEvent.action.like("member.idp_organization_%"))))
    assert actions == ["member.idp_organization_added"] * 2 + ["member.idp_organization_removed"]


def test_the_organization_may_be_named_by_id_and_an_existing_membership_counts_as_done(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: ServedKeycloak, organization: str) -> None:
    api = org_api(bridge, client, keycloak_organization=organization)
    existing = keycloak.add_user("cy", email="cy@example.com")
    keycloak.organization_members[organization].append(existing)
    cy = api.invite("cy@example.com", provider="keycloak")
    drain(bridge, worker)
    log_in(client, existing)
    drain(bridge, worker)
    assert keycloak.members_of(organization) == [existing]
    assert keycloak.calls["POST /organizations/{id}/members"] == 1
    assert keycloak.calls["GET /organizations"] == 0  # an id needs no search
    with transaction(bridge.sessions) as session:
        outcomes = list(session.scalars(select(AuditEvent.details)
                                        .where(AuditEvent.action == "member.idp_organization_added")))
    assert [o["outcome"] for o in outcomes] == ["already"]
    assert api.get(f"/members/{cy['member_id']}").get_json()["status"] == "ACTIVE"


def test_removing_an_account_that_already_left_the_organization_counts_as_done(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: ServedKeycloak, organization: str) -> None:
    api = org_api(bridge, client, keycloak_organization=ALIAS)
    dee = api.invite("dee@example.com", provider="keycloak")
    drain(bridge, worker)
    log_in(client, account_of(bridge, dee["id"]))
    drain(bridge, worker)
    keycloak.organization_members[organization].clear()  # an admin took her out in Keycloak
    assert api.delete(f"/members/{dee['member_id']}").status_code == 200
    drain(bridge, worker)
    assert keycloak.members_of(organization) == []
    assert failed_jobs(bridge) == []
    with transaction(bridge.sessions) as session:
        removed = session.scalar(select(AuditEvent.details).where(
            AuditEvent.action == "member.idp_organization_removed"))
    assert removed is not None and removed["outcome"] == "not_member"


def test_without_keycloak_organization_no_job_is_written_and_nothing_is_called(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: ServedKeycloak, organization: str) -> None:
    api = org_api(bridge, client)
    eve = api.invite("eve@example.com", provider="keycloak")
    drain(bridge, worker)
    log_in(client, account_of(bridge, eve["id"]))
    drain(bridge, worker)
    assert api.get(f"/members/{eve['member_id']}").get_json()["status"] == "ACTIVE"
    assert not any(key.startswith(("GET /organizations", "POST /organizations")) for key in keycloak.calls)


def test_an_unknown_organization_alias_fails_the_job_and_says_why(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: ServedKeycloak, organization: str) -> None:
    api = org_api(bridge, client, keycloak_organization="no-such-org")
    fay = api.invite("fay@example.com", provider="keycloak")
    drain(bridge, worker)
    log_in(client, account_of(bridge, fay["id"]))
    drain(bridge, worker)
    assert failed_jobs(bridge) == [
        "sync_idp_organization: Keycloak has no organization with the alias or id 'no-such-org'"]


def test_keycloak_organization_is_validated_and_cleared_with_null(
        bridge: Bridge, client: FlaskClient, keycloak: ServedKeycloak) -> None:
    api = org_api(bridge, client)
    for bad in ("", "two\nlines", "x" * 256):
        resp = api.patch("", {"keycloak_organization": bad})
        assert resp.status_code == 422, bad
        assert "keycloak_organization" in resp.get_json()["errors"]
    assert api.patch("", {"keycloak_organization": ALIAS}).get_json()["keycloak_organization"] == ALIAS
    assert api.patch("", {"keycloak_organization": None}).get_json()["keycloak_organization"] is None


def test_keycloak_organization_needs_a_provider_with_organizations_turned_on(
        settings_overrides: dict[str, Any], keycloak: ServedKeycloak) -> None:
    from idp_bridge.bootstrap import build, create_app
    from idp_bridge.settings import load_settings

    settings_overrides["providers"]["keycloak"]["organizations"] = False
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    try:
        client = create_app(bridge=bridge).test_client()
        api = org_api(bridge, client)
        resp = api.patch("", {"keycloak_organization": ALIAS})
        assert resp.status_code == 422
        assert "organizations = true" in resp.get_json()["errors"]["keycloak_organization"][0]
        assert api.get("").get_json()["keycloak_organization"] is None
    finally:
        bridge.close()


def test_a_member_redeeming_with_their_keycloak_account_joins_the_organization(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: ServedKeycloak, organization: str,
        http: responses.RequestsMock) -> None:
    # Login goes to an OpenID Provider faked through `responses` at the realm's issuer; the admin API stays the
    # served fake (its token request passes through).
    op = FakeOP(f"{keycloak.served_url}/realms/acme", client_id="idp-bridge", client_secret="kc-secret",
                base="https://kc-login.test", discovery_path=f"{keycloak.served_url}/realms/acme").install(http)
    api = org_api(bridge, client, keycloak_organization=ALIAS, redirect_url="https://app.test/welcome")
    gus = api.invite("gus@example.com", provider="keycloak")
    drain(bridge, worker)
    user_id = account_of(bridge, gus["id"])
    token = urlsplit(gus["link"]).path.rsplit("/", 1)[1]
    started = client.get(f"/invite/{token}/login")
    assert started.status_code == 303
    params = op.authorize(str(started.headers["Location"]),
                          {"sub": user_id, "email": "gus@example.com", "email_verified": True})
    assert client.get("/auth/callback/keycloak", query_string=params).status_code in (302, 303)
    assert api.get(f"/members/{gus['member_id']}").get_json()["status"] == "ACTIVE"
    drain(bridge, worker)
    assert keycloak.members_of(organization) == [user_id]
    assert api.post("/members/bulk", {"action": "remove", "ids": [gus["member_id"]]}).status_code == 200
    drain(bridge, worker)
    assert keycloak.members_of(organization) == []


@pytest.mark.parametrize("seed", [16, 1616])
def test_under_thirty_percent_failures_the_organization_ends_with_exactly_the_active_members(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: ServedKeycloak, organization: str,
        seed: int) -> None:
    api = org_api(bridge, client, keycloak_organization=ALIAS)
    people = [api.invite(f"p{i}@example.com", provider="keycloak") for i in range(14)]
    drain(bridge, worker)
    accounts = {p["id"]: account_of(bridge, p["id"]) for p in people}
    # From now on 30 % of Keycloak's answers fail: 503s, connections dropped without an answer, and adds or
    # removals that happen but answer 503 (the retry then meets 409 or 404).
    keycloak.faults = FaultPlan(p_503=0.12, p_timeout=0.10, hang_s=0.0, p_commit_then_fail=0.08, seed=seed)
    rng = random.Random(seed)
    activated = people[:11]
    for person in activated:
        log_in(client, accounts[person["id"]])
    # Some are removed before the worker ever ran their activation's job, some after.
    removed_early = rng.sample(activated, 3)
    for person in removed_early:
        removal = api.delete(f"/members/{person['member_id']}")
        assert removal.status_code == 200
    drain(bridge, worker, time_limit=120)
    rest = [p for p in activated if p not in removed_early]
    removed_late = rng.sample(rest, 3)
    assert api.post("/members/bulk", {"action": "remove",
                                      "ids": [p["member_id"] for p in removed_late]}).status_code == 200
    revoked = people[11]
    assert api.post(f"/invites/{revoked['id']}/revoke").status_code == 200
    drain(bridge, worker, time_limit=120)

    assert keycloak.faults.injected, "the fault plan never fired"
    assert failed_jobs(bridge) == []
    members = keycloak.members_of(organization)
    assert len(members) == len(set(members))
    expected = {accounts[p["id"]] for p in rest if p not in removed_late}
    assert set(members) == expected == active_accounts(bridge)
    assert len(expected) == 5
