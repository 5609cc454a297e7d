"""End to end: an owner runs the org in the admin console in Chromium, signed in at a real OpenID Provider; a
member sees only what their role permits. Every page is captured at 1280 and 390 px (test-artifacts/console/),
holds to the console's accessibility checks, and scrolls sideways at neither width."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from werkzeug.serving import make_server

from idp_bridge.bootstrap import build, create_app
from idp_bridge.models import ApiKey, Invite, Member, Organization, OrgDomain
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from tests.console.test_console_accessibility import check
from tests.e2e.browser import LOGIN_INPUT, sign_in
from tests.e2e.conftest import PAGE_TIMEOUT_MS
from tests.e2e.oidc_op import OPClient, OpenIDProvider, free_loopback_port
from tests.e2e.test_invite_flow import ALICE, BOB, CLIENT_ID, CLIENT_SECRET, Live, live
from tests.helpers import make_key, make_org

__all__ = ["live"]
pytestmark = pytest.mark.e2e

ARTIFACTS = Path("test-artifacts") / "console"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
# Entra is configured so invites can be restricted to a tenant; nobody signs in through it, so its authority is a
# loopback port where nothing listens.
ENTRA = {"type": "entra", "tenant": "organizations", "client_id": "e2e-entra", "client_secret": "unused",
         "authority": "https://127.0.0.1:9", "label": "Microsoft"}
IMPORT_CSV = ("email,name,role,team\n"
              "cara@example.com,Cara,MEMBER,red\n"
              "not an email,Nobody,MEMBER,blue\n"
              "dan@example.com,Dan,CAPTAIN,green\n"
              "emil@example.com,Emil,MEMBER,red\n")


class Shown:
    """The page as the browser holds it, in the shape the console's accessibility checks read."""

    def __init__(self, html: str, status: int) -> None:
        self.html, self.status_code = html, status

    def get_data(self, as_text: bool = True) -> str:
        return self.html


