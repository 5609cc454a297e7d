"""A refusal the console shows (a service's detail, a field's problem) is in the console's language: German for a
German browser, English otherwise, the same English the API and the CLI give."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import OrgDomain
from idp_bridge.store.db import transaction
from tests.console.conftest import BASE, Org, csrf_of, get
from tests.dnsserver import LoopbackDNS

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}


def send(client: FlaskClient, path: str, data: dict[str, Any], headers: dict[str, str]) -> tuple[int, str]:
    """Post a console form with a valid CSRF token in the given language; the status and the page."""
    form = {**data, "csrf_token": csrf_of(get(client, "/console/acme/members").get_data(as_text=True))}
    resp = client.post(path, data=form, headers=headers, base_url=BASE)
    return resp.status_code, resp.get_data(as_text=True)


def test_the_last_owner_refusal_is_german_under_a_german_console(owner: FlaskClient, acme: Org) -> None:
    path = f"/console/acme/members/{acme.ids['OWNER']}/role"
    status, german = send(owner, path, {"role": "MEMBER"}, GERMAN)
    assert status == 409
    assert ("owner@example.com ist der letzte aktive Eigentümer von acme; machen Sie zuerst ein anderes Mitglied "
            "zum Eigentümer") in german
    assert "last active owner" not in german
    status, english = send(owner, path, {"role": "MEMBER"}, ENGLISH)
    assert status == 409
    assert "owner@example.com is the last active owner of acme; make another member an owner first" in english


def test_a_duplicate_invite_is_refused_in_german(owner: FlaskClient, acme: Org) -> None:
    status, german = send(owner, "/console/acme/invites/new", {"identifiers": "member@example.com",
                                                               "role": "MEMBER"}, GERMAN)
    assert status == 409
    assert "member@example.com ist bereits Mitglied (ACTIVE)" in german
    _, english = send(owner, "/console/acme/invites/new", {"identifiers": "member@example.com", "role": "MEMBER"},
                      ENGLISH)
    assert "member@example.com is already a member (ACTIVE)" in english


def test_the_seat_limit_is_refused_in_german(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    status, german = send(owner, "/console/acme/invites/new",
                          {"identifiers": "\n".join(f"p{i}@example.com" for i in range(8)), "role": "MEMBER"},
                          GERMAN)
    assert status == 409
    assert "bei acme sind 10 von 10 Plätzen belegt" in german


def test_a_filter_problem_on_a_listing_is_german(owner: FlaskClient, acme: Org) -> None:
    german = get(owner, "/console/acme/members?status=BOGUS", headers=GERMAN)
    assert german.status_code == 400
    assert "status: muss unter INVITED, ACTIVE, DEACTIVATED, DELETED sein" in german.get_data(as_text=True)
    english = get(owner, "/console/acme/members?status=BOGUS", headers=ENGLISH).get_data(as_text=True)
    assert "status: must be among INVITED, ACTIVE, DEACTIVATED, DELETED" in english


def test_a_field_problem_of_the_invite_form_is_german(owner: FlaskClient, acme: Org) -> None:
    status, german = send(owner, "/console/acme/invites/new", {"identifiers": "ada@example.com", "role": "NOPE"},
                          GERMAN)
    assert status == 422
    assert "unbekannte Rolle &#39;NOPE&#39;; eine von" in german


def test_domain_problems_are_german(owner: FlaskClient, acme: Org, bridge: Bridge, dns_server: LoopbackDNS) -> None:
    status, german = send(owner, "/console/acme/settings/domains", {"domain": "10.0.0.1"}, GERMAN)
    assert status == 422
    assert "Die Domain muss ein Domainname sein, keine IP-Adresse." in german
    send(owner, "/console/acme/settings/domains", {"domain": "contoso.com"}, GERMAN)
    with transaction(bridge.sessions) as session:
        domain_id = session.scalars(select(OrgDomain.id).where(OrgDomain.domain == "contoso.com")).one()
    dns_server.txt["_idp-bridge-challenge.contoso.com"] = ["something-else"]
    status, german = send(owner, f"/console/acme/settings/domains/{domain_id}/verify", {}, GERMAN)
    assert status == 409
    assert "der TXT-Eintrag _idp-bridge-challenge.contoso.com enthält nicht" in german
    assert "gefundene Werte: &#39;something-else&#39;" in german


def test_a_join_request_that_is_not_there_is_named_in_german(owner: FlaskClient, acme: Org) -> None:
    german = get(owner, "/console/acme/join-requests/nope/decline", headers=GERMAN)
    assert german.status_code == 404
    assert "acme hat keine Beitrittsanfrage nope" in german.get_data(as_text=True)
    english = get(owner, "/console/acme/join-requests/nope/decline", headers=ENGLISH)
    assert "acme has no join request nope" in english.get_data(as_text=True)

