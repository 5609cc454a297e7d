"""Keycloak events in: p2-inc keycloak-events (HMAC) and vymalo keycloak-webhook (Basic auth)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.worker import Worker
from tests.fakes import FakeKeycloak
from tests.helpers import Api

from .conftest import KEYCLOAK_WEBHOOK_SECRET, drain, event_types, inbound_count, invite_of, member_of


def p2_event(kind: str, user_id: str, *, at_ms: int | None = None, **extra: Any) -> bytes:
    """A p2-inc keycloak-events webhook body."""
    body = {"time": at_ms or int(time.time() * 1000), "realmId": "acme", "uid": str(uuid.uuid4()), "type": kind,
            "authDetails": {"realmId": "acme", "clientId": "idp-bridge", "userId": user_id,
                            "ipAddress": "203.0.113.5", "username": "someone"},
            "details": {}, **extra}
    return json.dumps(body).encode()


def p2_admin(operation: str, user_id: str, representation: dict[str, Any] | None = None) -> bytes:
    body = {"time": int(time.time() * 1000), "realmId": "acme", "uid": str(uuid.uuid4()),
            "type": f"admin.USER-{operation}", "operationType": operation, "resourceType": "USER",
            "resourcePath": f"users/{user_id}",
            "authDetails": {"realmId": "master", "clientId": "admin-cli", "userId": str(uuid.uuid4())},
            "representation": json.dumps(representation) if representation is not None else None}
    return json.dumps(body).encode()


def signed(body: bytes, secret: str = KEYCLOAK_WEBHOOK_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "X-Keycloak-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> int:
    return client.post("/webhooks/keycloak", data=body, headers=headers).status_code


def provisioned(bridge: Bridge, api: Api, worker: Worker, keycloak: FakeKeycloak,
                email: str = "ada@example.com") -> tuple[dict[str, Any], str]:
    """An invite whose Keycloak account idp-bridge created and bound; returns (invite, keycloak user id)."""
    invite = api.invite(email, provider="keycloak")
    drain(bridge, worker)
    user_id = invite_of(bridge, invite["id"]).idp_user_id
    assert user_id is not None
    return invite, user_id


def test_a_signed_login_activates_the_bound_member_once_despite_repeats_and_an_older_event(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, keycloak: FakeKeycloak) -> None:
    invite, user_id = provisioned(bridge, api, worker, keycloak)
    now_ms = int(time.time() * 1000)
    login = p2_event("access.LOGIN", user_id, at_ms=now_ms)
    older = p2_event("access.UPDATE_PASSWORD", user_id, at_ms=now_ms - 60_000)
    assert [post(client, login, signed(login)) for _ in range(3)] == [202, 202, 202]
    assert post(client, older, signed(older)) == 202
    drain(bridge, worker)
    assert post(client, login, signed(login)) == 202
    drain(bridge, worker)

    member = member_of(bridge, invite["member_id"])
    assert member.status == "ACTIVE"
    assert invite_of(bridge, invite["id"]).status == "ACCEPTED"
    assert event_types(bridge, member.id).count("member.activated") == 1
    assert event_types(bridge, member.id).count("invite.accepted") == 1
    assert inbound_count(bridge) == 2


def test_a_bad_signature_is_refused_with_401_and_nothing_is_stored(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, keycloak: FakeKeycloak) -> None:
    invite, user_id = provisioned(bridge, api, worker, keycloak)
    login = p2_event("access.LOGIN", user_id)
    assert post(client, login, signed(login, "not-the-secret")) == 401
    assert post(client, login, {"Content-Type": "application/json"}) == 401
    tampered = login.replace(b"LOGIN", b"LOGIN ")
    assert post(client, tampered, signed(login)) == 401
    drain(bridge, worker)
    assert inbound_count(bridge) == 0
    assert member_of(bridge, invite["member_id"]).status == "INVITED"


def test_a_login_of_an_unbound_account_with_the_invited_email_changes_nothing(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, keycloak: FakeKeycloak) -> None:
    invite, _bound = provisioned(bridge, api, worker, keycloak)
    stranger = keycloak.add_user("ada-twin", email="ada.twin@example.com")
    login = p2_event("access.LOGIN", stranger, details={"email": "ada@example.com", "username": "ada@example.com"})
    assert post(client, login, signed(login)) == 202
    drain(bridge, worker)
    assert member_of(bridge, invite["member_id"]).status == "INVITED"
    assert invite_of(bridge, invite["id"]).status == "PENDING"
    assert "member.activated" not in event_types(bridge, invite["member_id"])


def test_an_admin_disable_deactivates_and_an_admin_delete_removes(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, keycloak: FakeKeycloak) -> None:
    invite, user_id = provisioned(bridge, api, worker, keycloak)
    login = p2_event("access.VERIFY_EMAIL", user_id)
    post(client, login, signed(login))
    drain(bridge, worker)
    disable = p2_admin("UPDATE", user_id, {"id": user_id, "enabled": False})
    assert post(client, disable, signed(disable)) == 202
    drain(bridge, worker)
    member = member_of(bridge, invite["member_id"])
    assert (member.status, member.deactivated_by) == ("DEACTIVATED", "keycloak")
    delete = p2_admin("DELETE", user_id)
    assert post(client, delete, signed(delete)) == 202
    drain(bridge, worker)
    assert member_of(bridge, invite["member_id"]).status == "DELETED"
    assert event_types(bridge, invite["member_id"])[-3:] == ["member.activated", "member.deactivated",
                                                             "member.removed"]


def test_a_late_login_never_brings_a_removed_member_back(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, keycloak: FakeKeycloak) -> None:
    invite, user_id = provisioned(bridge, api, worker, keycloak)
    delete = p2_admin("DELETE", user_id)
    post(client, delete, signed(delete))
    drain(bridge, worker)
    login = p2_event("access.LOGIN", user_id, at_ms=int(time.time() * 1000) - 60_000)
    post(client, login, signed(login))
    drain(bridge, worker)
    assert member_of(bridge, invite["member_id"]).status == "DELETED"
    assert "member.activated" not in event_types(bridge, invite["member_id"])


def vymalo_login(user_id: str) -> bytes:
    """A vymalo keycloak-webhook body: Keycloak's own event fields."""
    return json.dumps({"id": str(uuid.uuid4()), "time": int(time.time() * 1000), "type": "LOGIN",
                       "realmId": "acme", "clientId": "idp-bridge", "userId": user_id,
                       "ipAddress": "203.0.113.5", "details": {}}).encode()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Content-Type": "application/json", "Authorization": f"Basic {token}"}


def test_a_vymalo_login_with_basic_auth_activates_and_wrong_credentials_get_401(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, keycloak: FakeKeycloak) -> None:
    invite, user_id = provisioned(bridge, api, worker, keycloak)
    body = vymalo_login(user_id)
    assert post(client, body, basic("kc-hook", "wrong")) == 401
    assert inbound_count(bridge) == 0
    assert post(client, body, basic("kc-hook", "kc-hook-password")) == 202
    drain(bridge, worker)
    assert member_of(bridge, invite["member_id"]).status == "ACTIVE"
