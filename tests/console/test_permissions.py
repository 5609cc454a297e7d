"""Every console route, from the route registry, for every role: allowed when the role holds the route's
permission, otherwise 403 with a page naming the missing permission; signed out, nothing is reachable."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.web.console import ROUTES, ConsoleRoute
from tests.console.conftest import BASE, Org, csrf_of, get, join, sign_in
from tests.pages.conftest import OPs

ROLES: dict[str, dict[str, Any]] = {
    "OWNER": {"owner": True, "permissions": ["users:read", "users:invite", "users:edit", "users:delete",
                                             "webhooks:manage", "audit:read"]},
    "ADMIN": {"permissions": ["users:read", "users:invite", "users:edit", "users:delete", "webhooks:manage",
                              "audit:read"]},
    "MEMBER": {"default": True, "permissions": ["users:read"]},
    "EDITOR": {"permissions": ["users:read", "users:edit"]},
    "INVITER": {"permissions": ["users:read", "users:invite"]},
    "REMOVER": {"permissions": ["users:read", "users:delete"]},
}


@pytest.fixture
def custom_roles(settings_overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    settings_overrides["roles"] = ROLES
    return ROLES


def test_the_registry_lists_every_org_page_of_the_console(app: Any) -> None:
    registered = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/console/<org>")}

    assert registered == {route.rule for route in ROUTES}
    assert all(route.permission for route in ROUTES)


def _url(route: ConsoleRoute, ids: dict[str, str]) -> str:
    return (route.rule.replace("<org>", "acme").replace("<member_id>", ids["member"])
            .replace("<invite_id>", ids["invite"]).replace("<key_id>", "no-such-key")
            .replace("<request_id>", "no-such-request").replace("<domain_id>", "no-such-domain"))


def _request(client: FlaskClient, route: ConsoleRoute, ids: dict[str, str]) -> Any:
    if "GET" in route.methods:
        return get(client, _url(route, ids))
    token = csrf_of(get(client, "/console/acme/members").get_data(as_text=True))
    return client.post(_url(route, ids), data={"csrf_token": token}, base_url=BASE)


@pytest.mark.parametrize("role", list(ROLES))
def test_each_route_answers_each_role_by_the_permissions_of_that_role(
        custom_roles: Any, ops: OPs, client: FlaskClient, bridge: Bridge, app: Any, role: str) -> None:
    from tests.helpers import Api, make_key, make_org

    make_org(bridge, "acme")
    api = Api(app.test_client(), make_key(bridge, "acme"))
    claims = {"sub": f"{role}-sub", "email": f"{role.lower()}@example.com", "email_verified": True}
    join(api, app.test_client(), ops.oidc, claims, role)
    ids = {"member": join(api, app.test_client(), ops.oidc, {"sub": "x", "email": "x@example.com",
                                                              "email_verified": True}, "MEMBER"),
           "invite": str(api.invite("p@example.com", provider="oidc")["id"])}
    assert sign_in(client, ops.oidc, claims).status_code == 303
    # An owner role manages its own org in the console (Settings) without the platform's orgs:manage.
    held = set(ROLES[role]["permissions"]) | ({"orgs:manage"} if ROLES[role].get("owner") else set())

    for route in ROUTES:
        resp = _request(client, route, ids)
        body = resp.get_data(as_text=True)
        if route.permission in held:
            assert resp.status_code != 403, (role, route.rule, body[:300])
        else:
            assert resp.status_code == 403, (role, route.rule)
            assert f"does not have the permission {route.permission}" in body, (role, route.rule)


def test_signed_out_every_route_sends_to_sign_in_or_refuses(ops: OPs, client: FlaskClient, acme: Org) -> None:
    ids = {"member": acme.ids["MEMBER"], "invite": "nothing"}

    for route in ROUTES:
        if "GET" in route.methods:
            resp = get(client, _url(route, ids))
            assert resp.status_code == 303 and resp.headers["Location"].endswith("/console"), route.rule
        else:
            resp = client.post(_url(route, ids), data={}, base_url=BASE)
            assert resp.status_code == 401, route.rule


def test_a_member_of_one_org_cannot_open_another(ops: OPs, client: FlaskClient, acme: Org, bridge: Bridge) -> None:
    from tests.console.conftest import OWNER
    from tests.helpers import make_org

    make_org(bridge, "other")
    sign_in(client, ops.oidc, OWNER)

    assert get(client, "/console/other/members").status_code == 403
    assert get(client, "/console/nope/members").status_code == 403