def capture(page: Page, name: str, status: int = 200) -> None:
    """Save the page at each width, check that nothing scrolls sideways there, and check its structure."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, (x, y) in WIDTHS.items():
        page.set_viewport_size({"width": x, "height": y})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        sideways = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
        assert sideways <= 0, f"{name} scrolls sideways by {sideways}px at {width}"
        check(f"{name} ({width})", Shown(page.content(), status), status)
    page.set_viewport_size({"width": WIDTHS["desktop"][0], "height": WIDTHS["desktop"][1]})


def accept(page: Page, live: Live, link: str, login: str) -> None:
    """Open an invite link and accept it at the OP (which may remember the account and not ask)."""
    page.goto(link)
    page.get_by_role("link", name="Sign in to accept").click()
    for _ in range(60):
        if page.url == live.landing:
            return
        if page.locator(LOGIN_INPUT).is_visible():
            sign_in(page, login)
            break
        page.wait_for_timeout(250)
    page.wait_for_url(live.landing)


def console_sign_in(page: Page, live: Live, login: str) -> None:
    """Sign in to the console with the test OP (the sign-in page offers each configured provider)."""
    page.goto(f"{live.url}/console")
    page.get_by_role("link", name="Sign in with Test OP").click()
    done = page.get_by_role("heading", name="Members").or_(page.get_by_role("heading",
                                                                           name="Choose an organization"))
    page.locator(LOGIN_INPUT).or_(done).first.wait_for()
    if page.locator(LOGIN_INPUT).is_visible():
        sign_in(page, login)
    done.first.wait_for()


@pytest.fixture
def journey(settings_overrides: dict[str, Any], mail: Any) -> Iterator[Live]:
    """idp-bridge on loopback with the test OP and an Entra provider, an org acme and an org beta."""
    port = free_loopback_port()
    public = f"http://127.0.0.1:{port}"
    client = OPClient(CLIENT_ID, CLIENT_SECRET, [f"{public}/auth/callback/oidc"])
    with OpenIDProvider(clients=[client], accounts=[ALICE, BOB]) as op:
        settings_overrides.update(
            public_url=public, redirect_allowlist=[f"{public}/healthz"],
            providers={"oidc": {"type": "oidc", "issuer": op.issuer, "client_id": CLIENT_ID,
                                "client_secret": CLIENT_SECRET, "label": "Test OP"}, "entra": ENTRA})
        bridge = build(load_settings(overrides=settings_overrides, environ={}), mail=mail)
        server = make_server("127.0.0.1", port, create_app(bridge=bridge), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            make_org(bridge, "acme", redirect_url=f"{public}/healthz")
            make_org(bridge, "beta", redirect_url=f"{public}/healthz")
            yield Live(public, bridge, op, make_key(bridge, "acme"))
        finally:
            server.shutdown()
            thread.join(timeout=5)
            bridge.close()


def _members(live: Live) -> dict[str, tuple[str, str]]:
    with transaction(live.bridge.sessions) as session:
        found = session.scalars(select(Member).join(Organization, Organization.id == Member.org_id).where(
            Organization.slug == "acme", Member.status != "DELETED"))
        return {m.email or m.identifier: (m.status, m.role) for m in found}


def _invites(live: Live) -> dict[str, tuple[str, str, str | None]]:
    with transaction(live.bridge.sessions) as session:
        return {i.identifier: (i.status, i.provider, i.tenant_id) for i in session.scalars(select(Invite))}


def test_an_owner_runs_the_org_in_the_console_and_a_member_sees_only_what_their_role_permits(
        journey: Live, new_page: Page, chromium: Browser) -> None:
    live, page = journey, new_page
    page.set_viewport_size({"width": WIDTHS["desktop"][0], "height": WIDTHS["desktop"][1]})
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    # Alice is OWNER of acme and a MEMBER of beta; Bob is a MEMBER of acme, in a browser of his own.
    accept(page, live, live.invite(ALICE.email or "", provider="oidc", role="OWNER")["link"], ALICE.login)
    beta = requests.post(f"{live.url}/api/v1/orgs/beta/invites", timeout=10,
                         json={"identifier": ALICE.email, "provider": "oidc", "role": "MEMBER"},
                         headers={"Authorization": f"Bearer {make_key(live.bridge, 'beta')}"})
    accept(page, live, beta.json()["link"], ALICE.login)
    bob_context = chromium.new_context()
    bob_context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        bob = bob_context.new_page()
        accept(bob, live, live.invite(BOB.email or "", provider="oidc", role="MEMBER")["link"], BOB.login)
        _owner_journey(live, page)
        _member_journey(live, bob)
    finally:
        bob_context.close()


def _owner_journey(live: Live, page: Page) -> None:
    console_sign_in(page, live, ALICE.login)
    page.get_by_role("heading", name="Choose an organization").wait_for()
    capture(page, "picker")
    page.get_by_role("link", name="Acme").click()
    page.get_by_role("heading", name="Members").wait_for()
    expect(page.get_by_text("2 of 10 members")).to_be_visible()
    capture(page, "members")

    # Two people at once, restricted to one Entra tenant; each link is shown once, with a Copy button.
    page.get_by_role("link", name="Invite people").first.click()
    page.get_by_label("Email or username").fill("ann@example.com\nben@example.com")
    page.get_by_label("Identity provider").select_option("entra")
    page.get_by_label("Tenant ID").fill(TENANT)
    capture(page, "invite")
    page.get_by_role("button", name="Send invitation").click()
    page.get_by_role("heading", name="2 invitations created").wait_for()
    links = {who: page.get_by_label(f"Link for {who}").input_value() for who in ("ann@example.com", "ben@example.com")}
    assert all(link.startswith(f"{live.url}/invite/") for link in links.values())
    page.get_by_role("button", name="Copy link (ben@example.com)").click()
    page.get_by_text("Link copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == links["ben@example.com"]
    capture(page, "invites-created")
    assert _invites(live)["ann@example.com"] == ("PENDING", "entra", TENANT)
    assert _invites(live)["ben@example.com"] == ("PENDING", "entra", TENANT)

    page.get_by_role("link", name="Back to invites").click()
    page.get_by_label("Status").select_option(label="Pending")
    page.get_by_role("button", name="Apply filter").click()
    rows = page.locator("tbody tr")
    for who in ("ann@example.com", "ben@example.com"):
        row = rows.filter(has_text=who)
        expect(row.get_by_text("Pending")).to_be_visible()
        expect(row.get_by_text(f"tenant {TENANT}")).to_be_visible()
    capture(page, "invites")

    page.get_by_role("link", name="Revoke ben@example.com").click()
    capture(page, "revoke")
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("The invitation was revoked.").wait_for()
    page.get_by_role("link", name="Resend ann@example.com").click()
    page.get_by_role("button", name="Resend").click()
    page.get_by_role("heading", name="Invitation sent again").wait_for()
    again = page.get_by_label("Link for ann@example.com").input_value()
    assert again.startswith(f"{live.url}/invite/") and again != links["ann@example.com"]
    assert _invites(live)["ben@example.com"][0] == "REVOKED" and _invites(live)["ann@example.com"][0] == "PENDING"

    _import(live, page)
    _members_page(live, page)
    _api_key(live, page)
    _domains(live, page)

    page.get_by_role("link", name="Audit log").click()
    page.get_by_role("heading", name="Audit log").wait_for()
    assert page.locator("tbody").get_by_role("link", name="Only events by alice@example.com").count() > 0
    capture(page, "audit")
    page.get_by_role("link", name="Join requests").click()
    page.get_by_role("heading", name="Join requests").wait_for()
    capture(page, "join-requests")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You have signed out.").wait_for()


def _import(live: Live, page: Page) -> None:
    """A CSV with two bad rows: the preview writes nothing; confirmed, the good rows become invites and "Download
    errors" gives the bad ones back with their columns and the reason."""
    page.get_by_role("link", name="Import", exact=True).click()
    capture(page, "import")
    page.get_by_label("CSV file").set_input_files(
        {"name": "people.csv", "mimeType": "text/csv", "buffer": IMPORT_CSV.encode()})
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("heading", name="Import preview").wait_for()
    assert "cara@example.com" not in _invites(live)
    expect(page.get_by_text("2 would be created")).to_be_visible()
    capture(page, "import-preview")
    page.get_by_role("button", name="Confirm import").click()
    page.get_by_role("heading", name="Import results").wait_for()
    capture(page, "import-results")
    assert {"cara@example.com", "emil@example.com"} <= set(_invites(live))
    with page.expect_download() as download:
        page.get_by_role("button", name="Download errors").click()
    body = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rejected = list(csv.DictReader(io.StringIO(body)))
    assert [(r["email"], r["team"]) for r in rejected] == [("not an email", "blue"), ("dan@example.com", "green")]
    assert all(r["error"] for r in rejected)


