"""The login-state cookie that binds a login to one browser is always the server's own (no session fixation).

An attacker who plants a value in the invitee's browser (a sibling subdomain, a proxy, a shared machine) —
made up, or one this server issued to the attacker's own browser — must neither see it bound to the
invitee's next login nor be able to finish that login with it, whichever way the invitee starts signing in.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import LoginState, Organization
from idp_bridge.security import token_hash
from idp_bridge.store.db import transaction
from idp_bridge.web.pages import BROWSER_COOKIE
from tests.helpers import Api
from tests.pages.conftest import OPs, finish, snapshot, start, token_of
from tests.pages.test_redeem_rules import ALICE


def issued_cookie(resp: Any) -> list[str]:
    """The values of the login-state cookie a response sets, newest first."""
    for header in resp.headers.getlist("Set-Cookie"):
        cookie = SimpleCookie(header)
        if BROWSER_COOKIE in cookie:
            return cookie[BROWSER_COOKIE].value.split(".")
    raise AssertionError("no login-state cookie was set")


def via_link(client: FlaskClient, api: Api, who: str) -> tuple[str, Any]:
    """Click "Sign in" on a plain invite (one provider: straight to the IdP)."""
    invite = api.invite(f"{who}@example.com", provider="oidc")
    return invite["id"], client.get(f"/invite/{token_of(invite['link'])}/login")


def via_provider_choice(client: FlaskClient, api: Api, who: str) -> tuple[str, Any]:
    """An `any` invite: the provider picked on the choice page."""
    invite = api.invite(f"{who}@example.com")
    return invite["id"], client.get(f"/invite/{token_of(invite['link'])}/login?provider=oidc")


def via_code_form(client: FlaskClient, api: Api, who: str) -> tuple[str, Any]:
    """An invite that needs its code: the landing page's form posted with the code."""
    with transaction(client.application.extensions["idp_bridge"].sessions) as session:
        org = session.scalars(select(Organization).where(Organization.slug == api.org)).one()
        org.require_invite_code = True
    invite = api.invite(f"{who}@example.com", provider="oidc")
    token = token_of(invite["link"])
    form = client.get(f"/invite/{token}").get_data(as_text=True)
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
    assert found
    return invite["id"], client.post(f"/invite/{token}/login", data={"csrf": found.group(1), "code": invite["code"]})


ENTRIES: dict[str, Callable[[FlaskClient, Api, str], tuple[str, Any]]] = {
    "invite link": via_link, "provider choice": via_provider_choice, "invite code form": via_code_form}


def made_up(_client: FlaskClient, _api: Api) -> str:
    return secrets.token_urlsafe(32)


def issued_to_the_planter(client: FlaskClient, api: Api) -> str:
    """A genuine value: the one this server set in the planter's own browser for the planter's own invite."""
    planter = client.application.test_client()
    invite = api.invite("mallory@example.com", provider="oidc")
    return issued_cookie(planter.get(f"/invite/{token_of(invite['link'])}/login"))[0]


PLANTS: dict[str, Callable[[FlaskClient, Api], str]] = {
    "made-up value": made_up, "value issued to the planter": issued_to_the_planter}


def bound_to(bridge: Bridge, invite_id: str) -> list[str]:
    with transaction(bridge.sessions) as session:
        return list(session.scalars(select(LoginState.browser_hash).where(LoginState.invite_id == invite_id)))


@pytest.mark.parametrize("plant", sorted(PLANTS))
@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_a_planted_login_cookie_is_never_what_the_invitees_login_is_bound_to(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient, entry: str, plant: str) -> None:
    planted = PLANTS[plant](client, api)
    client.set_cookie(BROWSER_COOKIE, planted)

    invite_id, resp = ENTRIES[entry](client, api, "alice")

    assert resp.status_code == 303
    fresh, *kept = issued_cookie(resp)
    assert fresh != planted and len(fresh) >= 43
    assert bound_to(bridge, invite_id) == [token_hash(fresh)]
    if plant == "made-up value":
        assert kept == []  # a value the server never made is dropped, not carried along


@pytest.mark.parametrize("plant", sorted(PLANTS))
@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_the_planter_cannot_finish_the_invitees_login_even_with_its_code_and_state(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient, entry: str, plant: str) -> None:
    planted = PLANTS[plant](client, api)
    client.set_cookie(BROWSER_COOKIE, planted)
    invite_id, resp = ENTRIES[entry](client, api, "alice")
    callback = ops.oidc.authorize(resp.headers["Location"], ALICE)
    planter = client.application.test_client()
    planter.set_cookie(BROWSER_COOKIE, planted)
    exchanges = ops.oidc.token_requests

    stolen = finish(planter, "oidc", callback)

    assert stolen.status_code == 400 and "sign-in attempt has expired" in stolen.get_data(as_text=True)
    assert ops.oidc.token_requests == exchanges  # refused before the code was even sent to the OP
    assert snapshot(bridge, invite_id).invite_status == "PENDING"
    own = finish(client, "oidc", callback)
    assert own.status_code == 303 and snapshot(bridge, invite_id).invite_status == "ACCEPTED"


def test_each_login_gets_its_own_new_value_and_earlier_tabs_still_finish(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    first_tab = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    first_value = client.get_cookie(BROWSER_COOKIE).value  # type: ignore[union-attr]
    second_tab = start(client, invite["link"])
    second_values = client.get_cookie(BROWSER_COOKIE).value.split(".")  # type: ignore[union-attr]

    assert second_values[0] != first_value and second_values[1:] == [first_value]
    assert sorted(bound_to(bridge, invite["id"])) == sorted([token_hash(first_value), token_hash(second_values[0])])
    assert finish(client, "oidc", first_tab).status_code == 303
    assert finish(client, "oidc", ops.oidc.authorize(second_tab, ALICE)).status_code == 303
