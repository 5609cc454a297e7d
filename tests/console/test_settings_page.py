"""Settings: for owner roles (and roles holding orgs:manage); org settings through the API's service; API keys
created with at most the member's permissions and shown once, rotated, deleted after "Confirm"."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.models import Organization
from idp_bridge.store.db import transaction
from tests.console.conftest import ADMIN, BASE, Org, get, post, sign_in
from tests.pages.conftest import OPs


def _org(bridge: Bridge) -> Organization:
    with transaction(bridge.sessions) as session:
        org = session.query(Organization).filter_by(slug="acme").one()
        session.expunge(org)
        return org


def _key(html: str) -> str:
    found = re.search(r'id="secret" readonly class="secret" value="([^"]+)"', html)
    assert found
    return unescape(found.group(1))


def test_an_owner_changes_the_org_settings(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    resp = post(owner, "/console/acme/settings", {"name": "Acme Corp", "invite_ttl_hours": "48",
                                                  "require_invite_code": "1", "allowed_providers": ["oidc"]})

    assert resp.status_code == 303
    org = _org(bridge)
    assert (org.name, org.invite_ttl_hours, org.require_invite_code, org.allowed_providers) == (
        "Acme Corp", 48, True, ["oidc"])


def test_a_redirect_off_the_allowlist_is_shown_next_to_its_field_and_nothing_changes(
        owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    resp = post(owner, "/console/acme/settings", {"name": "Renamed", "redirect_url": "https://evil.example/x",
                                                  "invite_ttl_hours": "48"})

    assert resp.status_code == 422 and 'id="redirect_url-error"' in resp.get_data(as_text=True)
    assert (_org(bridge).name, _org(bridge).invite_ttl_hours) == ("Acme", 336)


def test_an_admin_without_orgs_manage_gets_403_naming_it(ops: OPs, client: FlaskClient, acme: Org) -> None:
    sign_in(client, ops.oidc, ADMIN)

    assert ">Settings<" not in get(client, "/console/acme/members").get_data(as_text=True)
    resp = get(client, "/console/acme/settings")
    assert resp.status_code == 403 and "orgs:manage" in resp.get_data(as_text=True)


def test_an_api_key_is_shown_once_works_and_can_be_rotated_and_deleted(owner: FlaskClient, acme: Org,
                                                                       app: Any) -> None:
    created = post(owner, "/console/acme/settings/api-keys", {"key_name": "ci", "permissions": ["users:read"]})
    secret = _key(created.get_data(as_text=True))
    api = app.test_client()

    def works(key: str) -> bool:
        return int(api.get("/api/v1/orgs/acme/members", headers={"Authorization": f"Bearer {key}"}).status_code) \
            == 200

    assert created.status_code == 200 and works(secret)
    settings = get(owner, "/console/acme/settings").get_data(as_text=True)
    assert secret not in settings and secret[:12] in settings
    key_id = re.findall(r"/settings/api-keys/([^/]+)/rotate", settings)[-1]
    asked = post(owner, f"/console/acme/settings/api-keys/{key_id}/rotate")
    assert ">Confirm</button>" in asked.get_data(as_text=True) and works(secret)
    rotated = _key(post(owner, f"/console/acme/settings/api-keys/{key_id}/rotate", {"confirmed": "1"})
                   .get_data(as_text=True))
    assert works(rotated) and not works(secret)
    new_id = re.findall(r"/settings/api-keys/([^/]+)/delete", get(owner, "/console/acme/settings")
                        .get_data(as_text=True))[-1]
    assert post(owner, f"/console/acme/settings/api-keys/{new_id}/delete", {"confirmed": "1"}).status_code == 303
    assert not works(rotated)


def test_a_key_cannot_be_given_orgs_manage(owner: FlaskClient, acme: Org) -> None:
    page = get(owner, "/console/acme/settings").get_data(as_text=True)
    assert 'value="orgs:manage"' not in page

    resp = owner.post("/console/acme/settings/api-keys", base_url=BASE, data={
        "csrf_token": re.findall(r'name="csrf_token" value="([^"]+)"', page)[0], "permissions": ["orgs:manage"]})

    assert resp.status_code == 403 and "orgs:manage" in resp.get_data(as_text=True)
