"""Settings → Domains (SPEC §10, orgs:manage): add a domain and see the TXT record to publish, verify it (a failed
lookup is shown next to the domain and changes nothing), remove it after "Confirm"; "Join by domain" is saved
with the org's settings."""

from __future__ import annotations

import re
from html import unescape

from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Organization, OrgDomain
from idp_bridge.store.db import transaction
from tests.console.conftest import ADMIN, Org, get, post, sign_in
from tests.dnsserver import LoopbackDNS
from tests.pages.conftest import OPs


def _domains(bridge: Bridge) -> dict[str, str]:
    with transaction(bridge.sessions) as session:
        return {d.domain: d.status for d in session.scalars(select(OrgDomain))}


def _domain_id(bridge: Bridge, name: str) -> str:
    with transaction(bridge.sessions) as session:
        found = session.scalar(select(OrgDomain.id).where(OrgDomain.domain == name))
        assert found is not None
        return found


def _policy(bridge: Bridge) -> str:
    with transaction(bridge.sessions) as session:
        return session.scalars(select(Organization.domain_join).where(Organization.slug == "acme")).one()


def _row(html: str, domain_id: str) -> str:
    start = html.index(f'<tr id="domain-{domain_id}">')
    return unescape(html[start:html.index("</tr>", start)])


def test_an_added_domain_is_pending_with_the_txt_record_to_publish(owner: FlaskClient, acme: Org,
                                                                   bridge: Bridge) -> None:
    resp = post(owner, "/console/acme/settings/domains", {"domain": "Contoso.COM"})

    assert resp.status_code == 303
    assert _domains(bridge) == {"contoso.com": "pending"}
    domain_id = _domain_id(bridge, "contoso.com")
    row = _row(get(owner, "/console/acme/settings?done=domain_added").get_data(as_text=True), domain_id)
    assert "Pending" in row and "_idp-bridge-challenge.contoso.com" in row
    assert re.search(r"idp-bridge-verification=[\w-]{20,}", row)
    assert 'aria-label="Verify contoso.com"' in row and 'aria-label="Remove contoso.com"' in row


def test_a_domain_that_is_not_a_domain_is_refused_with_the_reason(owner: FlaskClient, acme: Org,
                                                                  bridge: Bridge) -> None:
    resp = post(owner, "/console/acme/settings/domains", {"domain": "10.0.0.1"})

    assert resp.status_code == 422
    assert "not an IP address" in resp.get_data(as_text=True)
    assert _domains(bridge) == {}


def test_verify_without_the_record_shows_the_problem_next_to_the_domain_and_changes_nothing(
        owner: FlaskClient, acme: Org, bridge: Bridge, dns_server: LoopbackDNS) -> None:
    post(owner, "/console/acme/settings/domains", {"domain": "contoso.com"})
    domain_id = _domain_id(bridge, "contoso.com")
    dns_server.txt["_idp-bridge-challenge.contoso.com"] = ["something-else"]

    resp = post(owner, f"/console/acme/settings/domains/{domain_id}/verify")

    assert resp.status_code == 409
    row = _row(resp.get_data(as_text=True), domain_id)
    assert f'id="domain-{domain_id}-error"' in row and "values found: 'something-else'" in row
    assert _domains(bridge) == {"contoso.com": "pending"}


def test_verify_with_the_record_published_marks_the_domain_verified_audited_as_the_member(
        owner: FlaskClient, acme: Org, bridge: Bridge, dns_server: LoopbackDNS) -> None:
    post(owner, "/console/acme/settings/domains", {"domain": "contoso.com"})
    domain_id = _domain_id(bridge, "contoso.com")
    value = re.findall(r"idp-bridge-verification=[\w-]+", get(owner, "/console/acme/settings").get_data(
        as_text=True))[0]
    dns_server.txt["_idp-bridge-challenge.contoso.com"] = [value]

    resp = post(owner, f"/console/acme/settings/domains/{domain_id}/verify")

    assert resp.status_code == 303
    assert _domains(bridge) == {"contoso.com": "verified"}
    row = _row(get(owner, "/console/acme/settings").get_data(as_text=True), domain_id)
    assert "Verified" in row and "Verify contoso.com" not in row
    with transaction(bridge.sessions) as session:
        (verified,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "domain.verified"))
        assert verified.details["actor"]["email"] == "owner@example.com"


def test_remove_goes_through_a_confirmation_step(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    post(owner, "/console/acme/settings/domains", {"domain": "contoso.com"})
    domain_id = _domain_id(bridge, "contoso.com")

    confirm = get(owner, f"/console/acme/settings/domains/{domain_id}/remove")
    assert confirm.status_code == 200 and ">Confirm</button>" in confirm.get_data(as_text=True)
    assert post(owner, f"/console/acme/settings/domains/{domain_id}/remove").status_code == 200
    assert _domains(bridge) == {"contoso.com": "pending"}

    resp = post(owner, f"/console/acme/settings/domains/{domain_id}/remove", {"confirmed": "1"})

    assert resp.status_code == 303 and _domains(bridge) == {}


def test_join_by_domain_is_saved_with_the_org_settings(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    html = get(owner, "/console/acme/settings").get_data(as_text=True)
    assert '<label for="domain_join">Join by domain</label>' in html
    assert '<option value="off" selected>Off</option>' in html

    assert post(owner, "/console/acme/settings", {"name": "Acme", "domain_join": "request"}).status_code == 303
    assert _policy(bridge) == "request"
    assert '<option value="request" selected>On request</option>' in get(
        owner, "/console/acme/settings").get_data(as_text=True)

    refused = post(owner, "/console/acme/settings", {"name": "Acme", "domain_join": "sometimes"})
    assert refused.status_code == 422 and 'id="domain_join-error"' in refused.get_data(as_text=True)
    assert _policy(bridge) == "request"


def test_a_role_without_orgs_manage_cannot_touch_domains(ops: OPs, client: FlaskClient, acme: Org,
                                                         bridge: Bridge) -> None:
    sign_in(client, ops.oidc, ADMIN)

    resp = post(client, "/console/acme/settings/domains", {"domain": "contoso.com"})

    assert resp.status_code == 403 and "orgs:manage" in resp.get_data(as_text=True)
    assert _domains(bridge) == {}
