"""SPEC §3 rule 5: a verified email redeems only an invite for the same mailbox, in canonical form."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.domain.providers import InviteTarget
from tests.confusables import NEVER_MATCH, SAME_MAILBOX, Pair
from tests.fakes.oidc import FakeOP
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import MS, REDIRECT, TENANT, OPs, finish, snapshot, start

# Rule 5 by email in each built-in provider: Keycloak without a bound user, Entra with a verified domain.
CLAIMS = {
    "oidc": {"iss": "https://idp.test"},
    "google": {"iss": "https://accounts.google.com"},
    "keycloak": {"iss": "https://kc.test/realms/acme"},
    "entra": {"iss": f"{MS}/{TENANT}/v2.0", "tid": TENANT, "oid": "oid-1", "xms_edov": True},
}


@pytest.fixture
def api(ops: OPs, bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme", redirect_url=REDIRECT, member_limit=100)
    return Api(client, make_key(bridge, "acme"))


def redeem(client: FlaskClient, op: FakeOP, link: str, email: str) -> int:
    claims = {"sub": "someone", "email": email, "email_verified": True}
    return int(finish(client, "oidc", op.authorize(start(client, link), claims)).status_code)


def target(identifier: str) -> InviteTarget:
    return InviteTarget(invite_id="inv-1", org_slug="acme", identifier=identifier, email=identifier, name="")


def test_the_reviews_case_an_invite_for_strasse_is_not_redeemed_by_a_verified_strasse_with_sharp_s(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("victim@strasse.de", provider="oidc")

    status = redeem(client, ops.oidc, invite["link"], "victim@stra\u00dfe.de")

    snap = snapshot(bridge, invite["id"])
    assert status != 303
    assert (snap.invite_status, snap.member_status, snap.identities) == ("PENDING", "INVITED", 0)
    assert snap.rejections == ["different_account"]


@pytest.mark.parametrize("pair", NEVER_MATCH, ids=[p.label for p in NEVER_MATCH])
def test_a_verified_lookalike_email_never_redeems_the_invite(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge, pair: Pair) -> None:
    directions = [(pair.plain, pair.lookalike)] + ([(pair.lookalike, pair.plain)] if pair.invitable else [])
    for invited, claimed in directions:
        invite = api.invite(invited, provider="oidc")

        redeem(client, ops.oidc, invite["link"], claimed)

        snap = snapshot(bridge, invite["id"])
        assert (snap.invite_status, snap.identities, snap.rejections) == ("PENDING", 0, ["different_account"])


@pytest.mark.parametrize("pair", SAME_MAILBOX, ids=[p.label for p in SAME_MAILBOX])
def test_the_invited_mailbox_in_another_spelling_redeems_the_invite(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge, pair: Pair) -> None:
    invite = api.invite(pair.plain, provider="oidc")

    status = redeem(client, ops.oidc, invite["link"], pair.lookalike)

    assert status == 303
    assert snapshot(bridge, invite["id"]).invite_status == "ACCEPTED"


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_every_provider_that_matches_by_email_refuses_every_lookalike(ops: OPs, bridge: Bridge, name: str) -> None:
    provider = bridge.provider(name)
    assert provider is not None
    for pair in NEVER_MATCH:
        for invited, claimed in ((pair.plain, pair.lookalike), (pair.lookalike, pair.plain)):
            claims = {**CLAIMS[name], "sub": "someone", "email": claimed, "email_verified": True}
            check = provider.check_identity(claims, target(invited), match="email")
            assert check.problem == "different_account", (name, pair.label, invited)
    for pair in SAME_MAILBOX:
        claims = {**CLAIMS[name], "sub": "someone", "email": pair.lookalike, "email_verified": True}
        assert provider.check_identity(claims, target(pair.plain), match="email").problem is None, pair.label


def test_a_verified_email_whose_domain_is_not_valid_idna_matches_no_invite(ops: OPs, bridge: Bridge) -> None:
    provider = bridge.provider("oidc")
    assert provider is not None
    claims = {**CLAIMS["oidc"], "sub": "someone", "email": "victim@xn--abc.com", "email_verified": True}

    assert provider.check_identity(claims, target("victim@xn--abc.com"), match="email").problem == \
        "different_account"
