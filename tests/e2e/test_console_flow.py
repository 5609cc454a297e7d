"""End to end: an owner runs the org in the admin console in Chromium, signed in at a real OpenID Provider."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from idp_bridge.models import Invite
from idp_bridge.store.db import transaction
from tests.e2e.browser import LOGIN_INPUT, sign_in
from tests.e2e.test_invite_flow import ALICE, BOB, Live, live

__all__ = ["live"]
pytestmark = pytest.mark.e2e

ARTIFACTS = Path("test-artifacts") / "console"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def _become_owner(live: Live, page: Page) -> None:
    """Alice is invited as OWNER through the API and accepts in the browser."""
    invite = live.invite(ALICE.email or "", provider="oidc", role="OWNER")
    page.goto(invite["link"])
    page.get_by_role("link", name="Sign in to accept").click()
    sign_in(page, ALICE.login)
    page.wait_for_url(live.landing)


def _nothing_scrolls_sideways(page: Page, name: str, width: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}"


@pytest.mark.parametrize("width", list(WIDTHS))
def test_an_owner_signs_in_invites_two_people_sees_them_pending_and_revokes_one(
        live: Live, new_page: Page, width: str) -> None:
    page = new_page
    page.set_viewport_size({"width": WIDTHS[width][0], "height": WIDTHS[width][1]})
    _become_owner(live, page)

    page.goto(f"{live.url}/console")
    # One provider: straight to it; the OP may remember Alice from the invite and not ask again.
    members = page.get_by_role("heading", name="Members")
    page.locator(LOGIN_INPUT).or_(members).first.wait_for()
    if page.locator(LOGIN_INPUT).is_visible():
        sign_in(page, ALICE.login)
    members.wait_for()
    assert page.get_by_text("1 of 10 members").is_visible()
    _nothing_scrolls_sideways(page, "members", width)

    page.get_by_role("link", name="Invite people").first.click()
    page.get_by_label("Email or username").fill("ann@example.com\nben@example.com")
    page.get_by_label("Identity provider").select_option("oidc")
    _nothing_scrolls_sideways(page, "invite", width)
    page.get_by_role("button", name="Send invitation").click()
    page.get_by_role("heading", name="2 invitations created").wait_for()
    links = [page.get_by_label(f"Link for {who}").input_value() for who in ("ann@example.com", "ben@example.com")]
    assert all(link.startswith(f"{live.url}/invite/") for link in links)
    _nothing_scrolls_sideways(page, "invites-created", width)

    page.get_by_role("link", name="Back to invites").click()
    page.get_by_label("Status").select_option(label="Pending")
    page.get_by_role("button", name="Apply filter").click()
    rows = page.locator("tbody tr")
    assert rows.filter(has_text="ann@example.com").get_by_text("Pending").is_visible()
    assert rows.filter(has_text="ben@example.com").get_by_text("Pending").is_visible()
    _nothing_scrolls_sideways(page, "invites", width)

    page.get_by_role("link", name="Revoke ben@example.com").click()
    _nothing_scrolls_sideways(page, "revoke", width)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("The invitation was revoked.").wait_for()

    with transaction(live.bridge.sessions) as session:
        status = {i.identifier: i.status for i in session.query(Invite).all()}
    assert status["ben@example.com"] == "REVOKED" and status["ann@example.com"] == "PENDING"
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You have signed out.").wait_for()


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
