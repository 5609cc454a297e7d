"""The login-state cookie that binds a login to one browser is always the server's own (no session fixation).

An attacker who plants a value in the invitee's browser (a sibling subdomain, a proxy, a shared machine)
must neither see it adopted for the invitee's next login nor be able to finish that login with it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from http.cookies import SimpleCookie

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.db import transaction
from idp_bridge.models import LoginState, Organization
from idp_bridge.pages import BROWSER_COOKIE
from idp_bridge.security import token_hash
from tests.helpers import Api
from tests.pages.conftest import OPs, finish, snapshot, token_of
from tests.pages.test_redeem_rules import ALICE

PLANTED = secrets.token_urlsafe(32)


def issued_cookie(resp: object) -> str:
    """The login-state cookie value a response sets."""
    for header in resp.headers.getlist("Set-Cookie"):  # type: ignore[attr-defined]
        cookie = SimpleCookie(header)
        if BROWSER_COOKIE in cookie:
            return cookie[BROWSER_COOKIE].value
    raise AssertionError("no login-state cookie was set")


def via_link(client: FlaskClient, api: Api) -> tuple[str, object]:
    """Click "Sign in" on a plain invite (one provider: straight to the IdP)."""
    invite = api.invite("alice@example.com", provider="oidc")
    return invite["id"], client.get(f"/invite/{token_of(invite['link'])}/login")


def via_provider_choice(client: FlaskClient, api: Api) -> tuple[str, object]:
    """An `any` invite: the provider picked on the choice page."""
    invite = api.invite("alice@example.com")
    return invite["id"], client.get(f"/invite/{token_of(invite['link'])}/login?provider=oidc")


def via_code_form(client: FlaskClient, api: Api) -> tuple[str, object]:
    """An invite that needs its code: the landing page's form posted with the code."""
    with transaction(client.application.extensions["idp_bridge"].sessions) as session:
        org = session.scalars(select(Organization).where(Organization.slug == api.org)).one()
        org.require_invite_code = True
    invite = api.invite("alice@example.com", provider="oidc")
    token = token_of(invite["link"])
    form = client.get(f"/invite/{token}").get_data(as_text=True)
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
    assert found
    return invite["id"], client.post(f"/invite/{token}/login", data={"csrf": found.group(1), "code": invite["code"]})


ENTRIES: dict[str, Callable[[FlaskClient, Api], tuple[str, object]]] = {
    "invite link": via_link, "provider choice": via_provider_choice, "invite code form": via_code_form}


def browser_hashes(bridge: Bridge) -> list[str]:
    with transaction(bridge.sessions) as session:
        return list(session.scalars(select(LoginState.browser_hash)))


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_a_planted_login_cookie_is_replaced_by_a_fresh_value_the_login_is_bound_to(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient, entry: str) -> None:
    client.set_cookie(BROWSER_COOKIE, PLANTED)

    _, resp = ENTRIES[entry](client, api)

    assert resp.status_code == 303  # type: ignore[attr-defined]
    issued = issued_cookie(resp)
    assert issued != PLANTED and len(issued) >= 43
    assert browser_hashes(bridge) == [token_hash(issued)]


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_the_planter_cannot_finish_the_invitees_login_even_with_its_code_and_state(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient, entry: str) -> None:
    client.set_cookie(BROWSER_COOKIE, PLANTED)
    invite_id, resp = ENTRIES[entry](client, api)
    callback = ops.oidc.authorize(resp.headers["Location"], ALICE)  # type: ignore[attr-defined]
    planter = client.application.test_client()
    planter.set_cookie(BROWSER_COOKIE, PLANTED)

    stolen = finish(planter, "oidc", callback)

    assert stolen.status_code == 400 and "sign-in attempt has expired" in stolen.get_data(as_text=True)
    assert ops.oidc.token_requests == 0
    assert snapshot(bridge, invite_id).invite_status == "PENDING"
    own = finish(client, "oidc", callback)
    assert own.status_code == 303 and snapshot(bridge, invite_id).invite_status == "ACCEPTED"


def test_a_value_the_server_issued_earlier_is_not_reused_for_the_next_login(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    _, first = via_link(client, api)
    invite = api.invite("bob@example.com", provider="oidc")

    second = client.get(f"/invite/{token_of(invite['link'])}/login")

    assert issued_cookie(first) != issued_cookie(second)
    assert sorted(browser_hashes(bridge)) == sorted([token_hash(issued_cookie(first)),
                                                     token_hash(issued_cookie(second))])

