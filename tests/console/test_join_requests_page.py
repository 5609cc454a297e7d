"""Join requests in the console (SPEC §10): listed for users:read, approved or declined (after "Confirm") for
users:invite, through the API's services and audited with the signed-in member as the actor."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, JoinRequest, Member
from idp_bridge.store.db import transaction
from tests.console.conftest import MEMBER, Org, get, post, sign_in, table
from tests.dnsserver import LoopbackDNS
from tests.helpers import Api, make_key
from tests.pages.conftest import OPs
from tests.pages.test_join_by_domain import EVERYTHING, join, oidc_claims

CAROL = oidc_claims("carol@contoso.com", sub="carol-sub", name="Carol")


@pytest.fixture
def asked(acme: Org, ops: OPs, bridge: Bridge, app: Any, dns_server: LoopbackDNS) -> str:
    """acme verified contoso.com and takes people on request; Carol asked to join. Returns the request's id."""
    api = Api(app.test_client(), make_key(bridge, "acme", EVERYTHING))
    body = api.post("/domains", {"domain": "contoso.com"}).get_json()
    dns_server.txt[body["challenge"]["name"]] = [body["challenge"]["value"]]
    assert api.post(f"/domains/{body['id']}/verify").status_code == 200
    assert api.patch("", {"domain_join": "request"}).status_code == 200
    assert join(app.test_client(), ops.oidc, "oidc", CAROL).status_code == 202
    (request,) = api.get("/join-requests").get_json()["items"]
    return str(request["id"])


def _request(bridge: Bridge, request_id: str) -> JoinRequest:
    with transaction(bridge.sessions) as session:
        row = session.get(JoinRequest, request_id)
        assert row is not None
        session.expunge(row)
        return row


def _carol(bridge: Bridge) -> list[tuple[str, str]]:
    with transaction(bridge.sessions) as session:
        return [(m.status, m.role) for m in session.scalars(select(Member).where(Member.email == "carol@contoso.com"))]


def test_the_page_lists_each_request_with_its_provider_time_and_status(owner: FlaskClient, asked: str,
                                                                       bridge: Bridge) -> None:
    resp = get(owner, "/console/acme/join-requests")

    html = resp.get_data(as_text=True)
    rows = table(html)
    assert resp.status_code == 200
    assert 'href="/console/acme/join-requests" aria-current="page">Join requests<' in html
    assert "carol@contoso.com" in rows and f'data-label="Provider">{bridge.providers["oidc"].label}<' in rows
    assert "Pending" in rows and " UTC" in rows
    assert 'aria-label="Approve carol@contoso.com"' in rows and 'aria-label="Decline carol@contoso.com"' in rows


def test_an_owner_approves_a_request_and_the_person_becomes_an_active_member_audited_as_the_owner(
        owner: FlaskClient, asked: str, bridge: Bridge) -> None:
    resp = post(owner, f"/console/acme/join-requests/{asked}/approve")

    assert resp.status_code == 303 and resp.headers["Location"].endswith("/console/acme/join-requests?done=approved")
    assert _carol(bridge) == [("ACTIVE", "MEMBER")]
    assert _request(bridge, asked).status == "APPROVED"
    with transaction(bridge.sessions) as session:
        (approved,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "join_request.approved"))
        assert approved.actor.startswith("member:")
        assert approved.details["actor"]["email"] == "owner@example.com"
    listed = get(owner, "/console/acme/join-requests?done=approved").get_data(as_text=True)
    assert "now an active member" in listed and "Approved" in table(listed)
    assert "Approve carol@contoso.com" not in listed


def test_approving_twice_is_refused_with_the_reason(owner: FlaskClient, asked: str, bridge: Bridge) -> None:
    assert post(owner, f"/console/acme/join-requests/{asked}/approve").status_code == 303

    resp = post(owner, f"/console/acme/join-requests/{asked}/approve")

    assert resp.status_code == 409
    assert "only a pending one can be decided" in resp.get_data(as_text=True)
    assert _carol(bridge) == [("ACTIVE", "MEMBER")]


def test_decline_goes_through_a_confirmation_step_and_admits_nobody(owner: FlaskClient, asked: str,
                                                                      bridge: Bridge) -> None:
    confirm = get(owner, f"/console/acme/join-requests/{asked}/decline")
    assert confirm.status_code == 200 and ">Confirm</button>" in confirm.get_data(as_text=True)
    unconfirmed = post(owner, f"/console/acme/join-requests/{asked}/decline")
    assert unconfirmed.status_code == 200 and _request(bridge, asked).status == "PENDING"

    resp = post(owner, f"/console/acme/join-requests/{asked}/decline", {"confirmed": "1"})

    assert resp.status_code == 303
    assert _request(bridge, asked).status == "DECLINED"
    assert _carol(bridge) == []


def test_a_post_without_its_csrf_token_decides_nothing(owner: FlaskClient, asked: str, bridge: Bridge) -> None:
    resp = post(owner, f"/console/acme/join-requests/{asked}/approve", csrf=False)

    assert resp.status_code == 400
    assert _request(bridge, asked).status == "PENDING" and _carol(bridge) == []


def test_a_member_reads_the_requests_but_may_not_decide(ops: OPs, client: FlaskClient, asked: str,
                                                        bridge: Bridge) -> None:
    sign_in(client, ops.oidc, MEMBER)

    html = get(client, "/console/acme/join-requests").get_data(as_text=True)
    assert "carol@contoso.com" in table(html)
    assert "Approve" not in table(html) and "Decline" not in table(html)
    refused = post(client, f"/console/acme/join-requests/{asked}/approve")
    assert refused.status_code == 403 and "users:invite" in refused.get_data(as_text=True)
    assert _request(bridge, asked).status == "PENDING"


def test_an_unknown_status_filter_is_a_clear_error(owner: FlaskClient, acme: Org) -> None:
    resp = get(owner, "/console/acme/join-requests?status=MAYBE")

    assert resp.status_code == 400 and "must be one of" in resp.get_data(as_text=True)
