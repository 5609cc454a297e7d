"""Organizations, API keys, authentication and the audit trail."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import ApiKey, AuditEvent, utcnow
from idp_bridge.security import token_hash
from idp_bridge.store.db import transaction
from tests.dbstate import dump_all_text, row_counts
from tests.helpers import Api, make_key, make_org


def platform(client: FlaskClient, bridge: Bridge) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(bridge, None)}"}


def test_a_platform_key_creates_an_org_with_default_settings(bridge: Bridge, client: FlaskClient) -> None:
    resp = client.post("/api/v1/orgs", json={"slug": "acme", "name": "Acme"}, headers=platform(client, bridge))
    assert resp.status_code == 201
    org = resp.get_json()
    assert (org["member_limit"], org["invite_ttl_hours"], org["require_invite_code"]) == (10, 336, False)
    assert org["match"] == "email" and org["allowed_providers"] is None and org["seats_used"] == 0
    again = client.post("/api/v1/orgs", json={"slug": "acme", "name": "Acme"}, headers=platform(client, bridge))
    assert again.status_code == 409


def test_an_org_key_cannot_create_orgs_even_with_orgs_manage(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    key = make_key(bridge, permissions=["users:read"])
    resp = client.post("/api/v1/orgs", json={"slug": "evil", "name": "Evil"},
                       headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 403


def test_org_settings_can_be_read_and_patched(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    api = Api(client, make_key(bridge, None))
    resp = api.patch("", {"member_limit": 3, "invite_ttl_hours": 48, "require_invite_code": True,
                          "redirect_url": "https://app.test/welcome", "match": "link"})
    assert resp.status_code == 200, resp.get_json()
    org = api.get("").get_json()
    assert (org["member_limit"], org["invite_ttl_hours"], org["require_invite_code"]) == (3, 48, True)
    assert org["redirect_url"] == "https://app.test/welcome" and org["match"] == "link"


@pytest.mark.parametrize(("patch", "field"), [
    ({"redirect_url": "https://evil.test/"}, "redirect_url"),
    ({"redirect_url": "javascript:alert(1)"}, "redirect_url"),
    ({"allowed_providers": ["nope"]}, "allowed_providers"),
    ({"member_limit": 0}, "member_limit"),
    ({"match": "fuzzy"}, "match"),
])
def test_invalid_org_settings_are_refused_and_nothing_changes(bridge: Bridge, client: FlaskClient,
                                                              patch: dict[str, Any], field: str) -> None:
    make_org(bridge)
    api = Api(client, make_key(bridge, None))
    before = api.get("").get_json()
    counts = row_counts(bridge)
    resp = api.patch("", patch)
    assert resp.status_code == 422 and field in resp.get_json()["errors"]
    assert api.get("").get_json() == before
    assert row_counts(bridge) == counts


def test_api_keys_are_prefixed_shown_once_and_stored_hashed(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    admin = Api(client, make_key(bridge, None))
    resp = admin.post("/api-keys", {"name": "ci", "permissions": ["users:read"]})
    assert resp.status_code == 201
    issued = resp.get_json()
    secret = issued["key"]
    body = secret.removeprefix("ibk_")
    assert secret.startswith("ibk_") and len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) >= 32
    listed = admin.get("/api-keys").get_json()["items"]
    assert all("key" not in k for k in listed)
    with transaction(bridge.sessions) as session:
        stored = session.get(ApiKey, issued["id"])
        assert stored is not None and stored.key_hash == token_hash(secret)
    assert secret not in dump_all_text(bridge)
    assert Api(client, secret).get("/invites").status_code == 200


def test_rotating_a_key_kills_the_old_one_at_once(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    admin = Api(client, make_key(bridge, None))
    old = admin.post("/api-keys", {"permissions": ["users:read"]}).get_json()
    new = admin.post(f"/api-keys/{old['id']}/rotate").get_json()
    assert new["key"] != old["key"] and new["permissions"] == ["users:read"]
    assert Api(client, old["key"]).get("/invites").status_code == 401
    assert Api(client, new["key"]).get("/invites").status_code == 200
    assert admin.delete(f"/api-keys/{new['id']}").status_code == 204
    assert Api(client, new["key"]).get("/invites").status_code == 401


def test_an_org_key_cannot_grant_more_than_it_holds(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    manager = Api(client, make_key(bridge, permissions=["orgs:manage", "users:read"]))
    assert manager.post("/api-keys", {"permissions": ["users:delete"]}).status_code == 403
    assert manager.post("/api-keys", {"permissions": ["bogus"]}).status_code == 422


DENIALS = [
    ({}, 401),
    ({"Authorization": "Bearer ibk_notarealkey"}, 401),
    ({"Authorization": "Bearer somethingelse"}, 401),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
]


@pytest.mark.parametrize(("headers", "status"), DENIALS)
def test_missing_or_invalid_keys_get_401_and_leave_only_an_audit_event(
        bridge: Bridge, client: FlaskClient, headers: dict[str, str], status: int) -> None:
    make_org(bridge)
    before = row_counts(bridge)
    resp = client.post("/api/v1/orgs/acme/invites", json={"identifier": "a@example.com"}, headers=headers)
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json" and resp.get_json()["status"] == status
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    after = row_counts(bridge)
    assert after["audit_events"] == before["audit_events"] + 1
    assert {k: v for k, v in after.items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"}
    with transaction(bridge.sessions) as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.at.desc())).first()
        assert last is not None and last.action == "auth.denied"


@pytest.mark.parametrize("case", ["other_org", "missing_permission", "unknown_org"])
def test_keys_outside_their_scope_get_403_and_leave_only_an_audit_event(
        bridge: Bridge, client: FlaskClient, case: str) -> None:
    make_org(bridge)
    make_org(bridge, "other")
    key = {"other_org": make_key(bridge, "other"),
           "missing_permission": make_key(bridge, permissions=["users:read"]),
           "unknown_org": make_key(bridge)}[case]
    slug = "ghost" if case == "unknown_org" else "acme"
    before = row_counts(bridge)
    resp = client.post(f"/api/v1/orgs/{slug}/invites", json={"identifier": "a@example.com"},
                       headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 403 and resp.mimetype == "application/problem+json"
    after = row_counts(bridge)
    assert after["audit_events"] == before["audit_events"] + 1
    assert {k: v for k, v in after.items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"}


def test_audit_events_filter_by_action_actor_and_since(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    key = make_key(bridge)
    api = Api(client, key)
    other = Api(client, make_key(bridge))
    a = api.invite("a@example.com")
    other.invite("b@example.com")
    api.post(f"/invites/{a['id']}/revoke")
    created = api.get("/audit-events?action=invite.created").get_json()["items"]
    assert len(created) == 2 and {e["action"] for e in created} == {"invite.created"}
    actor = created[-1]["actor"]
    mine = api.get(f"/audit-events?actor={actor}").get_json()["items"]
    assert mine and {e["actor"] for e in mine} == {actor}
    future = (utcnow() + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert api.get(f"/audit-events?since={future}").get_json()["items"] == []
    past = quote((utcnow() - timedelta(minutes=5)).isoformat())
    assert len(api.get(f"/audit-events?since={past}&limit=100").get_json()["items"]) >= 3
    assert api.get("/audit-events?since=yesterday").status_code == 422
    assert api.get("/audit-events?since=2026-01-01T00:00:00").status_code == 422


def test_audit_events_of_another_org_stay_hidden(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    make_org(bridge, "other")
    Api(client, make_key(bridge, "other"), org="other").invite("x@example.com")
    items = Api(client, make_key(bridge)).get("/audit-events?action=invite.created").get_json()["items"]
    assert items == []
