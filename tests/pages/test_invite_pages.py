"""The invitee pages: code form with CSRF and lockout, rate limits, redirects, one page for every dead link."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.core_jobs import sweep_expired
from idp_bridge.models import Invite, LoginState, Organization, utcnow
from idp_bridge.store.db import transaction
from idp_bridge.web.pages import CSRF_COOKIE
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import OPs, auth_params, finish, snapshot, start, token_of
from tests.pages.test_redeem_rules import ALICE, login


def code_org(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "vault", require_invite_code=True)
    return Api(client, make_key(bridge, "vault"), org="vault")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


def test_a_code_invite_cannot_start_login_without_the_code(ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = code_org(bridge, client).invite("alice@example.com", provider="oidc")

    resp = client.get(f"/invite/{token_of(invite['link'])}/login")

    assert resp.status_code == 303 and resp.headers["Location"] == f"/invite/{token_of(invite['link'])}"


def test_the_right_code_with_the_forms_csrf_token_starts_the_login(
        ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = code_org(bridge, client).invite("alice@example.com", provider="oidc")
    token = token_of(invite["link"])
    csrf = csrf_of(client.get(f"/invite/{token}").get_data(as_text=True))

    resp = client.post(f"/invite/{token}/login", data={"csrf": csrf, "code": invite["code"].lower()})

    assert resp.status_code == 303
    assert auth_params(resp.headers["Location"])["code_challenge_method"] == "S256"
    assert finish(client, "oidc", ops.oidc.authorize(resp.headers["Location"], ALICE)).status_code == 200


def test_a_code_post_without_a_valid_csrf_token_is_refused_and_not_counted(
        ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = code_org(bridge, client).invite("alice@example.com", provider="oidc")
    token = token_of(invite["link"])
    client.get(f"/invite/{token}")

    forged = client.post(f"/invite/{token}/login", data={"csrf": "0" * 64, "code": invite["code"]})
    no_cookie = client.application.test_client().post(f"/invite/{token}/login",
                                                      data={"csrf": "0" * 64, "code": invite["code"]})

    assert forged.status_code == 400 and no_cookie.status_code == 400
    assert "form has expired" in forged.get_data(as_text=True)
    with transaction(bridge.sessions) as session:
        row = session.get(Invite, invite["id"])
        assert row is not None and row.code_failures == 0


def test_five_wrong_codes_lock_the_invite_even_against_the_right_code(
        ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = code_org(bridge, client).invite("alice@example.com", provider="oidc")
    token = token_of(invite["link"])
    csrf = csrf_of(client.get(f"/invite/{token}").get_data(as_text=True))

    wrong = [client.post(f"/invite/{token}/login", data={"csrf": csrf, "code": "WRONG000"}) for _ in range(5)]
    right = client.post(f"/invite/{token}/login", data={"csrf": csrf, "code": invite["code"]})

    assert [r.status_code for r in wrong[:4]] == [400] * 4
    assert "1 try left" in wrong[3].get_data(as_text=True)
    assert right.status_code == 403
    assert "entered wrongly too many times" in right.get_data(as_text=True)
    assert snapshot(bridge, invite["id"]).invite_status == "PENDING"


def test_code_tries_are_rate_limited_per_client(ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    api = code_org(bridge, client)
    invite = api.invite("alice@example.com", provider="oidc")
    token = token_of(invite["link"])
    csrf = csrf_of(client.get(f"/invite/{token}").get_data(as_text=True))

    statuses = [client.post(f"/invite/{token}/login", data={"csrf": csrf, "code": "WRONG000"}).status_code
                for _ in range(25)]

    assert statuses[-1] == 429
    assert statuses.count(429) == 5


def test_a_refused_client_is_told_when_to_come_back(ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    api = code_org(bridge, client)
    invite = api.invite("alice@example.com", provider="oidc")
    token = token_of(invite["link"])
    csrf = csrf_of(client.get(f"/invite/{token}").get_data(as_text=True))

    responses = [client.post(f"/invite/{token}/login", data={"csrf": csrf, "code": "WRONG000"}) for _ in range(21)]

    refused = responses[-1]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Retry-After" not in responses[0].headers


def test_expired_revoked_unknown_and_tampered_links_get_the_same_page_and_status(
        api: Api, bridge: Bridge, client: FlaskClient) -> None:
    expired = api.invite("e@example.com")
    revoked = api.invite("r@example.com")
    api.post(f"/invites/{revoked['id']}/revoke")
    with transaction(bridge.sessions) as session:
        row = session.get(Invite, expired["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    tokens = [token_of(expired["link"]), token_of(revoked["link"]), "x" * 43, token_of(expired["link"])[:-2] + "AA"]

    pages = [client.get(f"/invite/{t}") for t in tokens] + [client.get(f"/invite/{t}/login") for t in tokens]

    assert {p.status_code for p in pages} == {404}
    assert len({p.get_data() for p in pages}) == 1


def test_invite_pages_carry_the_security_headers_and_only_our_own_script(api: Api, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com")

    resp = client.get(f"/invite/{token_of(invite['link'])}")

    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert "script-src 'self';" in resp.headers["Content-Security-Policy"]
    body = resp.get_data(as_text=True)
    # One script, from our own origin, none inline: the page works without it (dates then show in UTC).
    assert body.count("<script") == 1 and '<script src="/console/static/timezone.js" defer></script>' in body
    assert 'name="viewport"' in body
    assert "Sign in to accept" in body


def test_no_parameter_redirects_anywhere_but_the_allowlisted_org_redirect(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    url = start(client, invite["link"], "?next=https://evil.test/&redirect_url=https://evil.test/")
    params: dict[str, Any] = {**ops.oidc.authorize(url, ALICE), "next": "https://evil.test/",
                              "redirect_uri": "https://evil.test/"}

    resp = finish(client, "oidc", params)

    assert resp.status_code == 303 and resp.headers["Location"] == "https://app.test/welcome"


def test_an_org_redirect_dropped_from_the_allowlist_shows_the_welcome_page_instead(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    with transaction(bridge.sessions) as session:
        org = session.query(Organization).filter_by(slug="acme").one()
        org.redirect_url = "https://elsewhere.test/"
    invite = api.invite("alice@example.com", provider="oidc")

    resp = login(client, ops.oidc, invite["link"], "oidc", ALICE)

    assert resp.status_code == 200 and "Welcome to Acme" in resp.get_data(as_text=True)
    assert "Location" not in resp.headers


def test_the_csrf_cookie_is_http_only(api: Api, bridge: Bridge, client: FlaskClient) -> None:
    invite = code_org(bridge, client).invite("alice@example.com")

    resp = client.get(f"/invite/{token_of(invite['link'])}")

    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith(CSRF_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def age_login_states(bridge: Bridge, by: timedelta) -> None:
    with transaction(bridge.sessions) as session:
        for row in session.query(LoginState):
            row.created_at = row.created_at - by


def test_a_login_state_older_than_its_life_is_refused(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    cb = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    age_login_states(bridge, timedelta(minutes=16))

    resp = finish(client, "oidc", cb)

    assert resp.status_code == 400 and ops.oidc.token_requests == 0
    assert snapshot(bridge, invite["id"]).invite_status == "PENDING"


def test_the_sweeper_forgets_day_old_login_states(api: Api, ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    start(client, invite["link"])
    start(client, invite["link"])
    age_login_states(bridge, timedelta(days=2))
    start(client, invite["link"])

    sweep_expired(bridge)

    with transaction(bridge.sessions) as session:
        assert session.query(LoginState).count() == 1


def test_use_another_account_on_a_code_invite_asks_for_the_code_again_then_forces_the_account_choice(
        ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = code_org(bridge, client).invite("alice@example.com", provider="oidc")
    token = token_of(invite["link"])
    csrf = csrf_of(client.get(f"/invite/{token}").get_data(as_text=True))
    first = client.post(f"/invite/{token}/login", data={"csrf": csrf, "code": invite["code"]})
    wrong = finish(client, "oidc", ops.oidc.authorize(first.headers["Location"], {**ALICE, "email": "x@example.com"}))
    again = re.search(r'href="([^"]+)">Use another account', wrong.get_data(as_text=True))
    assert again

    landing = client.get(client.get(again.group(1).replace("&amp;", "&")).headers["Location"])
    form = landing.get_data(as_text=True)
    assert 'name="again" value="1"' in form
    second = client.post(f"/invite/{token}/login", data={"csrf": csrf_of(form), "code": invite["code"], "again": "1"})

    assert auth_params(second.headers["Location"])["prompt"] == "select_account"
    assert finish(client, "oidc", ops.oidc.authorize(second.headers["Location"], ALICE)).status_code == 200
    assert snapshot(bridge, invite["id"]).invite_status == "ACCEPTED"


def test_links_and_the_login_callback_come_from_public_url_never_from_the_host_header(
        api: Api, bridge: Bridge, client: FlaskClient) -> None:
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}
    resp = api.post("/invites", {"identifier": "alice@example.com", "provider": "oidc"}, headers=forged)
    assert resp.status_code == 201
    invite = resp.get_json()
    resent = api.post(f"/invites/{invite['id']}/resend", headers=forged).get_json()

    login = client.get(f"/invite/{token_of(resent['link'])}/login", headers=forged)

    public = bridge.settings.public_url
    assert invite["link"].startswith(f"{public}/invite/") and resent["link"].startswith(f"{public}/invite/")
    assert auth_params(login.headers["Location"])["redirect_uri"] == f"{public}/auth/callback/oidc"
    assert "evil.example" not in login.get_data(as_text=True) + login.headers["Location"]


def test_a_stolen_code_replayed_in_another_login_fails_pkce_and_changes_nothing(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient, app: Any) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    victim = ops.oidc.authorize(start(client, invite["link"]), ALICE)  # the victim's code, not yet redeemed
    attacker = app.test_client()
    attacker_state = auth_params(start(attacker, invite["link"]))["state"]
    injected = {**victim, "state": attacker_state}  # the victim's code (and iss) on the attacker's login

    resp = finish(attacker, "oidc", injected)

    assert resp.status_code == 400
    assert ops.oidc.token_requests == 1  # the bridge sent the code with the attacker's verifier; the OP refused
    snap = snapshot(bridge, invite["id"])
    assert (snap.invite_status, snap.member_status, snap.identities) == ("PENDING", "INVITED", 0)
    assert snap.rejections == ["token_exchange_failed"]
