"""The provisioning scenarios against a real Keycloak (opt-in: set KEYCLOAK_URL, KEYCLOAK_REALM, ...).

The realm must be set up as config/keycloak/README.md describes, with `{KEYCLOAK_PUBLIC_URL}/invite/*`
among the client's redirect URIs and SMTP configured (Keycloak refuses setup mails without it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.worker import Worker
from providers.keycloak_admin import KeycloakAdmin
from tests.helpers import Api, make_key, make_org

from .conftest import drain
from .test_keycloak_provisioning import invite_row

LIVE = {name: os.environ.get(name, "") for name in
        ("KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID", "KEYCLOAK_CLIENT_SECRET")}
PUBLIC_URL = os.environ.get("KEYCLOAK_PUBLIC_URL", "https://join.example.com")

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not all(LIVE.values()), reason="set KEYCLOAK_URL, KEYCLOAK_REALM, "
                                 "KEYCLOAK_CLIENT_ID and KEYCLOAK_CLIENT_SECRET to run against a real Keycloak")]


@pytest.fixture
def keycloak() -> SimpleNamespace:
    """No fake realm, and so no `responses` mock in front of requests: these tests talk to the real server."""
    return SimpleNamespace(served_url="http://unused.invalid")


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    settings_overrides["public_url"] = PUBLIC_URL
    settings_overrides["providers"] = {"keycloak": {
        "type": "keycloak", "server_url": LIVE["KEYCLOAK_URL"], "realm": LIVE["KEYCLOAK_REALM"],
        "client_id": LIVE["KEYCLOAK_CLIENT_ID"], "client_secret": LIVE["KEYCLOAK_CLIENT_SECRET"]}}
    return settings_overrides


@pytest.fixture
def realm() -> Iterator[KeycloakAdmin]:
    admin = KeycloakAdmin(server_url=LIVE["KEYCLOAK_URL"], realm=LIVE["KEYCLOAK_REALM"],
                          client_id=LIVE["KEYCLOAK_CLIENT_ID"], client_secret=LIVE["KEYCLOAK_CLIENT_SECRET"])
    made: list[str] = []
    admin.made = made  # type: ignore[attr-defined]
    yield admin
    for email in made:
        user = admin.find_by_email(email)
        if user is not None:
            admin.delete(str(user["id"]))


def fresh_email(realm: KeycloakAdmin) -> str:
    email = f"idp-bridge-live-{uuid.uuid4().hex[:10]}@example.com"
    realm.made.append(email)  # type: ignore[attr-defined]
    return email


def test_live_a_new_email_gets_one_account_with_setup_actions(
        bridge: Bridge, client: FlaskClient, worker: Worker, realm: KeycloakAdmin) -> None:
    make_org(bridge, "acme")
    email = fresh_email(realm)
    body = Api(client, make_key(bridge)).invite(email, provider="keycloak", name="Live Test")
    drain(bridge, worker)
    row = invite_row(bridge, body["id"])
    assert row.provisioning_state == "done", row.provisioning_error
    user = realm.get(str(row.idp_user_id))
    assert user is not None and user["email"] == email
    assert {"UPDATE_PASSWORD", "VERIFY_EMAIL"} <= set(user.get("requiredActions") or [])
    assert row.idp_user_created and row.idp_data["idp_mailed"] is True


def test_live_an_existing_account_is_bound_without_password_action(
        bridge: Bridge, client: FlaskClient, worker: Worker, realm: KeycloakAdmin) -> None:
    email = fresh_email(realm)
    existing = realm.create({"username": email, "email": email, "enabled": True, "emailVerified": True})
    make_org(bridge, "acme")
    body = Api(client, make_key(bridge)).invite(email, provider="keycloak")
    drain(bridge, worker)
    row = invite_row(bridge, body["id"])
    assert (row.provisioning_state, row.idp_user_id, row.idp_user_created) == ("done", existing, False)
    user = realm.get(existing)
    assert user is not None and not user.get("requiredActions")


def test_live_revoking_deletes_the_account_we_created_and_keeps_a_pre_existing_one(
        bridge: Bridge, client: FlaskClient, worker: Worker, realm: KeycloakAdmin) -> None:
    ours, theirs = fresh_email(realm), fresh_email(realm)
    existing = realm.create({"username": theirs, "email": theirs, "enabled": True})
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    created = api.invite(ours, provider="keycloak")
    bound = api.invite(theirs, provider="keycloak")
    drain(bridge, worker)
    created_id = invite_row(bridge, created["id"]).idp_user_id
    for body in (created, bound):
        api.post(f"/invites/{body['id']}/revoke")
    drain(bridge, worker)
    assert realm.get(str(created_id)) is None
    assert realm.get(existing) is not None
