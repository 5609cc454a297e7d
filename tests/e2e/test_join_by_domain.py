"""End to end: joining an org by a verified domain, in Chromium, against a real OpenID Provider."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from werkzeug.serving import make_server

from idp_bridge.bootstrap import build, create_app
from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Event, Member
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from tests.dnsserver import LoopbackDNS
from tests.e2e.browser import LOGIN_INPUT, sign_in
from tests.e2e.conftest import PAGE_TIMEOUT_MS
from tests.e2e.oidc_op import OPAccount, OPClient, OpenIDProvider, free_loopback_port
from tests.e2e.test_console_flow import capture
from tests.helpers import make_key, make_org

pytestmark = pytest.mark.e2e

CLIENT_ID = "idp-bridge-e2e"
CLIENT_SECRET = "e2e-secret-for-tests-only"
ALICE = OPAccount(login="alice", sub="sub-alice", email="alice@contoso.test", name="Alice Contoso")
MALLORY = OPAccount(login="mallory", sub="sub-mallory", email="mallory@contoso.test", email_verified=False)
BOSS = OPAccount(login="boss", sub="sub-boss", email="boss@example.com", name="Boss Example")
# A verified address on a subdomain of the verified domain: the parent's verification does not cover it.
EVE = OPAccount(login="eve", sub="sub-eve", email="eve@mail.contoso.test", name="Eve Subdomain")
ADMIN = ["orgs:manage", "users:read", "users:invite"]


@dataclass
class Live:
    """idp-bridge serving on loopback, wired to the OP, with an org that verified contoso.test."""

    url: str
    bridge: Bridge
    key: str

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.url}/api/v1/orgs/acme{path}", json=body, timeout=10,
                                headers={"Authorization": f"Bearer {self.key}"})

    def members(self) -> list[tuple[str | None, str, str]]:
        with transaction(self.bridge.sessions) as session:
            return [(m.email, m.status, m.role) for m in session.scalars(select(Member))]

    def events(self) -> list[str]:
        with transaction(self.bridge.sessions) as session:
            return list(session.scalars(select(Event.type).order_by(Event.created_at)))


def serve(bridge: Bridge, port: int) -> Callable[[], None]:
    """Serve the app on loopback in a thread; returns the function that stops it."""
    server = make_server("127.0.0.1", port, create_app(bridge=bridge), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=5)

    return stop


@pytest.fixture
def live(settings_overrides: dict[str, Any], mail: Any, dns_server: LoopbackDNS) -> Iterator[Live]:
    port = free_loopback_port()
    public = f"http://127.0.0.1:{port}"
    client = OPClient(CLIENT_ID, CLIENT_SECRET, [f"{public}/auth/callback/oidc"])
    with OpenIDProvider(clients=[client], accounts=[ALICE, MALLORY, BOSS, EVE]) as op:
        settings_overrides.update(
            public_url=public, redirect_allowlist=[f"{public}/healthz"],
            providers={"oidc": {"type": "oidc", "issuer": op.issuer, "client_id": CLIENT_ID,
                                "client_secret": CLIENT_SECRET, "label": "Test OP"}})
        with verified_org(settings_overrides, mail, dns_server, port) as found:
            yield found


@contextmanager
def verified_org(settings_overrides: dict[str, Any], mail: Any, dns_server: LoopbackDNS,
                 port: int) -> Iterator[Live]:
    """idp-bridge built from the settings and serving on `port`, with an org "acme" that verified contoso.test."""
    public = f"http://127.0.0.1:{port}"
    bridge = build(load_settings(overrides=settings_overrides, environ={}), mail=mail)
    stop = serve(bridge, port)
    try:
        make_org(bridge, "acme", redirect_url=f"{public}/healthz")
        found = Live(public, bridge, make_key(bridge, "acme", ADMIN))
        # The org proves contoso.test through the DNS challenge, answered by the loopback DNS server.
        domain = found.api("POST", "/domains", {"domain": "contoso.test"}).json()
        dns_server.txt[domain["challenge"]["name"]] = [domain["challenge"]["value"]]
        assert found.api("POST", f"/domains/{domain['id']}/verify").status_code == 200
        yield found
    finally:
        stop()
        bridge.close()


def test_a_verified_address_on_the_verified_domain_joins_from_the_join_page(live: Live, new_page: Page) -> None:
    assert live.api("PATCH", "", {"domain_join": "auto"}).status_code == 200

    new_page.goto(f"{live.url}/join/acme")
    new_page.get_by_role("heading", name="Join Acme").wait_for()
    new_page.get_by_role("link", name="Sign in with Test OP").click()
    sign_in(new_page, ALICE.login)
    new_page.wait_for_url(f"{live.url}/healthz")

    assert live.members() == [("alice@contoso.test", "ACTIVE", "MEMBER")]
    assert live.events() == ["member.joined"]


def test_an_unverified_address_is_told_why_and_nothing_but_an_audit_event_is_stored(
        live: Live, new_page: Page) -> None:
    assert live.api("PATCH", "", {"domain_join": "auto"}).status_code == 200

    new_page.goto(f"{live.url}/join/acme")
    new_page.get_by_role("link", name="Sign in with Test OP").click()
    sign_in(new_page, MALLORY.login)
    new_page.get_by_role("heading", name="You can't join Acme with this account").wait_for()

    assert "not verified by its provider" in new_page.content()
    assert new_page.get_by_role("link", name="Use another account").is_visible()
    assert live.members() == [] and live.events() == []
    with transaction(live.bridge.sessions) as session:
        reasons = [a.details["reason"] for a in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "join.rejected"))]
    assert reasons == ["email_not_verified"]


@pytest.mark.parametrize("account", [BOSS, EVE], ids=["another-domain", "subdomain"])
def test_a_verified_address_off_the_verified_domain_does_not_join(live: Live, new_page: Page,
                                                                   account: OPAccount) -> None:
    assert live.api("PATCH", "", {"domain_join": "auto"}).status_code == 200

    new_page.goto(f"{live.url}/join/acme")
    new_page.get_by_role("link", name="Sign in with Test OP").click()
    sign_in(new_page, account.login)
    new_page.get_by_role("heading", name="You can't join Acme with this account").wait_for()

    assert live.members() == [] and live.events() == []
    with transaction(live.bridge.sessions) as session:
        reasons = [a.details["reason"] for a in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "join.rejected"))]
    assert reasons == ["domain_not_verified"]


def _admin_in_the_console(live: Live, page: Page) -> None:
    """Boss is invited as ADMIN, accepts, and signs in to the console (the OP may remember him)."""
    invite = live.api("POST", "/invites", {"identifier": BOSS.email, "provider": "oidc", "role": "ADMIN"}).json()
    page.goto(invite["link"])
    page.get_by_role("link", name="Sign in to accept").click()
    sign_in(page, BOSS.login)
    page.wait_for_url(f"{live.url}/healthz")
    page.goto(f"{live.url}/console")
    members = page.get_by_role("heading", name="Members")
    page.locator(LOGIN_INPUT).or_(members).first.wait_for()
    if page.locator(LOGIN_INPUT).is_visible():
        sign_in(page, BOSS.login)
    members.wait_for()


def test_in_request_mode_the_request_waits_for_an_admin_who_approves_it_in_the_console(
        live: Live, new_page: Page, chromium: Browser) -> None:
    assert live.api("PATCH", "", {"domain_join": "request"}).status_code == 200

    new_page.goto(f"{live.url}/join/acme")
    new_page.get_by_role("link", name="Sign in with Test OP").click()
    sign_in(new_page, ALICE.login)
    new_page.get_by_role("heading", name="Your request to join Acme was sent").wait_for()
    assert live.members() == []

    admin_context = chromium.new_context()
    admin_context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        admin = admin_context.new_page()
        _admin_in_the_console(live, admin)
        admin.get_by_role("link", name="Join requests").click()
        row = admin.locator("tbody tr").filter(has_text="alice@contoso.test")
        expect(row.get_by_text("Pending")).to_be_visible()
        expect(row.get_by_text("Test OP")).to_be_visible()
        capture(admin, "join-requests-pending")
        admin.get_by_role("button", name="Approve alice@contoso.test").click()
        admin.get_by_text("the person is now an active member").wait_for()
        expect(row.get_by_text("Approved")).to_be_visible()
        expect(admin.get_by_role("button", name="Approve alice@contoso.test")).to_have_count(0)
    finally:
        admin_context.close()

    assert ("alice@contoso.test", "ACTIVE", "MEMBER") in live.members()
    # The admin's own invitation added events of its own; these are the join's.
    assert [e for e in live.events() if e.startswith(("join_request.", "member.joined"))] == [
        "join_request.created", "member.joined"]
    with transaction(live.bridge.sessions) as session:
        (approved,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "join_request.approved"))
        assert approved.details["actor"]["email"] == BOSS.email
