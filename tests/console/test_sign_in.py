"""Console sign-in: the invitee's OIDC code path, an identity bound to an ACTIVE member, a session cookie."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from tests.console.conftest import ADMIN, BASE, OWNER, Org, get, sign_in
from tests.pages.conftest import OPs


def test_the_sign_in_page_offers_each_configured_provider_by_its_label(ops: OPs, client: FlaskClient) -> None:
    body = get(client, "/console").get_data(as_text=True)

    assert "Sign in with " in body
    for label in ("Google", "Microsoft"):
        assert label in body


def test_an_active_member_signs_in_and_lands_on_the_members_page(ops: OPs, client: FlaskClient, acme: Org) -> None:
    resp = sign_in(client, ops.oidc, OWNER)

    assert resp.status_code == 303 and resp.headers["Location"].endswith("/console")
    cookie = resp.headers.getlist("Set-Cookie")
    console_cookie = next(c for c in cookie if c.startswith("ib_console="))
    assert "HttpOnly" in console_cookie and "Secure" in console_cookie and "SameSite=Lax" in console_cookie
    assert "Path=/console" in console_cookie
    landing = get(client, "/console")
    assert landing.status_code == 303 and landing.headers["Location"].endswith("/console/acme/members")
    assert get(client, "/console/acme/members").status_code == 200


def test_an_identity_bound_to_no_member_gets_no_session(ops: OPs, client: FlaskClient, acme: Org) -> None:
    stranger = {"sub": "stranger", "email": "owner@example.com", "email_verified": True}

    resp = sign_in(client, ops.oidc, stranger)

    assert resp.status_code == 403
    assert "not linked to an active member" in resp.get_data(as_text=True)
    assert client.get_cookie("ib_console", domain="join.test", path="/console") is None
    assert get(client, "/console/acme/members").status_code == 303


def test_a_deactivated_member_is_refused_at_sign_in_and_on_the_next_request(
        ops: OPs, client: FlaskClient, acme: Org, app: Any) -> None:
    assert sign_in(client, ops.oidc, ADMIN).status_code == 303
    assert get(client, "/console/acme/members").status_code == 200

    acme.api.post(f"/members/{acme.ids['ADMIN']}/deactivate")

    assert get(client, "/console/acme/members").status_code == 403
    other = app.test_client()
    assert sign_in(other, ops.oidc, ADMIN).status_code == 403


def test_sign_out_ends_the_session_and_needs_the_csrf_token(ops: OPs, client: FlaskClient, acme: Org) -> None:
    sign_in(client, ops.oidc, OWNER)
    page = get(client, "/console/acme/members").get_data(as_text=True)
    from tests.console.conftest import csrf_of

    refused = client.post("/console/sign-out", data={}, base_url=BASE)
    assert refused.status_code == 400
    assert get(client, "/console/acme/members").status_code == 200

    done = client.post("/console/sign-out", data={"csrf_token": csrf_of(page)}, base_url=BASE)
    assert done.status_code == 303
    assert get(client, "/console/acme/members").status_code == 303


def test_a_sign_in_is_audited_with_the_member_as_actor(ops: OPs, client: FlaskClient, acme: Org,
                                                        bridge: Bridge) -> None:
    from tests.console.conftest import audit_actions

    sign_in(client, ops.oidc, OWNER)

    signed = [e for e in audit_actions(bridge) if e.action == "console.signed_in"]
    assert len(signed) == 1
    assert signed[0].actor == f"member:{acme.ids['OWNER']}"
    assert signed[0].details["actor"] == {"type": "member", "id": acme.ids["OWNER"], "email": "owner@example.com"}


def test_starting_a_new_sign_in_ends_the_session_the_browser_held(ops: OPs, client: FlaskClient, acme: Org,
                                                             bridge: Bridge) -> None:
    from idp_bridge.models import ConsoleSession
    from idp_bridge.store.db import transaction

    sign_in(client, ops.oidc, OWNER)
    old = client.get_cookie("ib_console", domain="join.test", path="/console")
    assert old is not None

    sign_in(client, ops.oidc, OWNER)

    with transaction(bridge.sessions) as session:
        assert session.query(ConsoleSession).count() == 1
    new = client.get_cookie("ib_console", domain="join.test", path="/console")
    assert new is not None and new.value != old.value


def test_a_token_that_fails_validation_opens_no_session_and_offers_to_try_again(
        ops: OPs, client: FlaskClient, acme: Org) -> None:
    resp = sign_in(client, ops.oidc, {**OWNER, "aud": "someone-else"})

    assert resp.status_code == 400 and "/console/login?provider=oidc" in resp.get_data(as_text=True)
    assert client.get_cookie("ib_console", domain="join.test", path="/console") is None


def test_a_console_login_state_is_used_once(ops: OPs, client: FlaskClient, acme: Org) -> None:
    start = get(client, "/console/login?provider=oidc")
    cb = ops.oidc.authorize(str(start.headers["Location"]), OWNER)
    assert client.get("/auth/callback/oidc", query_string=cb, base_url=BASE).status_code == 303

    replay = client.get("/auth/callback/oidc", query_string=cb, base_url=BASE)

    assert replay.status_code == 400
