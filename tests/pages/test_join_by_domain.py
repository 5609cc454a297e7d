"""Join by domain (SPEC §10) through the real callback against faked OPs: who joins, who asks, who is refused."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Event, Identity, JoinRequest, Member
from idp_bridge.store.db import transaction
from tests.dnsserver import LoopbackDNS
from tests.fakes.oidc import FakeOP
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import MS, OTHER_TENANT, PERSONAL, REDIRECT, TENANT, OPs, finish

EVERYTHING = ["orgs:manage", "users:read", "users:invite", "users:edit", "users:delete", "audit:read"]


def verified_org(bridge: Bridge, client: FlaskClient, dns: LoopbackDNS, *, join: str = "auto",
                 domain: str = "contoso.com", **settings: Any) -> Api:
    """An org that verified `domain` through the DNS challenge and takes people by domain as `join` says."""
    make_org(bridge, "acme", redirect_url=REDIRECT, **settings)
    api = Api(client, make_key(bridge, "acme", EVERYTHING))
    body = api.post("/domains", {"domain": domain}).get_json()
    dns.txt[body["challenge"]["name"]] = [body["challenge"]["value"]]
    assert api.post(f"/domains/{body['id']}/verify").status_code == 200
    assert api.patch("", {"domain_join": join}).status_code == 200
    return api


def join(client: FlaskClient, op: FakeOP, provider: str, claims: dict[str, Any], *, again: bool = False) -> Any:
    resp = client.get(f"/join/acme/login?provider={provider}" + ("&again=1" if again else ""))
    assert resp.status_code == 303, resp.get_data(as_text=True)
    return finish(client, provider, op.authorize(str(resp.headers["Location"]), claims))


def oidc_claims(email: str = "alice@contoso.com", **over: Any) -> dict[str, Any]:
    return {"sub": "alice-1", "email": email, "email_verified": True, "name": "Alice", **over}


def entra_claims(tid: str, **over: Any) -> dict[str, Any]:
    return {"iss": f"{MS}/{tid}/v2.0", "tid": tid, "oid": "oid-alice", "sub": "pairwise-sub",
            "email": "alice@contoso.com", "preferred_username": "alice@contoso.com", **over}


def counts(bridge: Bridge) -> dict[str, int]:
    """What a refused join must leave untouched."""
    with transaction(bridge.sessions) as session:
        return {model.__name__: int(session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (Member, Identity, JoinRequest, Event)}


def rejections(bridge: Bridge) -> list[str]:
    with transaction(bridge.sessions) as session:
        return [a.details["reason"] for a in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "join.rejected").order_by(AuditEvent.at))]


def event_types(bridge: Bridge) -> list[str]:
    with transaction(bridge.sessions) as session:
        return list(session.scalars(select(Event.type).order_by(Event.created_at)))


def test_a_verified_address_on_a_verified_domain_joins_as_an_active_member(
        ops: OPs, bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS) -> None:
    api = verified_org(bridge, client, dns_server)

    resp = join(client, ops.oidc, "oidc", oidc_claims("Alice@Contoso.COM"))

    assert resp.status_code == 303
    assert resp.headers["Location"] == REDIRECT
    (member,) = api.get("/members").get_json()["items"]
    assert (member["email"], member["status"], member["role"], member["name"]) == (
        "Alice@Contoso.COM", "ACTIVE", "MEMBER", "Alice")
    assert event_types(bridge) == ["member.joined"]
    with transaction(bridge.sessions) as session:
        (identity,) = session.scalars(select(Identity))
        assert (identity.member_id, identity.subject) == (member["id"], "alice-1")

    # Coming back through the join page is just a sign-in: no second membership.
    again = join(client, ops.oidc, "oidc", oidc_claims("Alice@Contoso.COM"))
    assert again.status_code == 303
    assert len(api.get("/members").get_json()["items"]) == 1
    assert event_types(bridge) == ["member.joined"]


def test_the_join_page_offers_each_allowed_provider_and_goes_straight_to_a_single_one(
        ops: OPs, bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS) -> None:
    api = verified_org(bridge, client, dns_server)
    page = client.get("/join/acme")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Join Acme" in text
    for label in ("Sign in with Google", "Sign in with Microsoft", "Sign in with Keycloak"):
        assert label in text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"

    api.patch("", {"allowed_providers": ["google"]})
    straight = client.get("/join/acme/login")
    assert straight.status_code == 303
    assert straight.headers["Location"].startswith("https://accounts.google.com/")
    assert client.get("/join/acme/login?provider=oidc").status_code == 400


@pytest.mark.parametrize(("claims", "reason"), [
    (oidc_claims(email_verified=False), "email_not_verified"),
    (oidc_claims(email_verified="false"), "email_not_verified"),
    (oidc_claims(email="alice@fabrikam.com"), "domain_not_verified"),
    (oidc_claims(email="alice@eu.contoso.com"), "domain_not_verified"),
    (oidc_claims(email=None), "no_email"),
])
def test_a_login_that_does_not_qualify_stores_nothing_but_an_audit_event(
        ops: OPs, bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS, claims: dict[str, Any],
        reason: str) -> None:
    verified_org(bridge, client, dns_server)
    before = counts(bridge)

    resp = join(client, ops.oidc, "oidc", claims)

    assert resp.status_code == 403
    assert "Use another account" in resp.get_data(as_text=True)
    assert counts(bridge) == before
    assert rejections(bridge) == [reason]


def test_an_entra_token_of_another_tenant_with_a_matching_email_does_not_join(
        ops: OPs, bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS) -> None:
    verified_org(bridge, client, dns_server)
    before = counts(bridge)

    resp = join(client, ops.entra, "entra", entra_claims(OTHER_TENANT))

    assert resp.status_code == 403
    assert "not verified" in resp.get_data(as_text=True)
    assert counts(bridge) == before
    assert rejections(bridge) == ["email_not_verified"]


def test_an_entra_email_counts_with_xms_edov_true(ops: OPs, bridge: Bridge, client: FlaskClient,
                                                  dns_server: LoopbackDNS) -> None:
    api = verified_org(bridge, client, dns_server)

    resp = join(client, ops.entra, "entra", entra_claims(TENANT, xms_edov=True))

    assert resp.status_code == 303
    (member,) = api.get("/members").get_json()["items"]
    assert member["status"] == "ACTIVE"
    with transaction(bridge.sessions) as session:
        (identity,) = session.scalars(select(Identity))
        assert (identity.subject, identity.tenant_id) == ("oid-alice", TENANT)


def test_a_personal_microsoft_account_is_refused_by_a_work_accounts_provider(
        ops: OPs, bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS) -> None:
    verified_org(bridge, client, dns_server)

    resp = join(client, ops.entra, "entra", entra_claims(PERSONAL))

    assert resp.status_code == 403
    assert rejections(bridge) == ["personal_account"]


def test_a_provider_the_org_does_not_allow_cannot_be_used_to_join(
        ops: OPs, bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS) -> None:
    verified_org(bridge, client, dns_server, allowed_providers=["google"])
    assert client.get("/join/acme/login?provider=oidc").status_code == 400
    assert counts(bridge)["Member"] == 0


def test_joining_holds_the_seat_limit(ops: OPs, bridge: Bridge, client: FlaskClient,
                                      dns_server: LoopbackDNS) -> None:
    api = verified_org(bridge, client, dns_server, member_limit=1)
    api.invite("bob@contoso.com")
    before = counts(bridge)

    resp = join(client, ops.oidc, "oidc", oidc_claims())

    assert resp.status_code == 403
    assert "no free seats" in resp.get_data(as_text=True)
    assert counts(bridge) == before
    assert rejections(bridge) == ["seat_limit"]


def test_someone_already_invited_is_pointed_at_the_invitation(ops: OPs, bridge: Bridge, client: FlaskClient,
                                                              dns_server: LoopbackDNS) -> None:
    api = verified_org(bridge, client, dns_server)
    api.invite("alice@contoso.com")
    before = counts(bridge)

    resp = join(client, ops.oidc, "oidc", oidc_claims())

    assert resp.status_code == 403
    assert counts(bridge) == before
    assert rejections(bridge) == ["already_member"]


def test_a_closed_or_unknown_org_shows_the_same_page(ops: OPs, bridge: Bridge, client: FlaskClient,
                                                     dns_server: LoopbackDNS) -> None:
    verified_org(bridge, client, dns_server, join="off")
    closed, unknown = client.get("/join/acme"), client.get("/join/nobody")
    assert closed.status_code == unknown.status_code == 404
    assert closed.get_data() == unknown.get_data()
    assert client.get("/join/acme/login?provider=oidc").status_code == 404


def test_request_mode_records_a_request_an_admin_approves(ops: OPs, bridge: Bridge, client: FlaskClient,
                                                          dns_server: LoopbackDNS) -> None:
    api = verified_org(bridge, client, dns_server, join="request")

    resp = join(client, ops.oidc, "oidc", oidc_claims())
    assert resp.status_code == 202
    assert "request to join Acme was sent" in resp.get_data(as_text=True)
    # Asking twice while pending does not make a second request.
    assert join(client, ops.oidc, "oidc", oidc_claims()).status_code == 202

    assert api.get("/members").get_json()["items"] == []
    (request,) = api.get("/join-requests").get_json()["items"]
    assert (request["email"], request["status"], request["provider"]) == ("alice@contoso.com", "PENDING", "oidc")
    assert event_types(bridge) == ["join_request.created"]

    approved = api.post(f"/join-requests/{request['id']}/approve")
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["status"] == "APPROVED"
    (member,) = api.get("/members").get_json()["items"]
    assert (member["status"], member["role"], member["id"]) == ("ACTIVE", "MEMBER", approved.get_json()["member_id"])
    assert event_types(bridge) == ["join_request.created", "member.joined"]
    assert api.post(f"/join-requests/{request['id']}/approve").status_code == 409
    assert api.get("/join-requests?status=PENDING").get_json()["items"] == []

    # Signing in afterwards is an ordinary sign-in of the member the approval bound.
    assert join(client, ops.oidc, "oidc", oidc_claims()).status_code == 303
    assert len(api.get("/members").get_json()["items"]) == 1


def test_a_declined_request_admits_nobody(ops: OPs, bridge: Bridge, client: FlaskClient,
                                          dns_server: LoopbackDNS) -> None:
    api = verified_org(bridge, client, dns_server, join="request")
    join(client, ops.oidc, "oidc", oidc_claims())
    (request,) = api.get("/join-requests").get_json()["items"]

    declined = api.post(f"/join-requests/{request['id']}/decline")

    assert declined.status_code == 200
    assert declined.get_json()["status"] == "DECLINED"
    assert api.get("/members").get_json()["items"] == []
    assert api.post(f"/join-requests/{request['id']}/approve").status_code == 409


def test_approval_holds_the_seat_limit(ops: OPs, bridge: Bridge, client: FlaskClient,
                                       dns_server: LoopbackDNS) -> None:
    api = verified_org(bridge, client, dns_server, join="request", member_limit=1)
    join(client, ops.oidc, "oidc", oidc_claims())
    (request,) = api.get("/join-requests").get_json()["items"]
    api.invite("bob@contoso.com")

    resp = api.post(f"/join-requests/{request['id']}/approve")

    assert resp.status_code == 409
    assert resp.get_json()["code"] == "seat_limit_reached"
    assert api.get("/join-requests").get_json()["items"][0]["status"] == "PENDING"


def test_join_requests_need_users_read_and_deciding_needs_users_invite(
        ops: OPs, bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS) -> None:
    api = verified_org(bridge, client, dns_server, join="request")
    join(client, ops.oidc, "oidc", oidc_claims())
    (request,) = api.get("/join-requests").get_json()["items"]
    reader = Api(client, make_key(bridge, "acme", ["users:read"]))
    assert reader.get("/join-requests").status_code == 200
    assert reader.post(f"/join-requests/{request['id']}/approve").status_code == 403
    assert api.get("/join-requests?status=MAYBE").status_code == 422