def _members_page(live: Live, page: Page) -> None:
    """Filter by status, change two roles in bulk, deactivate and reactivate one; a post without its CSRF token
    changes nothing."""
    page.get_by_role("link", name="Members", exact=True).click()
    expect(page.get_by_text("5 of 10 members")).to_be_visible()
    page.get_by_label("Status").select_option(label="Invited")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("tbody tr")
    expect(rows.filter(has_text="Invited")).to_have_count(3)
    expect(rows).to_have_count(3)
    select_all = page.get_by_label("Select all")
    select_all.check()
    assert all(box.is_checked() for box in page.locator('input[name="ids"]').all())
    select_all.uncheck()
    assert not any(box.is_checked() for box in page.locator('input[name="ids"]').all())
    page.get_by_label("Select cara@example.com").check()
    page.get_by_label("Select emil@example.com").check()
    assert page.evaluate("document.getElementById('select-all').indeterminate") is True
    page.get_by_label("New role").select_option("ADMIN")
    page.get_by_role("group", name="Selected members").get_by_role("button", name="Change role").click()
    page.get_by_role("heading", name="Change role: 2 selected").wait_for()
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("The selected members were updated.").wait_for()
    members = _members(live)
    assert members["cara@example.com"][1] == members["emil@example.com"][1] == "ADMIN"
    assert members["ann@example.com"][1] == "MEMBER"

    page.get_by_label("Status").select_option(label="Active")
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_role("link", name=f"Deactivate {BOB.email}").click()
    confirm = page.url
    # The form without its CSRF token, as a cross-site post would arrive: refused, nothing changes.
    form = page.locator("form", has=page.get_by_role("button", name="Confirm"))
    form.locator('input[name="csrf_token"]').evaluate("field => field.remove()")
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("heading", name="Form expired").wait_for()
    assert _members(live)[BOB.email or ""][0] == "ACTIVE"
    page.goto(confirm)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("The member was deactivated.").wait_for()
    assert _members(live)[BOB.email or ""][0] == "DEACTIVATED"
    page.get_by_label("Status").select_option(label="Deactivated")
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_role("link", name=f"Reactivate {BOB.email}").click()
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("The member was reactivated.").wait_for()
    assert _members(live)[BOB.email or ""][0] == "ACTIVE"
    expect(page.get_by_text("5 of 10 members")).to_be_visible()


