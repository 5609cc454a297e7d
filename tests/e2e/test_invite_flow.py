"""End to end: the invitee's browser (Chromium), idp-bridge as a real HTTP server, and a real OpenID Provider."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import requests
from playwright.sync_api import Page
from sqlalchemy import select
from werkzeug.serving import make_server

from idp_bridge.bootstrap import build, create_app
from idp_bridge.bridge import Bridge
from idp_bridge.models import Event, Invite, Member, utcnow
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from tests.e2e.browser import LOGIN_INPUT, sign_in
from tests.e2e.oidc_op import OPAccount, OPClient, OpenIDProvider, free_loopback_port
from tests.helpers import make_key, make_org

pytestmark = pytest.mark.e2e

CLIENT_ID = "idp-bridge-e2e"
CLIENT_SECRET = "e2e-secret-for-tests-only"
ALICE = OPAccount(login="alice", sub="sub-alice", email="alice@example.com", name="Alice Example")
BOB = OPAccount(login="bob", sub="sub-bob", email="bob@example.org", name="Bob Example")


@dataclass
class Live:
    """idp-bridge serving on loopback, wired to the OP."""

    url: str
    bridge: Bridge
    op: OpenIDProvider
    key: str

    @property
    def landing(self) -> str:
        return f"{self.url}/healthz"

    def invite(self, identifier: str, **fields: Any) -> dict[str, Any]:
        resp = requests.post(f"{self.url}/api/v1/orgs/acme/invites", json={"identifier": identifier, **fields},
                             headers={"Authorization": f"Bearer {self.key}"}, timeout=10)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def state(self, invite_id: str) -> tuple[str, str, list[str]]:
        with transaction(self.bridge.sessions) as session:
            invite = session.get(Invite, invite_id)
            assert invite is not None
            member = session.get(Member, invite.member_id)
            assert member is not None
            types = list(session.scalars(select(Event.type).where(Event.member_id == member.id)))
            return invite.status, member.status, types


@pytest.fixture
def live(settings_overrides: dict[str, Any], mail: Any) -> Iterator[Live]:
    port = free_loopback_port()
    public = f"http://127.0.0.1:{port}"
    client = OPClient(CLIENT_ID, CLIENT_SECRET, [f"{public}/auth/callback/oidc"])
    with OpenIDProvider(clients=[client], accounts=[ALICE, BOB]) as op:
        settings_overrides.update(
            public_url=public, redirect_allowlist=[f"{public}/healthz"],
            providers={"oidc": {"type": "oidc", "issuer": op.issuer, "client_id": CLIENT_ID,
                                "client_secret": CLIENT_SECRET, "label": "Test OP"}})
        bridge = build(load_settings(overrides=settings_overrides, environ={}), mail=mail)
        server = make_server("127.0.0.1", port, create_app(bridge=bridge), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            make_org(bridge, "acme", redirect_url=f"{public}/healthz")
            yield Live(public, bridge, op, make_key(bridge, "acme"))
        finally:
            server.shutdown()
            thread.join(timeout=5)
            bridge.close()


def test_an_invitee_opens_the_link_signs_in_at_the_op_and_becomes_an_active_member(
        live: Live, new_page: Page) -> None:
    invite = live.invite("alice@example.com", provider="oidc")

    new_page.goto(invite["link"])
    new_page.get_by_role("link", name="Sign in to accept").click()
    assert new_page.locator(LOGIN_INPUT).input_value() == "alice@example.com"
    sign_in(new_page, ALICE.login)
    new_page.wait_for_url(live.landing)

    invite_status, member_status, events = live.state(invite["id"])
    assert (invite_status, member_status) == ("ACCEPTED", "ACTIVE")
    assert "member.activated" in events
    sent = live.op.authorization_requests()[-1]
    assert sent["code_challenge_method"] == "S256" and sent["login_hint"] == "alice@example.com"


def test_a_wrong_account_keeps_the_invite_and_use_another_account_succeeds(live: Live, new_page: Page) -> None:
    invite = live.invite("alice@example.com", provider="oidc")

    new_page.goto(invite["link"])
    new_page.get_by_role("link", name="Sign in to accept").click()
    sign_in(new_page, BOB.login)
    new_page.get_by_role("heading", name="This account can't accept the invitation").wait_for()
    body = new_page.content()
    assert "b•••b@example.org" in body and "alice@example.com" in body
    assert live.state(invite["id"])[:2] == ("PENDING", "INVITED")

    new_page.get_by_role("link", name="Use another account").click()
    new_page.locator(LOGIN_INPUT).wait_for()
    assert live.op.authorization_requests()[-1]["prompt"] == "select_account"
    sign_in(new_page, ALICE.login)
    new_page.wait_for_url(live.landing)

    assert live.state(invite["id"])[:2] == ("ACCEPTED", "ACTIVE")


def test_an_expired_link_shows_the_invalid_page(live: Live, new_page: Page) -> None:
    invite = live.invite("alice@example.com", provider="oidc")
    with transaction(live.bridge.sessions) as session:
        row = session.get(Invite, invite["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(minutes=1)

    response = new_page.goto(invite["link"])

    assert response is not None and response.status == 404
    assert new_page.get_by_role("heading", name="This invitation link is not valid").is_visible()
    assert new_page.get_by_role("link", name="Sign in to accept").count() == 0
