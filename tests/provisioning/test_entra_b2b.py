"""Entra B2B guest invitations through Microsoft Graph, against a stateful fake of identity + Graph."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.errors import ConfigError
from idp_bridge.models import AuditEvent
from idp_bridge.plugins import build_providers
from idp_bridge.worker import Worker
from tests.fakes import FakeMicrosoft
from tests.helpers import Api, make_key, make_org

from .conftest import ENTRA, drain
from .test_keycloak_provisioning import invite_row, redeem_directly


def test_a_b2b_invite_records_the_guest_object_id_and_the_redeem_url(
        bridge: Bridge, client: FlaskClient, worker: Worker, microsoft: FakeMicrosoft, mail: Any) -> None:
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    body = api.invite("guest@partner.example", provider="entra", name="Gus Guest")

    drain(bridge, worker)

    [invitation] = microsoft.invitations
    assert invitation.redirect_url == body["link"]
    assert invitation.send_message is True
    guest = microsoft.find_by_mail("guest@partner.example")
    assert guest is not None and guest["userType"] == "Guest"
    row = invite_row(bridge, body["id"])
    assert (row.provisioning_state, row.idp_user_id, row.idp_user_created) == ("done", guest["id"], True)
    assert row.idp_data["redeem_url"].startswith("https://login.microsoftonline.com/redeem?")
    assert mail.sent == []  # Microsoft's invitation mail carries the redeem link


def test_graph_refusing_b2b_invitations_fails_provisioning_with_an_admin_readable_message(
        bridge: Bridge, client: FlaskClient, worker: Worker, microsoft: FakeMicrosoft) -> None:
    microsoft.b2b_invitations_enabled = False
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    body = api.invite("guest@partner.example", provider="entra")

    drain(bridge, worker)

    shown = api.get(f"/invites/{body['id']}").get_json()["provisioning"]
    assert shown["state"] == "failed"
    assert shown["attempts"] == 1  # a refusal is not retried
    assert "Guest invitations not allowed" in shown["last_error"]
    assert "External collaboration settings" in shown["last_error"]


def test_revoking_a_b2b_invite_deletes_the_guest_that_never_redeemed(
        bridge: Bridge, client: FlaskClient, worker: Worker, microsoft: FakeMicrosoft) -> None:
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    body = api.invite("guest@partner.example", provider="entra")
    drain(bridge, worker)
    api.post(f"/invites/{body['id']}/revoke")
    drain(bridge, worker)
    assert microsoft.find_by_mail("guest@partner.example") is None


def test_revoking_keeps_a_guest_who_already_redeemed(
        bridge: Bridge, client: FlaskClient, worker: Worker, microsoft: FakeMicrosoft) -> None:
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    body = api.invite("guest@partner.example", provider="entra")
    drain(bridge, worker)
    guest = microsoft.find_by_mail("guest@partner.example")
    assert guest is not None
    microsoft.accept(guest["id"])
    api.post(f"/invites/{body['id']}/revoke")
    drain(bridge, worker)
    assert microsoft.find_by_mail("guest@partner.example") is not None


def test_b2b_needs_a_tenant_guid() -> None:
    with pytest.raises(ConfigError) as caught:
        build_providers({"entra": {**ENTRA, "tenant": "organizations"}}, public_url="https://join.test")
    assert caught.value.setting == "providers.entra.tenant"
    assert "GUID" in str(caught.value)


def test_deactivating_and_reactivating_a_member_blocks_and_unblocks_its_guest_sign_in(
        bridge: Bridge, client: FlaskClient, worker: Worker, microsoft: FakeMicrosoft) -> None:
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    body = api.invite("guest@partner.example", provider="entra")
    drain(bridge, worker)
    member_id = redeem_directly(bridge, body["id"])
    guest = microsoft.find_by_mail("guest@partner.example")
    assert guest is not None and guest["accountEnabled"] is True

    assert api.post(f"/members/{member_id}/deactivate").status_code == 200
    drain(bridge, worker)
    assert guest["accountEnabled"] is False
    [patch] = [r for r in microsoft.requests if r.method == "PATCH"]
    assert patch.path == f"/v1.0/users/{guest['id']}"
    assert patch.json() == {"accountEnabled": False}

    assert api.post(f"/members/{member_id}/reactivate").status_code == 200
    drain(bridge, worker)
    assert guest["accountEnabled"] is True
    assert microsoft.calls["PATCH /v1.0/users/{id}"] == 2


def test_deactivating_a_member_whose_guest_was_deleted_in_entra_succeeds_without_retries(
        bridge: Bridge, client: FlaskClient, worker: Worker, microsoft: FakeMicrosoft) -> None:
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    body = api.invite("gone@partner.example", provider="entra")
    drain(bridge, worker)
    member_id = redeem_directly(bridge, body["id"])
    guest = microsoft.find_by_mail("gone@partner.example")
    assert guest is not None
    del microsoft.users[guest["id"]]

    assert api.post(f"/members/{member_id}/deactivate").status_code == 200
    counts = drain(bridge, worker)

    assert counts.get("failed", 0) == 0
    assert microsoft.calls["PATCH /v1.0/users/{id}"] == 1
    with bridge.sessions() as session:
        details = session.scalars(select(AuditEvent.details)
                                  .where(AuditEvent.action == "member.idp_account_disabled")).all()
    assert [d["outcome"] for d in details] == ["gone"]