def _api_key(live: Live, page: Page) -> None:
    """A new API key is shown once: not on the settings page afterwards."""
    page.get_by_role("link", name="Settings", exact=True).click()
    page.get_by_role("heading", name="Settings").wait_for()
    capture(page, "settings")
    page.get_by_label("Key name").fill("ci")
    page.get_by_label("users:read", exact=True).check()
    page.get_by_role("button", name="Create API key").click()
    page.get_by_role("heading", name="API key ci").wait_for()
    secret = page.get_by_label("Key", exact=True).input_value()
    assert secret.startswith("ibk_")
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Key copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    capture(page, "api-key-shown")
    page.goto(f"{live.url}/console/acme/settings")
    assert secret not in page.content()
    with transaction(live.bridge.sessions) as session:
        (key,) = session.scalars(select(ApiKey).where(ApiKey.name == "ci"))
        prefix = key.prefix
    expect(page.get_by_text(f"{prefix}…")).to_be_visible()


def _domains(live: Live, page: Page) -> None:
    """Settings → Domains: the TXT record to publish is shown; a failed verification is shown next to the domain."""
    page.get_by_label("Domain name").fill("contoso.example")
    page.get_by_role("button", name="Add domain").click()
    page.get_by_text("The domain was added.").wait_for()
    row = page.locator("tbody tr").filter(has_text="contoso.example")
    expect(row.get_by_text("_idp-bridge-challenge.contoso.example")).to_be_visible()
    capture(page, "settings-domains")
    page.get_by_role("button", name="Verify contoso.example").click()
    expect(row.get_by_text("values found: none")).to_be_visible()
    capture(page, "domain-not-verified", 409)
    with transaction(live.bridge.sessions) as session:
        assert [d.status for d in session.scalars(select(OrgDomain))] == ["pending"]


def _member_journey(live: Live, page: Page) -> None:
    """A MEMBER (no users:invite) sees no "Invite people" and gets 403 on the invite URL."""
    console_sign_in(page, live, BOB.login)
    page.get_by_role("heading", name="Members").wait_for()
    assert page.get_by_role("link", name="Invite people").count() == 0
    assert page.get_by_role("button", name="Remove").count() == 0
    response = page.goto(f"{live.url}/console/acme/invites/new")
    assert response is not None and response.status == 403
    assert page.get_by_text("does not have the permission users:invite").is_visible()
    capture(page, "missing-permission", 403)


def test_a_member_sees_no_invite_button_and_gets_403_on_the_invite_url(live: Live, new_page: Page) -> None:
    page = new_page
    invite = live.invite(BOB.email or "", provider="oidc", role="MEMBER")
    page.goto(invite["link"])
    page.get_by_role("link", name="Sign in to accept").click()
    sign_in(page, BOB.login)
    page.wait_for_url(live.landing)

    page.goto(f"{live.url}/console")
    members = page.get_by_role("heading", name="Members")
    page.locator(LOGIN_INPUT).or_(members).first.wait_for()
    if page.locator(LOGIN_INPUT).is_visible():
        sign_in(page, BOB.login)
    members.wait_for()

    assert page.get_by_role("link", name="Invite people").count() == 0
    assert page.get_by_role("button", name="Remove").count() == 0
    response = page.goto(f"{live.url}/console/acme/invites/new")
    assert response is not None and response.status == 403
    assert page.get_by_text("does not have the permission users:invite").is_visible()

