"""End to end: joining by domain with Microsoft Entra ID, in Chromium, against a real OP acting as Entra for two
tenants over HTTPS (a throwaway CA the entra provider trusts through `ca_file`). Entra's `email` claim is whatever
a tenant's admin typed ("nOAuth"): with no invite tenant to compare, it counts only with `xms_edov` true (SPEC §10,
§3 rule 5), so an account of another tenant whose `email` is on the org's verified domain does not join."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import func, select

from idp_bridge.models import AuditEvent, Identity, JoinRequest, Member
from idp_bridge.store.db import transaction
from tests.dnsserver import LoopbackDNS
from tests.e2e.browser import sign_in
from tests.e2e.conftest import fresh_page
from tests.e2e.oidc_op import ORGANIZATIONS, EntraOP, OPAccount, OPClient, free_loopback_port
from tests.e2e.test_console_flow import capture
from tests.e2e.test_join_by_domain import Live, verified_org

pytestmark = pytest.mark.e2e

CLIENT_ID = "6f1d3c2a-0b9e-4c57-a8d4-2e7f90b1c3d5"
CLIENT_SECRET = "e2e-entra-secret-for-tests-only"
# The tenant of Contoso, which verified contoso.test in Entra, and another tenant whose admin can type any address.
CONTOSO = "3f2a6b1e-7c44-4d7a-9a51-0c3e5b9d2f10"
FABRIKAM = "b7e1c0d2-58a9-4f6b-8e3d-91a4c2f7e605"


def entra_account(login: str, tenant: str, oid: str, email: str, **extra: Any) -> OPAccount:
    """A work account as Entra's ID token describes it: pairwise `sub`, `tid` + `oid`, an `email` without
    `email_verified`, and `xms_edov` only when given."""
    return OPAccount(login=login, sub=f"pairwise-{login}", name=login.title(), extra_claims={
        "tid": tenant, "oid": oid, "email": email, "preferred_username": email, **extra})


# Contoso's Alice: Entra vouches for her address's domain.
ALICE = entra_account("alice", CONTOSO, "0a1b2c3d-0000-4000-8000-00000000a11c", "alice@contoso.test", xms_edov=True)
# Fabrikam's admin gave one of their accounts Alice's address: no `xms_edov`, or `xms_edov` false.
INTRUDER = entra_account("intruder", FABRIKAM, "0a1b2c3d-0000-4000-8000-0000000bad01", "alice@contoso.test")
DENIED = entra_account("denied", FABRIKAM, "0a1b2c3d-0000-4000-8000-0000000bad02", "alice@contoso.test",
                       xms_edov=False)


@pytest.fixture
def tenant(request: pytest.FixtureRequest) -> str:
    """The entra provider's `tenant` option: multi-tenant unless a test asks for Contoso's alone."""
    return str(getattr(request, "param", ORGANIZATIONS))


@pytest.fixture
def entra_live(settings_overrides: dict[str, Any], mail: Any, dns_server: LoopbackDNS, tenant: str) -> Iterator[Live]:
    """idp-bridge with one entra provider signing in at the Entra stand-in; the org verified contoso.test."""
    port = free_loopback_port()
    public = f"http://127.0.0.1:{port}"
    client = OPClient(CLIENT_ID, CLIENT_SECRET, [f"{public}/auth/callback/entra"])
    with EntraOP(clients=[client], accounts=[ALICE, INTRUDER, DENIED], tenants=[CONTOSO, FABRIKAM]) as op:
        settings_overrides.update(
            public_url=public, redirect_allowlist=[f"{public}/healthz"],
            providers={"entra": {"type": "entra", "tenant": tenant, "authority": op.authority,
                                 "ca_file": op.ca_file, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}})
        with verified_org(settings_overrides, mail, dns_server, port) as found:
            assert found.api("PATCH", "", {"domain_join": "auto"}).status_code == 200
            yield found


@pytest.fixture
def entra_page(chromium: Browser) -> Iterator[Page]:
    """A page in a fresh context that accepts the stand-in's certificate: the browser only carries the redirects;
    the relying party's own calls (discovery, token, keys) verify it against `ca_file`."""
    with fresh_page(chromium, ignore_https_errors=True) as page:
        yield page


def stored(live: Live) -> dict[str, int]:
    with transaction(live.bridge.sessions) as session:
        return {model.__name__: int(session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (Member, Identity, JoinRequest)}


def rejections(live: Live) -> list[dict[str, Any]]:
    with transaction(live.bridge.sessions) as session:
        return [dict(a.details) for a in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "join.rejected").order_by(AuditEvent.at))]


@pytest.mark.parametrize("tenant", [ORGANIZATIONS, CONTOSO], indirect=True, ids=["organizations", "contoso"])
def test_an_entra_account_whose_domain_entra_vouches_for_joins(entra_live: Live, entra_page: Page,
                                                               tenant: str) -> None:
    entra_page.goto(f"{entra_live.url}/join/acme")
    entra_page.get_by_role("link", name="Sign in with Microsoft").click()
    entra_page.wait_for_url(f"https://127.0.0.1:*/{tenant}/v2.0/interaction/*")
    sign_in(entra_page, ALICE.login)
    entra_page.wait_for_url(f"{entra_live.url}/healthz")

    assert entra_live.members() == [("alice@contoso.test", "ACTIVE", "MEMBER")]
    assert entra_live.events() == ["member.joined"]
    with transaction(entra_live.bridge.sessions) as session:
        (identity,) = session.scalars(select(Identity))
        # Keyed on (tid, oid), with the issuer of Alice's own tenant even through the multi-tenant endpoint.
        assert (identity.tenant_id, identity.subject) == (CONTOSO, ALICE.extra_claims["oid"])
        assert identity.issuer.endswith(f"/{CONTOSO}/v2.0")
    assert rejections(entra_live) == []


@pytest.mark.parametrize("account", [INTRUDER, DENIED], ids=["no-xms_edov", "xms_edov-false"])
def test_an_account_of_another_tenant_with_an_address_on_the_domain_is_told_why_and_nothing_is_stored(
        entra_live: Live, entra_page: Page, account: OPAccount) -> None:
    entra_page.goto(f"{entra_live.url}/join/acme")
    entra_page.get_by_role("link", name="Sign in with Microsoft").click()
    sign_in(entra_page, account.login)
    entra_page.get_by_role("heading", name="You can't join Acme with this account").wait_for()

    assert "its organization has not verified the address's domain" in entra_page.content()
    assert entra_page.get_by_role("link", name="Use another account").is_visible()
    capture(entra_page, f"join-refused-entra-{account.login}", 403)
    assert stored(entra_live) == {"Member": 0, "Identity": 0, "JoinRequest": 0}
    assert entra_live.events() == []
    # The token itself passed (Fabrikam's issuer, substituted into the template): the refusal is the nOAuth rule.
    (rejected,) = rejections(entra_live)
    assert (rejected["reason"], rejected["provider"], rejected["tenant_id"], rejected["subject"]) == (
        "email_not_verified", "entra", FABRIKAM, account.extra_claims["oid"])
    assert rejected["issuer"].endswith(f"/{FABRIKAM}/v2.0")
