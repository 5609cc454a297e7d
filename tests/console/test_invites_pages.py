"""Invite and Invites pages: several people at once, links shown once, revoke with confirmation, resend,
refusals shown next to their cause with nothing changed."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import Invite
from idp_bridge.store.db import transaction
from tests.console.conftest import Org, get, post, table

TENANT = "11111111-2222-3333-4444-555555555555"


def _invites(bridge: Bridge) -> dict[str, Invite]:
    with transaction(bridge.sessions) as session:
        rows = list(session.scalars(select(Invite)))
        session.expunge_all()
        return {row.identifier: row for row in rows}


def test_the_invite_form_has_every_field_by_its_label(owner: FlaskClient, acme: Org) -> None:
    body = get(owner, "/console/acme/invites/new").get_data(as_text=True)

    for label in ("Email or username", "Identity provider", "Tenant ID", "Google Workspace domain", "Role", "Name",
                  "Notification email", "Send invitation email"):
        assert f">{label}</label>" in body, label
    assert ">Send invitation</button>" in body and '<option value="any">Any</option>' in body


def test_inviting_two_people_restricted_to_a_tenant_shows_each_link_once(owner: FlaskClient, acme: Org,
                                                                         bridge: Bridge) -> None:
    resp = post(owner, "/console/acme/invites/new", {
        "identifiers": "ann@example.com\n\nbob@example.com\n", "provider": "entra", "tenant_id": TENANT,
        "role": "MEMBER", "send_email": "1"})

    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "2 invitations created" in body
    stored = _invites(bridge)
    assert stored["ann@example.com"].tenant_id == TENANT and stored["bob@example.com"].provider == "entra"
    assert stored["ann@example.com"].created_by == f"member:{acme.ids['OWNER']}"
    assert body.count("https://join.test/invite/") == 2
    listing = get(owner, "/console/acme/invites").get_data(as_text=True)
    assert "https://join.test/invite/" not in listing
    assert table(listing).count(">Pending<") >= 2


def test_a_refused_invite_shows_why_and_creates_none_of_the_batch(owner: FlaskClient, acme: Org,
                                                                  bridge: Bridge) -> None:
    before = set(_invites(bridge))

    resp = post(owner, "/console/acme/invites/new", {"identifiers": "new@example.com\nadmin@example.com",
                                                     "provider": "oidc", "send_email": "1"})

    assert resp.status_code == 409
    assert "admin@example.com" in resp.get_data(as_text=True)
    assert set(_invites(bridge)) == before


def test_an_invalid_tenant_is_shown_next_to_its_field(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    before = set(_invites(bridge))

    resp = post(owner, "/console/acme/invites/new", {"identifiers": "x@example.com", "provider": "entra",
                                                     "tenant_id": "not-a-guid"})

    assert resp.status_code == 422 and 'id="tenant_id-error"' in resp.get_data(as_text=True)
    assert set(_invites(bridge)) == before


def test_the_seat_limit_refuses_with_its_message(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    lines = "\n".join(f"p{i}@example.com" for i in range(8))

    resp = post(owner, "/console/acme/invites/new", {"identifiers": lines, "provider": "oidc"})

    assert resp.status_code == 409 and "seat" in resp.get_data(as_text=True).lower()
    assert len(_invites(bridge)) == 3


def test_revoke_asks_for_confirmation_then_revokes(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    invite = acme.api.invite("ann@example.com", provider="oidc")

    asked = post(owner, f"/console/acme/invites/{invite['id']}/revoke")
    assert asked.status_code == 200 and ">Confirm</button>" in asked.get_data(as_text=True)
    assert _invites(bridge)["ann@example.com"].status == "PENDING"

    done = post(owner, f"/console/acme/invites/{invite['id']}/revoke", {"confirmed": "1"})

    assert done.status_code == 303
    assert _invites(bridge)["ann@example.com"].status == "REVOKED"
    assert ">Revoked<" in table(get(owner, "/console/acme/invites?status=REVOKED").get_data(as_text=True))


def test_resend_issues_a_new_link_shown_once(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    invite = acme.api.invite("ann@example.com", provider="oidc")

    resp = post(owner, f"/console/acme/invites/{invite['id']}/resend")

    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "https://join.test/invite/" in body
    assert invite["link"] not in body
    assert _invites(bridge)["ann@example.com"].send_count == 2


def test_revoking_an_accepted_invite_is_refused_with_the_reason(owner: FlaskClient, acme: Org,
                                                                bridge: Bridge) -> None:
    accepted = _invites(bridge)["member@example.com"]

    resp = post(owner, f"/console/acme/invites/{accepted.id}/revoke", {"confirmed": "1"})

    assert resp.status_code == 409 and 'role="alert"' in resp.get_data(as_text=True)
    assert _invites(bridge)["member@example.com"].status == "ACCEPTED"


def test_the_audit_log_lists_console_actions_newest_first_and_filters_by_action(
        owner: FlaskClient, acme: Org) -> None:
    invite = acme.api.invite("ann@example.com", provider="oidc")
    post(owner, f"/console/acme/invites/{invite['id']}/revoke", {"confirmed": "1"})

    everything = table(get(owner, "/console/acme/audit").get_data(as_text=True))
    revoked = table(get(owner, "/console/acme/audit?action=invite.revoked&since=2000-01-01").get_data(as_text=True))

    assert everything.index("invite.revoked") < everything.index("invite.created")
    assert "invite.revoked" in revoked and "invite.created" not in revoked
    assert "owner@example.com" in revoked


def test_a_bad_since_date_is_a_clear_error(owner: FlaskClient, acme: Org) -> None:
    resp = get(owner, "/console/acme/audit?since=yesterday")

    assert resp.status_code == 400 and "ISO 8601" in resp.get_data(as_text=True)
